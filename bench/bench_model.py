"""Latency, size and accuracy of the embedded model per quantization scheme (not a test).

    python bench/bench_model.py [--model weights/shapes-vlp] [--schemes none int8 bnb-int8 bnb-nf4] [--scenes 150]

For each scheme: p50/p95 latency of one `answer()` call (classifier head; generative
head, greedy) on fresh images (the image and question caches are cleared before every
call, so each call pays for the full model), p50 of both heads in turn on a fresh image
(what the app's Ask button does: the second head reuses the first's encodings), memory of the weights, and classifier /
generative accuracy on the first N test scenes. All schemes are loaded first and
take turns on every image (interleaved), so the speed ratios survive a shared CPU's
drift. Threads are pinned to 2 to match the 2-core target machine. Prints a table and one JSON line.

--eager adds rows "none-eager" and "int8-eager": the same models run without their TorchScript
graphs (vqa/backbones/frozen_graphs.py), to measure what the graphs save.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import vqa  # noqa: E402
from vqa.data.splits import make_example  # noqa: E402
from vqa.evaluation import answer_accuracy  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


HEADS = {"classifier": ("classifier",), "generative": ("generative",), "both_heads": ("classifier", "generative")}


def time_call(model, example, heads: tuple[str, ...]) -> float:
    """Milliseconds to answer a new (image, question) with each of `heads` in turn (both = what the app's Ask does)."""
    model.clear_caches()  # every call encodes its image and question: the cost of a new upload
    start = time.perf_counter()
    for head in heads:
        model.answer(example.image, example.questions[0].text, head=head)
    return (time.perf_counter() - start) * 1000


def interleaved_latencies(models: dict, examples, repeats: int) -> dict[str, dict[str, list[float]]]:
    """{scheme: {measure: [ms, ...]}}. Schemes take turns on every image, in a rotating order, so a
    change in machine speed during the run (a shared CPU) hits all of them alike and the ratios hold."""
    times = {scheme: {measure: [] for measure in HEADS} for scheme in models}
    schemes = list(models)
    for repeat in range(repeats):
        for index, example in enumerate(examples):
            shift = (repeat + index) % len(schemes)
            for scheme in schemes[shift:] + schemes[:shift]:
                for measure, heads in HEADS.items():
                    times[scheme][measure].append(time_call(models[scheme], example, heads))
    return times


def accuracy(model, examples) -> dict[str, float]:
    scores = {"classifier": [], "generative": []}
    for ex in examples:
        for q in ex.questions:
            for head in scores:
                scores[head].append(answer_accuracy(model.answer(ex.image, q.text, head=head).answer, [q.answer]))
    return {head: sum(v) / len(v) for head, v in scores.items()}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--schemes", nargs="+", default=["none", "int8", "bnb-int8", "bnb-nf4"])
    parser.add_argument("--scenes", type=int, default=150, help="test scenes for the accuracy columns")
    parser.add_argument("--latency-images", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eager", action="store_true", help="also time fp32 and int8 without their TorchScript graphs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    probe = vqa.load(args.model)
    size = probe.config.image_size
    latency_examples = [make_example("val", i, size) for i in range(args.latency_images)]
    latency_examples = [ex for ex in latency_examples if ex.questions]
    accuracy_examples = [make_example("test", i, size) for i in range(args.scenes)]
    models = {scheme: vqa.load(args.model, quantize=None if scheme == "none" else scheme) for scheme in args.schemes}
    if args.eager:
        for scheme in [s for s in ("none", "int8") if s in args.schemes]:
            eager = vqa.load(args.model, quantize=None if scheme == "none" else scheme)
            eager.graphs = None  # read on every call: the backbone then runs the eager model
            models[f"{scheme}-eager"] = eager
    interleaved_latencies(models, latency_examples[:5], 1)  # warm-up: first-call allocations, lazy imports
    times = interleaved_latencies(models, latency_examples, args.repeats)
    rows = []
    for scheme, model in models.items():
        acc = accuracy(model, accuracy_examples)
        t = times[scheme]
        rows.append({
            "scheme": scheme,
            "classifier_p50_ms": round(statistics.median(t["classifier"]), 2),
            "classifier_p95_ms": round(percentile(t["classifier"], 0.95), 2),
            "generative_p50_ms": round(statistics.median(t["generative"]), 2),
            "generative_p95_ms": round(percentile(t["generative"], 0.95), 2),
            "both_heads_p50_ms": round(statistics.median(t["both_heads"]), 2),
            "weights_mb": round(model.memory_bytes() / 1e6, 2),
            "classifier_accuracy": round(acc["classifier"], 4),
            "generative_accuracy": round(acc["generative"], 4),
        })
        print(rows[-1], flush=True)
    base = rows[0]
    for row in rows:
        row["classifier_speedup"] = round(base["classifier_p50_ms"] / row["classifier_p50_ms"], 2)
        row["generative_speedup"] = round(base["generative_p50_ms"] / row["generative_p50_ms"], 2)
    header = (f"{'scheme':<11} {'cls p50':>8} {'cls p95':>8} {'gen p50':>8} {'gen p95':>8} {'both p50':>9} {'MB':>7} "
              f"{'cls acc':>8} {'gen acc':>8} {'cls x':>6} {'gen x':>6}")
    print(header)
    for r in rows:
        print(f"{r['scheme']:<11} {r['classifier_p50_ms']:>8} {r['classifier_p95_ms']:>8} {r['generative_p50_ms']:>8} {r['generative_p95_ms']:>8} "
              f"{r['both_heads_p50_ms']:>9} {r['weights_mb']:>7} {r['classifier_accuracy']:>8} {r['generative_accuracy']:>8} "
              f"{r['classifier_speedup']:>6} {r['generative_speedup']:>6}")
    print(json.dumps({"threads": args.threads, "scenes": args.scenes, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
