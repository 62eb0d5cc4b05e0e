"""Latency of the demo's /ask endpoint as users see it, through gradio_client.

    python bench/bench_app_latency.py                      # model: $VQA_MODEL or weights/shapes-vlp
    python bench/bench_app_latency.py --model /tmp/smoke_demo --requests 20

Starts `python app.py` on a free loopback port in a subprocess (the real server, with
its real queue and concurrency settings), then sends `--requests` /ask calls (image
upload + classifier + generative head, exactly what the Ask button does) at each
concurrency level: 1 client, then 8 clients at once (each client is its own session).
It does so with four kinds of client: gradio_client as it comes; gradio_client handed one TLS context
for all its requests (the figure the project targets: certificates still checked, the CA bundle
loaded once); gradio_client with ssl_verify=False; and plain HTTP requests (upload, call, event
stream: what the browser page does), which shows how much of the time is the server's and how
much the client library's.
Prints a table and one JSON line. Not a test: numbers depend on the machine and on
whatever else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UPLOAD_SIZE = 192  # px: the size of the demo's example pictures
# Each head's note ends in "· N ms": the time its answer() call took inside the server.
MODEL_MS = re.compile(r"· (\d+) ms")


def model_ms(outputs) -> float:
    """Time the two answer() calls took in the server, read from the classifier and generative notes."""
    return float(sum(int(m) for note in outputs[3:5] for m in MODEL_MS.findall(str(note))))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def start_server(model: str, port: int, log_path: Path, quantize: str = "int8") -> subprocess.Popen:
    env = dict(os.environ, VQA_MODEL=model, VQA_QUANTIZE=quantize, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), PYTHONUNBUFFERED="1")
    log = log_path.open("w")
    return subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_until_up(url: str, server: subprocess.Popen, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the app exited with code {server.returncode} before serving")
        try:
            if httpx.get(url + "gradio_api/info", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the app did not answer at {url} within {timeout:.0f} s")


class RawHTTPClient:
    """/ask as plain HTTP, the way the browser page does it: upload the file, start the call, read the
    server-sent events until "complete". No polling: the time is the server's plus loopback round trips.
    gradio_client does the same three requests but checks for the result every 50 ms, so comparing
    the two separates the server's time from the client library's."""

    def __init__(self, url: str):
        import httpx

        self.http = httpx.Client(base_url=url + "gradio_api/", timeout=60)

    def predict(self, image: str, question: str) -> list:
        with open(image, "rb") as f:
            path = self.http.post("upload", files={"files": (Path(image).name, f, "image/png")}).json()[0]
        upload = {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": Path(image).name}
        # plain HTTP sends every input, as the page does (gradio_client fills in the defaults itself)
        data = [upload, question, *ASK_DEFAULTS]
        event_id = self.http.post("call/ask", json={"data": data}).raise_for_status().json()["event_id"]
        event = None
        with self.http.stream("GET", f"call/ask/{event_id}") as response:
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line[len("event: "):]
                elif line.startswith("data: ") and event in ("complete", "error"):
                    if event == "error":
                        raise RuntimeError(f"/ask failed: {line[6:200]}")
                    return json.loads(line[len("data: "):])
        raise RuntimeError("the event stream ended without a result")

    def close(self) -> None:
        self.http.close()


class GradioClient:
    ssl_verify = True  # gradio_client's default

    def __init__(self, url: str):
        from gradio_client import Client

        self.client = Client(url, verbose=False, ssl_verify=self.ssl_verify)

    def predict(self, image: str, question: str):
        from gradio_client import handle_file

        return self.client.predict(handle_file(image), question, api_name="/ask")

    def close(self) -> None:
        self.client.close()


class PlainHTTPGradioClient(GradioClient):
    """gradio_client with ssl_verify=False. With the default, every upload and every queue join
    builds a new TLS context (loading the CA bundle) even for a plain http:// URL: measured on this
    machine, 32 ms per upload and 25 ms per join, against 6 and 5 ms without. On loopback over plain
    HTTP there is no certificate to verify, so this is how a local client should be set up."""

    ssl_verify = False


class SharedTLSGradioClient(GradioClient):
    """gradio_client with certificate checks on, as by default, but with one TLS context built
    up front and handed to every request (`ssl_verify` goes to httpx's `verify=`, which takes a
    ready `ssl.SSLContext`). This keeps the default's security and drops its per-request cost
    of loading the CA bundle: the way to set up a client that calls the app many times."""

    def __init__(self, url: str):
        import ssl

        import certifi
        from gradio_client import Client

        # the context httpx itself would build for verify=True, built once
        self.client = Client(url, verbose=False, ssl_verify=ssl.create_default_context(cafile=certifi.where()))


# /ask's optional inputs at the UI's defaults: top-k, decoding, beams, top-p, temperature, max new tokens
ASK_DEFAULTS = [5, "greedy", 3, 0.9, 1.0, 8]
CLIENTS = {
    "gradio_client": GradioClient,
    "gradio_client-shared-tls": SharedTLSGradioClient,
    "gradio_client-no-tls-check": PlainHTTPGradioClient,
    "raw-http": RawHTTPClient,
}


def fresh_inputs(count: int, first: int, folder: Path) -> list[tuple[str, str]]:
    """`count` (image file, question) pairs, each a different generated val scene and its first question:
    every request is a new upload and a new question, so no cache in the server answers it."""
    sys.path.insert(0, str(ROOT))
    from vqa.data.splits import make_example

    inputs = []
    for index in range(first, first + count):
        example = make_example("val", index, UPLOAD_SIZE)
        path = folder / f"val_{index:05d}.png"
        example.image.save(path)
        inputs.append((str(path), example.questions[0].text))
    return inputs


def run_level(url: str, clients: int, inputs: list[tuple[str, str]], kind: str = "gradio_client") -> dict:
    """One /ask call per input, spread over `clients` concurrent sessions of one client kind."""
    sessions = [CLIENTS[kind](url) for _ in range(clients)]
    requests = len(inputs)
    latencies: list[float] = []
    in_model: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    queue = iter(inputs)

    def worker(client):
        while True:
            with lock:
                item = next(queue, None)
            if item is None:
                return
            image, question = item
            start = time.perf_counter()
            try:
                outputs = client.predict(image, question)
            except Exception as exc:  # noqa: BLE001 - counted, not fatal
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            elapsed = (time.perf_counter() - start) * 1000
            with lock:
                latencies.append(elapsed)
                in_model.append(model_ms(outputs))

    threads = [threading.Thread(target=worker, args=(c,)) for c in sessions]
    wall = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - wall
    for client in sessions:
        client.close()
    return {
        "client": kind,
        "clients": clients,
        "requests": requests,
        "ok": len(latencies),
        "errors": len(errors),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "mean_ms": round(statistics.fmean(latencies), 1) if latencies else float("nan"),
        "model_p50_ms": round(percentile(in_model, 50), 1),
        "throughput_rps": round(len(latencies) / wall, 2) if wall > 0 else 0.0,
        "first_errors": sorted(set(errors))[:3],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="p50/p95 latency of /ask through gradio_client, 1 and 8 concurrent clients.")
    parser.add_argument("--model", default=os.environ.get("VQA_MODEL") or str(ROOT / "weights" / "shapes-vlp"))
    parser.add_argument("--quantize", default=os.environ.get("VQA_QUANTIZE", "int8"), choices=["int8", "none", "bnb-int8", "bnb-nf4"],
                        help="the weights the app answers with (its VQA_QUANTIZE; default int8, as the app serves)")
    parser.add_argument("--requests", type=int, default=50, help="requests per concurrency level (default 50), each a new scene")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8], help="concurrency levels (default: 1 8)")
    parser.add_argument("--client", nargs="+", default=list(CLIENTS), choices=list(CLIENTS),
                        help="how to call /ask: gradio_client as it comes, gradio_client with one TLS context shared by its "
                             "requests, gradio_client with ssl_verify=False (plain-HTTP loopback), and plain HTTP "
                             "(the server's own time)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests first (model caches, first-call costs)")
    parser.add_argument("--startup-timeout", type=float, default=600, help="seconds to wait for the app to load (imports are slow on a busy machine)")
    args = parser.parse_args(argv)

    # `timeout`/Ctrl-C/kill: exit through `finally` so the app subprocess is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log_path = Path(tempfile.mkdtemp(prefix="bench_app_")) / "server.log"
    server = start_server(args.model, port, log_path, args.quantize)
    try:
        wait_until_up(url, server, args.startup_timeout)
        per_level = args.warmup + args.requests
        levels = [(kind, clients) for kind in args.client for clients in args.clients]
        inputs = fresh_inputs(per_level * len(levels), 0, log_path.parent)
        results = []
        for n, (kind, clients) in enumerate(levels):
            mine = inputs[n * per_level : (n + 1) * per_level]
            if args.warmup:
                run_level(url, 1, mine[: args.warmup], kind)
            results.append(run_level(url, clients, mine[args.warmup :], kind))
    except Exception:
        print(f"server log ({log_path}):\n" + log_path.read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()

    print(f"/ask latency · model {args.model} ({args.quantize}) · {os.cpu_count()} CPUs · server log {log_path}")
    print(f"{'client':<27} {'clients':>7} {'requests':>8} {'errors':>6} {'p50 ms':>9} {'p95 ms':>9} {'mean ms':>9} {'req/s':>7} {'in model p50':>13}")
    for r in results:
        print(f"{r['client']:<27} {r['clients']:>7} {r['requests']:>8} {r['errors']:>6} {r['p50_ms']:>9} {r['p95_ms']:>9} {r['mean_ms']:>9} "
              f"{r['throughput_rps']:>7} {r['model_p50_ms']:>13}")
        for error in r["first_errors"]:
            print(f"        error: {error}")
    print(json.dumps({"benchmark": "app_ask_latency", "model": args.model, "quantize": args.quantize, "cpus": os.cpu_count(), "levels": results}))
    return 1 if any(r["errors"] for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
