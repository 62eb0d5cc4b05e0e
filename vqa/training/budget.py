"""How many steps of a recipe fit a time budget on this machine: a few steps are timed, and the schedule
is stretched or shrunk to fill the minutes (the zoo's equal budgets, a live training in class)."""

from __future__ import annotations

import math
import time
from dataclasses import replace

import torch

from vqa.model.processing import ShapesVLPProcessor
from vqa.tokenizer import PACKAGE_TOKENIZER_DIR, load_tokenizer
from vqa.training.loop import build_model
from vqa.training.objectives import compute_losses, perception_losses
from vqa.training.recipes import TrainConfig
from vqa.training.targets import BatchMaker, to_device

# Share of the budget kept for validation, saving and the domain calibration after training.
OVERHEAD_SHARE = 0.15
# The perception phase takes at most this share of the training time.
PERCEPTION_SHARE = 0.35


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
    """`recipe` with as many steps as fit in `minutes` of training on this machine, timed on a few steps:
    the perception phase keeps its length if it fits in PERCEPTION_SHARE of the time, the joint phase takes
    the rest, and validation every quarter of it."""
    budget = minutes * 60 * (1 - OVERHEAD_SHARE)
    perception = 0
    if recipe.vision_warmup_steps:
        per_perception = seconds_per_step(recipe, perceiving=True)
        perception = min(recipe.vision_warmup_steps, int(budget * PERCEPTION_SHARE / per_perception))
        budget -= perception * per_perception
    joint = max(1, int(budget / seconds_per_step(recipe, perceiving=False)))
    return replace(
        recipe, vision_warmup_steps=perception, steps=joint, eval_every=max(1, math.ceil(joint / 4)),
        warmup_steps=min(recipe.warmup_steps, max(1, joint // 10)), curriculum_steps=min(recipe.curriculum_steps, joint // 10),
    )
