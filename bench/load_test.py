"""A bounded load test of the demo's /ask endpoint: many clients at once, memory before/after.

    python bench/load_test.py                                   # model: $VQA_MODEL or weights/shapes-vlp
    VQA_MODEL=/tmp/smoke_load python bench/load_test.py --requests 200 --threads 16

Serves the real app (`demo.ui.build_demo` + `launch_kwargs`, so the real queue size and
concurrency limits) on a free loopback port *inside this process*, so the resident memory
measured here is the server's. Then:

1. a warm-up of `--warmup` /ask calls (allocator arenas, caches, lazy imports settle);
2. `--requests` /ask calls from `--threads` threads through gradio_client, each thread
   sending one request at a time (image upload + both heads, what the Ask button does).

Every answer is checked against a sequential baseline for its own input (3 different
scenes and questions), so answers mixed up between concurrent requests count as errors.
Prints a table and one JSON line. Not a test (tests/test_hardening_server.py runs the same
`run_load` with an assertion on memory growth); numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_app_latency import free_port, percentile  # noqa: E402  (one loopback port picker and percentile for both benchmarks)

QUESTIONS = ("what color is the square?", "how many circles are there?", "is there a red triangle?")


def rss_bytes() -> int:
    """Resident memory of this process after a garbage collection."""
    import psutil

    gc.collect()
    return psutil.Process().memory_info().rss


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


def is_queue_full(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return "queue" in text and "full" in text


def ask(client, image: str, question: str):
    from gradio_client import handle_file

    return client.predict(handle_file(image), question, api_name="/ask")


def baselines(client, inputs: list[tuple[str, str]]) -> list[tuple]:
    """The answer for each input, asked one at a time."""
    return [answer_key(ask(client, image, question)) for image, question in inputs]


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
            key = answer_key(ask(client, image, question))
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


def serve(model: str):
    """The real app on a free loopback port in this process; returns (page, url)."""
    import demo  # noqa: F401  (offline environment before gradio is imported)
    from demo.state import ModelManager
    from demo.ui import build_demo, launch_kwargs

    models = ModelManager(model)
    if not models.preload():
        raise SystemExit(f"could not load {model}: {models.load_error}")
    page = build_demo(models)
    _, url, _ = page.launch(**launch_kwargs(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True))
    return page, url


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model folder or hub id (default: $VQA_MODEL or weights/shapes-vlp)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=30)
    args = parser.parse_args(argv)

    import vqa

    model = args.model or vqa.default_model()
    page, url = serve(model)
    try:
        from gradio_client import Client

        with tempfile.TemporaryDirectory() as tmp:
            inputs = make_inputs(Path(tmp))
            expected = baselines(Client(url, verbose=False), inputs)
            rss_start = rss_bytes()
            warm = run_load(url, inputs, expected, args.warmup, args.threads)
            rss_before = rss_bytes()
            result = run_load(url, inputs, expected, args.requests, args.threads)
            rss_after = rss_bytes()
    finally:
        page.close()

    from demo.ui import INFERENCE_CONCURRENCY, QUEUE_MAX_SIZE

    mb = 1 / 1_000_000
    result.update(
        model=str(model), warmup=args.warmup, warmup_errors=warm["errors"],
        queue_max_size=QUEUE_MAX_SIZE, inference_concurrency=INFERENCE_CONCURRENCY,
        rss_start_mb=round(rss_start * mb, 1), rss_before_mb=round(rss_before * mb, 1), rss_after_mb=round(rss_after * mb, 1),
        rss_growth_mb=round((rss_after - rss_before) * mb, 1),
    )
    errors = ", ".join(f"{k}: {v}" for k, v in sorted(result["errors"].items())) or "none"
    rows = [
        ("model", Path(str(model)).name or str(model)),
        ("requests (after warm-up)", f"{result['requests']} ({result['warmup']} warm-up)"),
        ("client threads", result["threads"]),
        ("server queue / concurrency", f"{QUEUE_MAX_SIZE} / {INFERENCE_CONCURRENCY}"),
        ("answered correctly", result["ok"]),
        ("errors by kind", errors),
        ("latency p50 / p95", f"{result['p50_ms']} ms / {result['p95_ms']} ms"),
        ("wall time, throughput", f"{result['wall_s']} s, {result['throughput_rps']} req/s"),
        ("RSS start / after warm-up / after run", f"{result['rss_start_mb']} / {result['rss_before_mb']} / {result['rss_after_mb']} MB"),
        ("RSS growth during run", f"{result['rss_growth_mb']} MB"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'measure':<{width}} | value")
    print(f"{'-' * width}-|-{'-' * 40}")
    for name, value in rows:
        print(f"{name:<{width}} | {value}")
    for kind, example in result["error_examples"].items():
        print(f"example of {kind}: {example}")
    print(json.dumps(result, sort_keys=True))
    return result


if __name__ == "__main__":
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    main()
