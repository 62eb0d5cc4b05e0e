"""Train several variants of a training preset at once, one process each, and print their validation curves.

    python bench/sweep_presets.py bench/quick_sweep.json runs/sweep [threads_per_run]

The JSON maps a run name to overrides of a preset: any `TrainConfig` field, plus "base" (the preset to
start from, default "quick"); "loss_weights" and "model" are merged into the preset's own. Each run writes
a model folder and its `train_log.jsonl` under the output folder, and `NAME.out` with its console output.

Accuracy per step does not depend on the device, so the variants of a CPU preset can be compared on a GPU
machine, many at once (its CPU cores render the scenes); the winner's time is then measured on the CPU with
`python -m vqa train --preset NAME`. On a 2-core CPU run one variant at a time (a sweep file of one entry).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time


def train_variant(name: str, overrides: dict, out_root: str, threads: int):
    log = open(os.path.join(out_root, name + ".out"), "w")
    os.dup2(log.fileno(), 1)  # the run's progress bar and records go to its own file
    os.dup2(log.fileno(), 2)
    import torch

    from vqa import training

    torch.set_num_threads(threads)
    base = overrides.pop("base", "quick")
    config = training.preset(base)
    overrides["loss_weights"] = {**config.loss_weights, **overrides.get("loss_weights", {})}
    overrides["model"] = {**config.model, **overrides.get("model", {})}
    if "cls_grounding_families" in overrides:
        overrides["cls_grounding_families"] = tuple(overrides["cls_grounding_families"])
    return name, training.train(training.preset(base, **overrides), os.path.join(out_root, name), progress=False)


def print_curves(names, out_root: str) -> None:
    """One line per validation: run, step, classifier / generative / pointing accuracy, classifier per family."""
    for name in names:
        path = os.path.join(out_root, name, "train_log.jsonl")
        if not os.path.exists(path):
            continue
        for line in open(path):
            record = json.loads(line)
            if record["phase"] != "joint":
                continue
            families = " ".join(f"{family}={accuracy}" for family, accuracy in record["val_classifier_by_family"].items())
            print(name, record["step"], record["minutes"], record["val_classifier_accuracy"], record["val_generative_accuracy"],
                  record["val_pointing_accuracy"], families, flush=True)


def main() -> None:
    variants = json.load(open(sys.argv[1]))
    out_root = sys.argv[2]
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    os.makedirs(out_root, exist_ok=True)
    start = time.time()
    # spawn, not fork: each run starts its own torch (and CUDA) state
    with multiprocessing.get_context("spawn").Pool(len(variants)) as pool:
        runs = [pool.apply_async(train_variant, (name, dict(overrides), out_root, threads)) for name, overrides in variants.items()]
        for run in runs:
            try:
                name, summary = run.get()
                print("done", name, summary, f"{time.time() - start:.0f} s", flush=True)
            except Exception as error:  # one failed variant must not hide the others' results
                print("failed", repr(error), flush=True)
    print("run step minutes classifier generative pointing per-family")
    print_curves(variants, out_root)


if __name__ == "__main__":
    main()
