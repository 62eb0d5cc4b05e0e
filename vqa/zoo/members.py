"""The zoo's members and their recipes: every architecture trained on the same generated data, with the
same schedule, the same sizes and the same CPU budget, so that what differs between members is the
architecture (and the objectives it comes with)."""

from __future__ import annotations

import math
import time
from dataclasses import replace

import torch

from vqa.model import load_architecture
from vqa.model.processing import ShapesVLPProcessor
from vqa.tokenizer import PACKAGE_TOKENIZER_DIR, load_tokenizer
from vqa.training import BatchMaker, TrainConfig, build_model, compute_losses, perception_losses, preset, to_device

MEMBERS = ("med-early", "med-mid", "med-late", "single-stream", "dual-stream", "dual-encoder", "encoder-decoder", "mlim")
# Small enough that eight members and the shipped model stay within weights/'s 60 MB (fp16).
ZOO_SIZES = {"hidden_size": 96, "num_attention_heads": 4, "intermediate_size": 384, "image_size": 64, "itc_dim": 64}
# Share of the budget kept for validation, saving and the domain calibration after training.
OVERHEAD_SHARE = 0.15
# The perception phase takes at most this share of the training time.
PERCEPTION_SHARE = 0.35


def member_recipe(name: str, base: str = "quick") -> TrainConfig:
    """The schedule of preset `base` (the classroom recipe, or "smoke" for tests), the architecture's own
    objectives, the zoo's sizes. Grounding is weighted as the quick preset weighs it; an architecture
    without a patch head has no perception phase."""
    spec = load_architecture(name)
    recipe = preset(base)
    weights = dict(spec["objectives"])
    if "grounding" in weights and recipe.loss_weights:
        weights["grounding"] = recipe.loss_weights.get("grounding", weights["grounding"])
    sizes = ZOO_SIZES if base == "quick" else {k: v for k, v in recipe.model.items() if k not in ("vision_layers", "text_layers", "fusion_layer", "decoder_layers")}
    return replace(
        recipe, preset=f"zoo-{base}", architecture=name, loss_weights=weights, model=dict(sizes), itm_images=min(8, recipe.itm_images),
        vision_warmup_steps=recipe.vision_warmup_steps if "patch" in spec["heads"] else 0,
    )


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
