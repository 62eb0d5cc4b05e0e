"""The zoo's members and their recipes: every architecture trained on the same generated data, with the
same schedule, the same sizes and the same CPU budget, so that what differs between members is the
architecture (and the objectives it comes with)."""

from __future__ import annotations

from dataclasses import replace

from vqa.model import load_architecture
from vqa.training import TrainConfig, scratch_preset

MEMBERS = ("med-early", "med-mid", "med-late", "single-stream", "dual-stream", "dual-encoder", "encoder-decoder", "mlim")
# Small enough that eight members and the shipped model stay within weights/'s 60 MB (fp16).
ZOO_SIZES = {"hidden_size": 96, "num_attention_heads": 4, "intermediate_size": 384, "image_size": 64, "itc_dim": 64}


def member_recipe(name: str, base: str = "quick") -> TrainConfig:
    """The schedule of preset `base` (the classroom recipe, or "smoke" for tests), the architecture's own
    objectives, the zoo's sizes. Grounding is weighted as the quick preset weighs it; an architecture
    without a patch head has no perception phase."""
    spec = load_architecture(name)
    recipe = scratch_preset(base)  # each member learns to see by itself
    weights = dict(spec["objectives"])
    if "grounding" in weights and recipe.loss_weights:
        weights["grounding"] = recipe.loss_weights.get("grounding", weights["grounding"])
    sizes = ZOO_SIZES if base == "quick" else {k: v for k, v in recipe.model.items() if k not in ("vision_layers", "text_layers", "fusion_layer", "decoder_layers")}
    # The shipped members were trained on the generator's own wordings and pictures; the recipe keeps that data.
    return replace(
        recipe, preset=f"zoo-{base}", architecture=name, loss_weights=weights, model=dict(sizes), itm_images=min(8, recipe.itm_images),
        reworded_share=0.0, restyled_share=0.0,
        vision_warmup_steps=recipe.vision_warmup_steps if "patch" in spec["heads"] else 0,
    )
