"""Training recipes as data: a `TrainConfig` names an architecture, its objectives' weights, the data
per step and the schedule. `PRESETS` are the recipes the CLI offers (`python -m vqa train --preset NAME`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from vqa.data.questions import SINGLE_REFERENT_FAMILIES
from vqa.model.factory import load_architecture


@dataclass
class TrainConfig:
    preset: str = "full"
    architecture: str = "shapes-vlp"  # a file in vqa/model/architectures/ (see vqa.model.list_architectures)
    steps: int = 1500  # joint steps, after the perception warm-up
    vision_warmup_steps: int = 300  # perception phase: vision tower + patch head on the patch-attribute objective
    images_per_step: int = 32  # per process and micro-step: the global batch is this × processes × accumulation steps
    gradient_accumulation_steps: int = 1
    questions_per_image: int = 4
    itm_images: int = 16  # ITM/ITC on a sub-batch: captions are long and these objectives only shape the representation
    curriculum_steps: int = 150
    curriculum_max_objects: int = 2
    learning_rate: float = 1e-3
    min_learning_rate: float = 3e-5
    warmup_steps: int = 100
    weight_decay: float = 0.05
    max_grad_norm: float = 1.0
    eval_every: int = 150
    eval_scenes: int = 60
    seed: int = 0
    # Patches on an object weigh this much more than background ones in the patch loss: most
    # patches are background, so unweighted the "none" class dominates (the model card has the figures).
    patch_object_weight: float = 10.0
    # Question families whose [CLS] is also aligned, in the fusion layer, to what the question is about: the
    # one object a colour, shape, size or left/right question asks about, else the objects its phrase names
    # (or "no object"). The classifier reads [CLS], so the answer is then one look away, and the heatmap
    # shows that look.
    cls_grounding_families: tuple[str, ...] = ()
    # Align [CLS] in every fused layer, not only the first: aligned in the first alone, a left/right question's
    # [CLS] found its object only half of the time (the model card has the runs).
    cls_grounding_every_layer: bool = False
    # Objective name -> weight in the total loss (vqa.training.objectives); None: the architecture's own objectives.
    loss_weights: dict | None = None
    # "per_objective": MLM hides words only, MVM patches only (UNITER's one modality at a time);
    # "modality_aware": MLIM's, see vqa.training.objectives.MASKING_REGIMES. None: the architecture's choice.
    masking: str | None = None
    # Training's augmentations: the share of questions worded by the re-wording grammar (vqa.data.wordings)
    # and of pictures drawn in another look (vqa.data.style_augmentation); 0 trains on the generator alone.
    reworded_share: float = 0.0
    restyled_share: float = 0.0
    # Of the restyled pictures, the share drawn on an elongated page: only for a model that letterboxes its
    # pictures (config image_fit), since squashed, their circles would be ellipses.
    elongated_share: float = 0.0
    # A time budget in minutes: the joint phase ends when it is spent (`steps` is then a ceiling) and its
    # learning-rate schedule and validations follow the clock, so a run fills its minutes on any machine.
    minutes: float | None = None
    # A pretrained vision tower to start from (vqa.training.vision_tower; a folder relative to weights/).
    vision_init: str | None = None
    model: dict = field(default_factory=dict)  # ShapesVLPConfig overrides of the architecture
    domain_calibration: dict = field(default_factory=dict)  # vqa.domain.calibrate's scene counts (default: its own)


# A classroom run in under 10 minutes on 2 CPU cores: a smaller model, no ITM / ITC, more questions per image, and
# the [CLS] aligned to what existence and counting questions name. What each change bought, measured with
# bench/sweep_presets.py: bench/results/quick_preset_history.md; the augmentations: bench/results/augmentation_ab.md.
# The pretrained text encoder made each step slower and the learning faster: 320 joint steps instead of 380.
# Hidden 96 from a tower of that width: a step costs half as much as at 192 and learns about as much, so a 5-minute
# budget reaches further (the history file has the same-day runs of both widths).
QUICK_FROM_SCRATCH = TrainConfig(
    preset="quick-scratch", steps=320, vision_warmup_steps=250, questions_per_image=8, warmup_steps=30, curriculum_steps=40,
    reworded_share=0.5, restyled_share=0.5,
    learning_rate=1.5e-3, min_learning_rate=5e-4, eval_every=80, eval_scenes=40,
    loss_weights={"classifier": 1.0, "generative": 1.0, "caption": 0.5, "itc": 0.0, "itm": 0.0, "patch": 0.5, "grounding": 1.0},
    cls_grounding_families=("exist", "not_exist", "count"),
    model={"hidden_size": 96, "num_attention_heads": 4, "intermediate_size": 384, "image_size": 64, "text_layers": 3, "fusion_layer": 0},
)

PRESETS = {
    # Sized to train in at most 60 minutes on 2 CPU cores (the shipped weights' time is in their model card); a
    # longer joint phase added almost nothing to validation accuracy.
    # Half of its questions re-worded and half of its pictures re-styled: bench/results/augmentation_ab.md.
    # Its [CLS] is taught, in every fused layer, to look at the object a one-object question asks about, so the
    # heatmap a class sees is the look the classifier answers from (the model card compares the runs).
    # Its questions are read by a frozen pretrained sentence encoder (the architecture file says so), which costs
    # time per step and learns in fewer steps: 1350 joint steps instead of 1650 (the model card has the curve).
    "full": TrainConfig(preset="full", steps=1350, reworded_share=0.5, restyled_share=0.5, elongated_share=0.5,
                        cls_grounding_families=SINGLE_REFERENT_FAMILIES, cls_grounding_every_layer=True),
    # The classroom recipe starting from a pretrained vision tower (vqa.training.vision_tower, made with
    # `python -m vqa pretrain-vision --preset quick`): no perception phase, so its minutes go to fusion and answers.
    "quick": replace(QUICK_FROM_SCRATCH, preset="quick", vision_init="vision/quick", vision_warmup_steps=0),
    # The same recipe learning to see by itself, in a perception phase: what the zoo's members do.
    "quick-scratch": QUICK_FROM_SCRATCH,
    # A few steps on a tiny model: for tests of the training loop itself.
    "smoke": TrainConfig(
        preset="smoke", steps=3, vision_warmup_steps=2, images_per_step=4, questions_per_image=2, itm_images=4, warmup_steps=1, curriculum_steps=1, eval_every=3, eval_scenes=3,
        domain_calibration={"train_scenes": 20, "val_scenes": 40, "question_scenes": 400, "val_question_scenes": 40},
        model={"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "image_size": 32, "patch_size": 8,
               "vision_layers": 1, "text_layers": 2, "fusion_layer": 1, "decoder_layers": 1, "itc_dim": 16},
    ),
}


def preset(name: str, **overrides) -> TrainConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})


def scratch_preset(name: str, **overrides) -> TrainConfig:
    """Preset `name` as it learns to see by itself: its "-scratch" twin where it starts from a pretrained vision
    tower (made for its own architecture and sizes), else the preset itself."""
    return preset(f"{name}-scratch" if f"{name}-scratch" in PRESETS else name, **overrides)


def loss_weights(train_config: TrainConfig) -> dict[str, float]:
    """The recipe's objective weights, or its architecture's when the recipe sets none."""
    if train_config.loss_weights is not None:
        return dict(train_config.loss_weights)
    return dict(load_architecture(train_config.architecture)["objectives"])


def masking(train_config: TrainConfig) -> str:
    """The recipe's masking scheme, or its architecture's (per-objective unless the file says otherwise)."""
    if train_config.masking is not None:
        return train_config.masking
    return load_architecture(train_config.architecture).get("masking", "per_objective")
