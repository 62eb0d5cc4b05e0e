"""A recipe fitted to a time budget on this machine (the zoo's equal budgets, a live training in class): a
few steps are timed to size the perception phase and the joint phase's warm-up, and the joint phase then runs
on the clock (`TrainConfig.minutes`), so that steps timed slow or fast do not end the run early or late."""

from __future__ import annotations

import math
import time
from dataclasses import replace

import torch

from vqa.model.processing import ShapesVLPProcessor
from vqa.tokenizer import PACKAGE_TOKENIZER_DIR, load_tokenizer
from vqa.training.loop import OVERHEAD_SHARE, build_model
from vqa.training.objectives import compute_losses, perception_losses
from vqa.training.recipes import TrainConfig
from vqa.training.targets import BatchMaker, to_device

# The perception phase takes at most this share of the training time.
PERCEPTION_SHARE = 0.35
# The joint phase's ceiling, in timed steps: far above the estimate, so that the clock, not the count, ends it
# (steps timed at the start run slower than later ones, once the question encoder's cache is warm).
STEP_CEILING = 10


def seconds_per_step(recipe: TrainConfig, perceiving: bool, repeats: int = 3) -> float:
    """Wall-clock seconds of one optimiser step of `recipe` on this machine (the first, warm-up step not counted)."""
    torch.manual_seed(recipe.seed)
    model = build_model(recipe).train()
    batches = BatchMaker(ShapesVLPProcessor.for_config(model.config, load_tokenizer(PACKAGE_TOKENIZER_DIR)), recipe)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate)
    times = []
    first = 0 if perceiving else recipe.curriculum_steps  # after the curriculum's small scenes, which train faster
    for step in range(first, first + repeats + 1):
        start = time.perf_counter()
        batch = to_device(batches.perception_batch(step) if perceiving else batches(step), model.device)
        losses = perception_losses(model, batch, recipe) if perceiving else compute_losses(model, batch, recipe)
        losses["total"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[len(times[1:]) // 2]


def fit_to_budget(recipe: TrainConfig, minutes: float) -> TrainConfig:
    """`recipe` trained for `minutes` on this machine: the perception phase keeps its length if it fits in
    PERCEPTION_SHARE of the time (timed on a few steps), the joint phase takes the rest on the clock, with the
    warm-up sized by the steps the timing expects, STEP_CEILING times as many as its ceiling, and a validation
    every quarter of its time."""
    budget = minutes * 60 * (1 - OVERHEAD_SHARE)
    perception = 0
    if recipe.vision_warmup_steps:
        per_perception = seconds_per_step(recipe, perceiving=True)
        perception = min(recipe.vision_warmup_steps, int(budget * PERCEPTION_SHARE / per_perception))
        budget -= perception * per_perception
    joint = max(1, int(budget / seconds_per_step(recipe, perceiving=False)))
    ceiling = STEP_CEILING * joint
    return replace(
        recipe, minutes=minutes, vision_warmup_steps=perception, steps=ceiling, eval_every=max(1, math.ceil(ceiling / 4)),
        warmup_steps=min(recipe.warmup_steps, max(1, joint // 10)), curriculum_steps=min(recipe.curriculum_steps, joint // 10),
    )
