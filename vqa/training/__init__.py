"""Training the embedded models on shapes-world data, split by concern: recipes as data (`recipes`),
batches and their targets (`targets`), the objectives registry (`objectives`), quick validation
(`validation`), the accelerate loop (`loop`), a pretrained vision tower to start from (`vision_tower`), fitting a
recipe to a time budget (`budget`) and a live run in a child process (`live`)."""

from vqa.training.loop import build_model, lr_at, train
from vqa.training.objectives import OBJECTIVES, TrainingObjectives, compute_losses, perception_losses
from vqa.training.recipes import PRESETS, TrainConfig, loss_weights, preset, scratch_preset
from vqa.training.targets import BatchMaker, to_device

__all__ = [
    "OBJECTIVES", "PRESETS", "BatchMaker", "TrainConfig", "TrainingObjectives", "build_model", "compute_losses",
    "loss_weights", "lr_at", "perception_losses", "preset", "scratch_preset", "to_device", "train",
]
