"""Latency of the demo's /ask endpoint as users see it, through gradio_client.

    python bench/bench_app_latency.py                      # model: $VQA_MODEL or weights/shapes-vlp
    python bench/bench_app_latency.py --model /tmp/smoke_demo --requests 20

Starts `python app.py` on a free loopback port in a subprocess (the real server, with
its real queue and concurrency settings), then sends `--requests` /ask calls (image
upload + classifier + generative head, exactly what the Ask button does) at each
concurrency level: 1 client, then 8 clients at once (each client is its own session).
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
DEFAULT_IMAGE = ROOT / "demo" / "examples" / "test_000.png"
DEFAULT_QUESTION = "the large square is what color?"
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


def start_server(model: str, port: int, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ, VQA_MODEL=model, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), PYTHONUNBUFFERED="1")
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


def run_level(url: str, clients: int, requests: int, image: str, question: str) -> dict:
    """`requests` /ask calls spread over `clients` concurrent sessions."""
    from gradio_client import Client, handle_file

    sessions = [Client(url, verbose=False) for _ in range(clients)]
    latencies: list[float] = []
    in_model: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker(client):
        while True:
            with lock:
                if next(counter, None) is None:
                    return
            start = time.perf_counter()
            try:
                outputs = client.predict(handle_file(image), question, api_name="/ask")
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
    parser.add_argument("--requests", type=int, default=50, help="requests per concurrency level (default 50)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8], help="concurrency levels (default: 1 8)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests first (model caches, first-call costs)")
    parser.add_argument("--image", default=str(DEFAULT_IMAGE))
    parser.add_argument("--question", default=DEFAULT_QUESTION)
    parser.add_argument("--startup-timeout", type=float, default=600, help="seconds to wait for the app to load (imports are slow on a busy machine)")
    args = parser.parse_args(argv)

    # `timeout`/Ctrl-C/kill: exit through `finally` so the app subprocess is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log_path = Path(tempfile.mkdtemp(prefix="bench_app_")) / "server.log"
    server = start_server(args.model, port, log_path)
    try:
        wait_until_up(url, server, args.startup_timeout)
        if args.warmup:
            run_level(url, 1, args.warmup, args.image, args.question)
        results = [run_level(url, c, args.requests, args.image, args.question) for c in args.clients]
    except Exception:
        print(f"server log ({log_path}):\n" + log_path.read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()

    print(f"/ask latency through gradio_client · model {args.model} · {os.cpu_count()} CPUs · server log {log_path}")
    print(f"{'clients':>7} {'requests':>8} {'errors':>6} {'p50 ms':>9} {'p95 ms':>9} {'mean ms':>9} {'req/s':>7} {'in model p50':>13}")
    for r in results:
        print(f"{r['clients']:>7} {r['requests']:>8} {r['errors']:>6} {r['p50_ms']:>9} {r['p95_ms']:>9} {r['mean_ms']:>9} "
              f"{r['throughput_rps']:>7} {r['model_p50_ms']:>13}")
        for error in r["first_errors"]:
            print(f"        error: {error}")
    print(json.dumps({"benchmark": "app_ask_latency", "model": args.model, "cpus": os.cpu_count(), "levels": results}))
    return 1 if any(r["errors"] for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
