"""A training run that a class watches: the loop runs in a child process (its own threads, and a crash there
never takes the server down) and streams every step's loss and every validation back, and a Stop ends it
early with what it has learned saved.

    run = LiveTraining(recipe, out_dir, minutes=3)
    run.start()
    for messages in run.updates():   # a list of new messages about once a second
        ...                          # {"kind": "plan" | "record" | "done" | "error", ...}
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import queue
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

from vqa.training.recipes import TrainConfig

log = logging.getLogger("vqa.training")

# Past its budget by this much, a run is told to stop: the loop ends the joint phase on the clock already, so
# this only catches a last validation or a perception phase that ran long.
GRACE_S = 20.0


def _child(recipe: dict, out_dir: str, minutes: float, threads: int, max_steps: int | None, evaluations: int, messages, stop_event) -> None:
    """The child process: fit the recipe to the budget, train, and report each step and the end."""
    try:
        import torch

        from vqa.training.budget import fit_to_budget
        from vqa.training.loop import train

        torch.set_num_threads(threads)
        config = TrainConfig(**recipe)
        config.cls_grounding_families = tuple(config.cls_grounding_families)
        config = fit_to_budget(config, minutes)
        if max_steps is not None:
            config.steps = min(config.steps, max_steps)
        config.eval_every = max(1, math.ceil(config.steps / evaluations))
        total = config.vision_warmup_steps + config.steps
        messages.put({"kind": "plan", "perception_steps": config.vision_warmup_steps, "joint_steps": config.steps, "total_steps": total, "minutes": minutes})
        deadline = time.monotonic() + minutes * 60 + GRACE_S
        summary = train(config, out_dir, progress=False, on_record=lambda record: messages.put({"kind": "record", **record}),
                        should_stop=lambda: stop_event.is_set() or time.monotonic() > deadline)
        messages.put({"kind": "done", **summary, "stopped": summary["ended_by"] == "stop"})
    except BaseException:  # noqa: BLE001 - whatever happened, the parent must hear that the run ended
        messages.put({"kind": "error", "detail": traceback.format_exc()})


class LiveTraining:
    """One training run in a child process, reporting as it goes."""

    def __init__(self, recipe: TrainConfig, out_dir: str | Path, minutes: float, threads: int = 2, max_steps: int | None = None,
                 evaluations: int = 8):
        """recipe: what to train, for `minutes` of this machine's time (vqa.training.budget.fit_to_budget).
        threads: PyTorch threads of the child. max_steps: a cap on the joint steps (tests use a handful).
        evaluations: validations spread over the joint phase, each a point of the live accuracy curve."""
        self.recipe, self.out_dir, self.minutes = recipe, Path(out_dir), minutes
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no server threads or locks copied in
        self._messages = context.Queue()
        self._stop = context.Event()
        self._process = context.Process(
            target=_child, args=(asdict(recipe), str(self.out_dir), minutes, threads, max_steps, evaluations, self._messages, self._stop), daemon=True,
        )
        self.finished: dict | None = None  # the "done" or "error" message, once the run has ended

    def start(self) -> None:
        self._process.start()

    def stop(self) -> None:
        """Ask the run to end after its current step; it still validates and saves."""
        self._stop.set()

    @property
    def running(self) -> bool:
        return self.finished is None and self._process.is_alive()

    def updates(self, poll_s: float = 1.0) -> Iterator[list[dict]]:
        """Lists of new messages, about every `poll_s` seconds, until the run has ended (the last list holds
        its "done" or "error" message)."""
        while self.finished is None:
            batch = []
            deadline = time.monotonic() + poll_s
            while time.monotonic() < deadline:
                try:
                    message = self._messages.get(timeout=max(0.01, deadline - time.monotonic()))
                except queue.Empty:
                    if not self._process.is_alive():
                        message = {"kind": "error", "detail": f"the training process ended with exit code {self._process.exitcode}"}
                    else:
                        continue
                batch.append(message)
                if message["kind"] in ("done", "error"):
                    self.finished = message
                    break
            if self.finished is not None and self.finished["kind"] == "error":
                log.error("Live training failed: %s", self.finished["detail"])
            yield batch
        self._process.join(timeout=10)
