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
`run_load`, from tests/live_server.py, with an assertion on memory growth); numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.live_server import baselines, make_inputs, rss_bytes, run_load, serve  # noqa: E402  (the tests run the same load)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model folder or hub id (default: $VQA_MODEL or weights/shapes-vlp)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=30)
    args = parser.parse_args(argv)

    import vqa

    from demo.state import ModelManager

    model = args.model or vqa.default_model()
    models = ModelManager(model)
    if not models.preload():
        raise SystemExit(f"could not load {model}: {models.load_error}")
    from demo.upload_limits import UploadLimiter

    page, url = serve(models, upload_limiter=UploadLimiter(per_client=10**6, per_server=10**6))  # a load test, not visitors
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
