"""Helpers for tests (and benchmarks) that talk to the real app over HTTP: start it, call its routes raw, compare answers.

Raw calls matter: gradio_client fills in defaults and checks types on the client side, so only a
raw request shows what the server does with whatever a script sends.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ("what color is the square?", "how many circles are there?", "is there a red triangle?")
# /ask's optional inputs at the UI's defaults: top-k, decoding, beams, top-p, temperature, max new tokens
ASK_DEFAULTS = [5, "greedy", 3, 0.9, 1.0, 8]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(models, upload_limiter=None, launch: dict | None = None, **build):
    """The real app (build_demo + launch_kwargs) on a free loopback port in this process: (page, url).
    launch: more launch() settings (e.g. a TLS certificate)."""
    import demo  # noqa: F401  (offline environment before gradio is imported)
    from demo.ui import build_demo, launch_kwargs

    page = build_demo(models, **build)
    _, url, _ = page.launch(**launch_kwargs(upload_limiter=upload_limiter, server_name="127.0.0.1", server_port=free_port(),
                                            prevent_thread_lock=True, quiet=True, **(launch or {})))
    return page, url


#: Benchmarks and load tests upload far faster than visitors: the upload limits must not count them.
UNLIMITED_UPLOADS = {"VQA_UPLOADS_PER_CLIENT": "1000000", "VQA_UPLOADS_PER_SERVER": "1000000"}


def start_app(port: int, log_path: Path, **environment: str) -> subprocess.Popen:
    """`python app.py` on a loopback port in its own process (what a Space runs), with extra environment variables."""
    env = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), PYTHONUNBUFFERED="1", **environment)
    log = log_path.open("w")
    return subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_until_up(url: str, server: subprocess.Popen, timeout: float) -> None:
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


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()


def fn_indices(url: str) -> dict[str, int]:
    """Each event's api_name → its index, read from the page's config as a browser does."""
    config = httpx.get(url + "config", timeout=30).json()
    return {d["api_name"]: d["id"] for d in config["dependencies"] if d.get("api_name")}


def rss_bytes() -> int:
    """Resident memory of this process after a garbage collection (the server runs in it)."""
    import psutil

    gc.collect()
    return psutil.Process().memory_info().rss


# ----- raw HTTP ---------------------------------------------------------------------------------
def upload(url: str, data: bytes, name: str = "image.png", headers: dict | None = None) -> dict:
    """Upload bytes as the browser does; returns the FileData dict to pass to a route."""
    response = httpx.post(url + "gradio_api/upload", files={"files": (name, data, "application/octet-stream")}, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return {"path": response.json()[0], "meta": {"_type": "gradio.FileData"}}


def read_events(stream: str) -> tuple[str, object]:
    """("complete", outputs) or ("error", message) from a call's server-sent events."""
    kind = data = None
    for line in stream.splitlines():
        if line.startswith("event: "):
            kind = line[len("event: "):].strip()
        elif line.startswith("data: ") and kind in ("complete", "error"):
            data = json.loads(line[len("data: "):])
            break
    assert kind in ("complete", "error"), stream[:500]
    if kind == "error":
        return "error", (data or {}).get("error") if isinstance(data, dict) else data
    return "complete", data


def call(url: str, route: str, data: list, timeout: float = 120) -> tuple[str, object]:
    """A public route called as `/gradio_api/call/<route>` by a new session: ("complete", outputs) or ("error", message)."""
    response = httpx.post(url + f"gradio_api/call/{route}", json={"data": data}, timeout=30)
    assert response.status_code == 200, response.text
    event_id = response.json()["event_id"]
    return read_events(httpx.get(url + f"gradio_api/call/{route}/{event_id}", timeout=timeout).text)


def ask(url: str, image, question: str, *settings) -> tuple[str, object]:
    return call(url, "ask", [image, question, *(settings or ASK_DEFAULTS)])


class Session:
    """One browser session calling any event by its index, the way the page does (queue/join, then the
    session's event stream), private events included: what a script can do that the API page does not list."""

    def __init__(self, url: str):
        self.url = url
        self.hash = uuid.uuid4().hex[:11]

    def run(self, fn_index: int, data: list, timeout: float = 120) -> tuple[str, object]:
        body = {"data": data, "fn_index": fn_index, "session_hash": self.hash, "event_data": None, "trigger_id": None}
        response = httpx.post(self.url + "gradio_api/queue/join", content=_json_allowing_nonfinite(body),
                              headers={"content-type": "application/json"}, timeout=30)
        if response.status_code != 200:
            return "refused", f"{response.status_code} {response.text[:300]}"
        event_id = response.json()["event_id"]
        deadline = time.monotonic() + timeout
        with httpx.stream("GET", self.url + "gradio_api/queue/data", params={"session_hash": self.hash}, timeout=timeout) as stream:
            for line in stream.iter_lines():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"event {fn_index} did not finish in {timeout} s")
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[len("data:"):])
                if message.get("event_id") != event_id or message.get("msg") != "process_completed":
                    continue
                output = message.get("output") or {}
                if message.get("success"):
                    return "complete", output.get("data")
                return "error", output.get("error")
        raise RuntimeError("the event stream ended without a result")


def _json_allowing_nonfinite(body: dict) -> bytes:
    """JSON with NaN / Infinity tokens where the body holds them: what a hostile script may send."""
    return json.dumps(body, allow_nan=True).encode()


# ----- comparing answers ------------------------------------------------------------------------
def answer_key(result) -> tuple:
    """What must agree for the same input: both heads' labels and confidences (compare with same_answer)."""
    classifier, generative, *_ = result

    def label(value):
        if not value:
            return None
        return (value.get("label"), tuple((c["label"], float(c["confidence"])) for c in value.get("confidences") or []))

    return label(classifier), label(generative)


def same_answer(a: tuple, b: tuple, tol: float = 1e-4) -> bool:
    """Two answer_key()s agree: same labels in the same order, confidences within `tol` (float noise)."""
    for head_a, head_b in zip(a, b):
        if (head_a is None) != (head_b is None):
            return False
        if head_a is None:
            continue
        (top_a, conf_a), (top_b, conf_b) = head_a, head_b
        if top_a != top_b or [x for x, _ in conf_a] != [x for x, _ in conf_b]:
            return False
        if any(abs(p - q) > tol for (_, p), (_, q) in zip(conf_a, conf_b)):
            return False
    return len(a) == len(b)


# ----- load -----------------------------------------------------------------------------------
def make_inputs(folder: Path, n: int = 3) -> list[tuple[str, str]]:
    """n (image path, question) pairs: different test scenes with different questions."""
    from vqa.data.splits import make_example

    folder.mkdir(parents=True, exist_ok=True)
    pairs = []
    for i in range(n):
        path = folder / f"scene_{i}.png"
        make_example("test", i + 1, 96).image.save(path)
        pairs.append((str(path), QUESTIONS[i % len(QUESTIONS)]))
    return pairs


def is_queue_full(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return "queue" in text and "full" in text


def client_ask(client, image: str, question: str):
    from gradio_client import handle_file

    return client.predict(handle_file(image), question, api_name="/ask")


def baselines(client, inputs: list[tuple[str, str]]) -> list[tuple]:
    """The answer for each input, asked one at a time."""
    return [answer_key(client_ask(client, image, question)) for image, question in inputs]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def run_load(url: str, inputs: list[tuple[str, str]], expected: list[tuple] | None, requests: int, threads: int) -> dict:
    """`requests` /ask calls from `threads` threads (one gradio_client.Client, thread-safe for predict).

    Returns counts, errors by kind, latencies (ms) and wall time. An answer that differs from
    `expected` for its own input counts as error kind "wrong answer"."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    examples: dict[str, str] = {}
    lock = threading.Lock()

    def one(i: int) -> None:
        image, question = inputs[i % len(inputs)]
        start = time.perf_counter()
        try:
            key = answer_key(client_ask(client, image, question))
            kind = None if expected is None or same_answer(key, expected[i % len(inputs)]) else "wrong answer"
            detail = f"got {key!r}"
        except Exception as exc:  # noqa: BLE001 - every failure is counted by kind
            kind = "queue full" if is_queue_full(exc) else type(exc).__name__
            detail = str(exc)[:200]
        elapsed = (time.perf_counter() - start) * 1000
        with lock:
            if kind is None:
                latencies.append(elapsed)
            else:
                errors[kind] = errors.get(kind, 0) + 1
                examples.setdefault(kind, detail)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, range(requests)))
    wall = time.perf_counter() - start
    return {
        "requests": requests,
        "threads": threads,
        "ok": len(latencies),
        "errors": errors,
        "error_examples": examples,
        "p50_ms": round(percentile(latencies, 50), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(latencies) / wall, 2) if wall > 0 else float("nan"),
    }
