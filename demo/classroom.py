"""Live training in front of a class (classroom mode, `VQA_CLASSROOM=1`): pick a recipe and a few minutes,
press Train, and watch the loss fall and the validation accuracy rise; the model it ends with answers in every
tab of that browser session. Off by default: a public Space must not train on a visitor's click."""

from __future__ import annotations

import html
import logging
import os
import tempfile
import threading
from dataclasses import replace

import gradio as gr
import pandas as pd

import vqa
from vqa.settings import TRAIN_MINUTES
from vqa.training import TrainConfig, preset, scratch_preset
from vqa.training.live import LiveTraining
from vqa.zoo import MEMBERS, member_recipe

from demo.handlers import Handlers, model_choices
from demo.state import ModelManager

log = logging.getLogger("demo")

CLASSROOM_OFF = (
    "Live training is off on this server: a public demo must not train on a visitor's click. "
    "A teacher turns it on for their own machine (see the README's classroom section)."
)
BUSY_TRAINING = "A model is already training on this server. Wait for it to end, or press Stop, then try again."
TRAINING_FAILED = "The training run failed. The details are in the server log."
QUICK_RECIPE = "quick (the default architecture)"
QUICK_SCRATCH_RECIPE = "quick, learning to see from scratch"
# A validation of a live run looks at this many scenes: a point on the curve every half minute or so.
LIVE_EVAL_SCENES = 20
LIVE_EVALUATIONS = 12
# How often the page's plots are refreshed while a run trains: each refresh redraws both plots in the browser,
# which on a 2-core teacher's machine takes time from the training.
UPDATE_EVERY_S = 5.0
LOSS_SMOOTHING = 0.9


def classroom_enabled() -> bool:
    """$VQA_CLASSROOM: may visitors train models on this server?"""
    return (os.environ.get("VQA_CLASSROOM") or "").strip().lower() in ("1", "true", "yes", "on")


class ClassroomTraining:
    """One live training at a time on this server, and what it streams to the page."""

    def __init__(self, models: ModelManager, enabled: bool | None = None, base: str = "quick", max_steps: int | None = None,
                 threads: int | None = None, update_every_s: float = UPDATE_EVERY_S):
        """base: the preset the recipes start from ("smoke" in tests); max_steps: a cap on joint steps (tests);
        update_every_s: how often the page's curves are refreshed."""
        self.models = models
        self.enabled = classroom_enabled() if enabled is None else enabled
        self.base, self.max_steps, self.update_every_s = base, max_steps, update_every_s
        self.threads = threads or max(1, min(4, os.cpu_count() or 2))
        self._lock = threading.Lock()
        self._run: LiveTraining | None = None

    def recipe_choices(self) -> list[str]:
        return [QUICK_RECIPE, QUICK_SCRATCH_RECIPE, *MEMBERS]

    def recipe(self, choice: str) -> TrainConfig:
        if choice == QUICK_RECIPE:
            recipe = preset(self.base)
        elif choice == QUICK_SCRATCH_RECIPE:
            recipe = scratch_preset(self.base)
        elif choice in MEMBERS:
            recipe = member_recipe(choice, self.base)
        else:
            raise vqa.InputError(f"Choose a recipe from the list: {', '.join(self.recipe_choices())}.")
        return replace(recipe, eval_scenes=min(recipe.eval_scenes, LIVE_EVAL_SCENES))

    def train_live(self, recipe=QUICK_RECIPE, minutes=TRAIN_MINUTES.default, model_key=None):
        """Train, streaming (status, loss curve, accuracy curve, Model-tab dropdown, session model key, header).
        The last update selects the trained model for this session."""
        try:
            if not self.enabled:
                raise vqa.UnsupportedError(CLASSROOM_OFF)
            config = self.recipe(recipe if isinstance(recipe, str) else "")
            minutes = TRAIN_MINUTES.check(minutes)
        except vqa.VQAError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        if not self._lock.acquire(blocking=False):
            raise gr.Error(BUSY_TRAINING, print_exception=False)
        try:
            yield from self._stream(recipe, config, minutes, model_key)
        except gr.Error:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed run must not take the page down with it
            log.exception("Live training failed")
            raise gr.Error(TRAINING_FAILED, print_exception=False) from exc
        finally:
            self._run = None
            self._lock.release()

    def _stream(self, recipe_name: str, config: TrainConfig, minutes: float, model_key):
        # the folder's name is the model's name on the page
        out_dir = os.path.join(tempfile.mkdtemp(prefix="vqa-live-"), f"{recipe_name.split()[0]}-trained-live")
        run = self._run = LiveTraining(config, out_dir, minutes, threads=self.threads, max_steps=self.max_steps, evaluations=LIVE_EVALUATIONS)
        run.start()
        losses, accuracies, plan = [], [], None
        smoothed, step = None, None
        status = f"Timing a few steps of **{html.escape(recipe_name)}** to fit {minutes:g} minutes…"
        yield status, _frame(losses, "loss"), _frame(accuracies, "accuracy"), gr.skip(), model_key, gr.skip()
        for messages in run.updates(poll_s=self.update_every_s):
            for message in messages:
                if message["kind"] == "plan":
                    plan = message
                elif message["kind"] == "record" and "loss" in message:
                    # a running average, restarted when the joint phase adds its objectives to the loss
                    fresh = smoothed is None or losses[-1]["phase"] != message["phase"]
                    smoothed = message["loss"] if fresh else LOSS_SMOOTHING * smoothed + (1 - LOSS_SMOOTHING) * message["loss"]
                    losses.append({"minutes": message["minutes"], "loss": round(smoothed, 4), "phase": message["phase"]})
                    step = message["step"]
                elif message["kind"] == "record" and message["phase"] == "joint":
                    for head in ("classifier", "generative"):
                        if f"val_{head}_accuracy" in message:
                            accuracies.append({"minutes": message["minutes"], "accuracy": message[f"val_{head}_accuracy"], "head": head})
            if run.finished and run.finished["kind"] == "error":
                raise gr.Error(TRAINING_FAILED, print_exception=False)
            if plan and losses:
                status = _progress_words(recipe_name, plan, step, losses, accuracies)
            if not run.finished:
                yield status, _frame(losses, "loss"), _frame(accuracies, "accuracy"), gr.skip(), model_key, gr.skip()
        done = run.finished
        label = f"{recipe_name} trained live for {done['train_minutes']:g} min"
        key = self.models.register_trained(out_dir, label)
        final = _latest_accuracy(accuracies)
        ended = "stopped early" if done.get("stopped") else "finished"
        status = (
            f"✓ Training {ended} after {done['train_minutes']:g} minutes ({done['steps_done']} steps)"
            + (f", last validation accuracy **{final:.0%}**" if final is not None else "")
            + f". **Every tab of this page now answers with it** (model `{key}`); other visitors keep theirs."
        )
        choices = model_choices(self.models) + [(label, key)]
        yield status, _frame(losses, "loss"), _frame(accuracies, "accuracy"), gr.update(choices=choices, value=key), key, Handlers(self.models).header(key)

    def stop_live(self) -> str:
        """Ask the running training to stop; it saves what it has learned."""
        if not self.enabled:
            raise gr.Error(CLASSROOM_OFF, print_exception=False)
        run = self._run
        if run is None or not run.running:
            return "Nothing is training right now."
        run.stop()
        return "Stopping after the current step; the model so far is validated and saved…"


def _frame(rows: list[dict], what: str) -> pd.DataFrame:
    columns = ["minutes", "loss", "phase"] if what == "loss" else ["minutes", "accuracy", "head"]
    return pd.DataFrame(rows, columns=columns)


def _progress_words(recipe_name: str, plan: dict, step: int | None, losses: list[dict], accuracies: list[dict]) -> str:
    done = f"step {step}" if step else "starting"
    phase = "learning to see (perception phase)" if losses[-1]["phase"] == "perception" else "learning to answer (all objectives)"
    latest = _latest_accuracy(accuracies)
    accuracy = f" · validation accuracy **{latest:.0%}**" if latest is not None else ""
    return (f"Training **{html.escape(recipe_name)}**: {done}, {losses[-1]['minutes']:.1f} of {plan['minutes']:g} min · {phase} · "
            f"loss {losses[-1]['loss']:.3f}{accuracy}")


def _latest_accuracy(accuracies: list[dict]) -> float | None:
    """The better head's accuracy at the latest validation."""
    if not accuracies:
        return None
    return max(a["accuracy"] for a in accuracies if a["minutes"] == accuracies[-1]["minutes"])
