"""The zoo's members and their recipes: every architecture trained on the same generated data, with the
same schedule, the same sizes and the same CPU budget, so that what differs between members is the
architecture (and the objectives it comes with).

Every member whose image encoder is the zoo's ViT tower starts from one pretrained copy of it
(`weights/vision/zoo`, made by `python -m vqa pretrain-vision --preset zoo`), as BLIP, ALBEF, ViLBERT and CLIP
start from a pretrained image encoder: its minutes then go to fusion and answers, not to learning to see
shapes again. MLIM's shallow CNN embedder has no such tower; it learns to see through its own objectives."""

from __future__ import annotations

from dataclasses import replace

from vqa.model import load_architecture
from vqa.training import TrainConfig, scratch_preset

MEMBERS = ("med-early", "med-mid", "med-late", "single-stream", "dual-stream", "dual-encoder", "encoder-decoder", "mlim")
# Small enough that eight members and the shipped model stay within weights/'s 60 MB (fp16).
ZOO_SIZES = {"hidden_size": 96, "num_attention_heads": 4, "intermediate_size": 384, "image_size": 64, "itc_dim": 64}
# The members' shared pretrained vision tower (relative to weights/), and the member whose perception phase makes it.
ZOO_TOWER = "vision/zoo"
TOWER_MEMBER = "med-mid"


def uses_zoo_tower(name: str) -> bool:
    """Whether member `name` has the ViT tower and patch head the zoo's pretrained tower holds."""
    spec = load_architecture(name)
    return spec["vision"].get("embedder") == "conv_stem" and spec["vision"].get("layers", 0) > 0 and "patch" in spec["heads"]


def member_recipe(name: str, base: str = "quick", pretrained_tower: bool = True) -> TrainConfig:
    """The schedule of preset `base` (the classroom recipe, or "smoke" for tests), the architecture's own
    objectives, the zoo's sizes. Grounding is weighted as the quick preset weighs it. On the quick base a member
    with the zoo's tower starts from it (unless `pretrained_tower` is False) with no perception phase; otherwise
    a member with a patch head learns to see in a perception phase, and one without has none."""
    spec = load_architecture(name)
    recipe = scratch_preset(base)  # the preset's own tower was made for its own sizes, not the zoo's
    weights = dict(spec["objectives"])
    if "grounding" in weights and recipe.loss_weights:
        weights["grounding"] = recipe.loss_weights.get("grounding", weights["grounding"])
    sizes = ZOO_SIZES if base == "quick" else {k: v for k, v in recipe.model.items() if k not in ("vision_layers", "text_layers", "fusion_layer", "decoder_layers")}
    from_tower = pretrained_tower and base == "quick" and uses_zoo_tower(name)
    # The shipped members were trained on the generator's own wordings and pictures; the recipe keeps that data.
    return replace(
        recipe, preset=f"zoo-{base}", architecture=name, loss_weights=weights, model=dict(sizes), itm_images=min(8, recipe.itm_images),
        reworded_share=0.0, restyled_share=0.0,
        vision_init=ZOO_TOWER if from_tower else None,
        vision_warmup_steps=0 if from_tower or "patch" not in spec["heads"] else recipe.vision_warmup_steps,
    )


def tower_recipe() -> TrainConfig:
    """The recipe whose perception phase makes the zoo's tower (`python -m vqa pretrain-vision --preset zoo`)."""
    return member_recipe(TOWER_MEMBER, pretrained_tower=False)
