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
First, the floor comparison: the same fresh scenes go, one at a time and taking turns, to /ask
over plain HTTP, to a bare Gradio app with /ask's exact components that answers at once
(bench/floor_app.py, the floor), and straight to the model's both-heads `ask()` in this process.
It prints /ask − floor beside the model's own time: what the app adds is the difference.
Prints tables and one JSON line. Not a test: numbers depend on the machine and on
whatever else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.live_server import ASK_DEFAULTS, UNLIMITED_UPLOADS, free_port, percentile, start_app, stop, wait_until_up  # noqa: E402  (shared with the tests)

UPLOAD_SIZE = 192  # px: the size of the demo's example pictures
# Each head's note ends in "· N ms": the time its answer() call took inside the server.
MODEL_MS = re.compile(r"· (\d+) ms")


def model_ms(outputs) -> float:
    """Time the two answer() calls took in the server, read from the classifier and generative notes."""
    return float(sum(int(m) for note in outputs[3:5] for m in MODEL_MS.findall(str(note))))


def start_floor(port: int, log_path: Path) -> subprocess.Popen:
    log = log_path.open("w")
    return subprocess.Popen([sys.executable, str(ROOT / "bench" / "floor_app.py"), "--port", str(port)], cwd=ROOT,
                            env=dict(os.environ, PYTHONUNBUFFERED="1", **UNLIMITED_UPLOADS), stdout=log, stderr=subprocess.STDOUT)


def floor_comparison(app_url: str, floor_url: str, model: str, quantize: str, inputs: list[tuple[str, str]], warmup: int,
                     kind: str = "raw-http") -> dict:
    """p50 of /ask (plain HTTP, 1 client of `kind`), of the floor app, and of the model's own both-heads ask(),
    the three taking turns on each fresh scene so that a change in the machine's speed hits all three."""
    import vqa
    from demo.ui import use_model_threads

    use_model_threads()  # the model here runs on as many threads as one request gets in the server
    backbone = vqa.load(model, quantize=None if quantize == "none" else quantize)
    clients = {"ask": CLIENTS[kind](app_url), "floor": CLIENTS[kind](floor_url)}
    times: dict[str, list[float]] = {"ask": [], "floor": [], "model": []}
    for n, (image, question) in enumerate(inputs):
        for name in ("floor", "ask", "model"):
            start = time.perf_counter()
            if name == "model":
                backbone.ask(image, question)  # both heads, as the Ask button asks
            else:
                clients[name].predict(image, question)
            if n >= warmup:
                times[name].append((time.perf_counter() - start) * 1000)
    for client in clients.values():
        client.close()
    p50 = {name: round(percentile(values, 50), 1) for name, values in times.items()}
    bar = p50["floor"] + 1.2 * p50["model"]
    return {"client": kind, "requests": len(times["ask"]), "ask_p50_ms": p50["ask"], "floor_p50_ms": p50["floor"], "model_both_heads_p50_ms": p50["model"],
            "ask_minus_floor_ms": round(p50["ask"] - p50["floor"], 1), "bar_ms": round(bar, 1), "meets_bar": p50["ask"] <= bar}


class RawHTTPClient:
    """/ask as plain HTTP through Gradio's simple API: upload the file, start the call, read the
    server-sent events until "complete". No polling: the time is the server's plus loopback round trips.
    gradio_client does the same three requests but checks for the result every 50 ms, so comparing
    the two separates the server's time from the client library's. Every `call/ask` is a new session
    on the server (the route takes none), so each request also pays for building one."""

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


class SessionHTTPClient(RawHTTPClient):
    """/ask as plain HTTP the way the browser page sends it: one session for all its requests (queue/join
    with the session's hash, then the session's event stream until the result)."""

    def __init__(self, url: str):
        super().__init__(url)
        from tests.live_server import fn_indices

        self.fn_index = fn_indices(url)["ask"]
        self.session_hash = uuid.uuid4().hex[:11]

    def predict(self, image: str, question: str) -> list:
        with open(image, "rb") as f:
            path = self.http.post("upload", files={"files": (Path(image).name, f, "image/png")}).json()[0]
        upload = {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": Path(image).name}
        body = {"data": [upload, question, *ASK_DEFAULTS, None], "fn_index": self.fn_index, "session_hash": self.session_hash,
                "event_data": None, "trigger_id": None}
        event_id = self.http.post("queue/join", json=body).raise_for_status().json()["event_id"]
        with self.http.stream("GET", "queue/data", params={"session_hash": self.session_hash}) as response:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[len("data:"):])
                if message.get("event_id") == event_id and message.get("msg") == "process_completed":
                    if not message.get("success"):
                        raise RuntimeError(f"/ask failed: {str(message.get('output'))[:200]}")
                    return message["output"]["data"]
        raise RuntimeError("the event stream ended without a result")


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


CLIENTS = {
    "gradio_client": GradioClient,
    "gradio_client-shared-tls": SharedTLSGradioClient,
    "gradio_client-no-tls-check": PlainHTTPGradioClient,
    "raw-http": RawHTTPClient,
    "raw-http-session": SessionHTTPClient,
}


def fresh_inputs(count: int, first: int, folder: Path) -> list[tuple[str, str]]:
    """`count` (image file, question) pairs, each a different generated val scene and its first question:
    every request is a new upload and a new question, so no cache in the server answers it."""
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
    parser.add_argument("--floor-requests", type=int, default=100, help="scenes for the floor comparison (default 100; 0 skips it)")
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
    server = start_app(port, log_path, VQA_MODEL=args.model, VQA_QUANTIZE=args.quantize, **UNLIMITED_UPLOADS)
    floor_url = f"http://127.0.0.1:{(floor_port := free_port())}/"
    floor = start_floor(floor_port, log_path.parent / "floor.log")
    floor_result = None
    try:
        wait_until_up(url, server, args.startup_timeout)
        wait_until_up(floor_url, floor, args.startup_timeout)
        if args.floor_requests:
            floor_result = []
            for n, kind in enumerate(("raw-http", "raw-http-session")):
                scenes = fresh_inputs(args.warmup + args.floor_requests, 100_000 + 10_000 * n, log_path.parent)
                floor_result.append(floor_comparison(url, floor_url, args.model, args.quantize, scenes, args.warmup, kind))
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
        stop(server)
        stop(floor)

    for f in floor_result or []:
        print(f"/ask against its floor · {f['client']}, 1 client, {f['requests']} fresh scenes, taking turns with the floor app and the model")
        print(f"{'floor app p50':<32} {f['floor_p50_ms']:>8} ms")
        print(f"{'/ask p50':<32} {f['ask_p50_ms']:>8} ms")
        print(f"{'model both heads p50 (ask())':<32} {f['model_both_heads_p50_ms']:>8} ms")
        print(f"{'/ask - floor':<32} {f['ask_minus_floor_ms']:>8} ms")
        print(f"{'bar: floor + 1.2 x model':<32} {f['bar_ms']:>8} ms  ({'met' if f['meets_bar'] else 'NOT met'})")
        print()
    print(f"/ask latency · model {args.model} ({args.quantize}) · {os.cpu_count()} CPUs · server log {log_path}")
    print(f"{'client':<27} {'clients':>7} {'requests':>8} {'errors':>6} {'p50 ms':>9} {'p95 ms':>9} {'mean ms':>9} {'req/s':>7} {'in model p50':>13}")
    for r in results:
        print(f"{r['client']:<27} {r['clients']:>7} {r['requests']:>8} {r['errors']:>6} {r['p50_ms']:>9} {r['p95_ms']:>9} {r['mean_ms']:>9} "
              f"{r['throughput_rps']:>7} {r['model_p50_ms']:>13}")
        for error in r["first_errors"]:
            print(f"        error: {error}")
    print(json.dumps({"benchmark": "app_ask_latency", "model": args.model, "quantize": args.quantize, "cpus": os.cpu_count(),
                      "floor": floor_result, "levels": results}))
    return 1 if any(r["errors"] for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
