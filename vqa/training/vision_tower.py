"""A pretrained vision tower that a recipe starts from, as vision-language models start from an ImageNet ViT
(BLIP, ALBEF) or an object detector (LXMERT, UNITER): the perception phase of `vqa.training.loop` run once,
its vision tower and patch head saved, so that a short training (a live one in class) spends its minutes
on fusion and answers instead of on learning to see shapes again.

    python -m vqa pretrain-vision --preset quick --steps 1000 --out weights/vision/quick

A recipe names the folder in `TrainConfig.vision_init`, relative to `weights/` unless absolute.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from vqa.loading import DEFAULT_MODEL_DIR

TOWER_FILE = "vision_tower.safetensors"
INFO_FILE = "vision_tower.json"
WEIGHTS_DIR = DEFAULT_MODEL_DIR.parent
# The parameters a tower is made of: the image encoder and the patch-attribute head trained with it. The image
# mask embedding is not one of them: the perception phase never hides a patch, so a model that masks patches
# (MVM) starts its mask embedding fresh on top of any tower.
TOWER_PREFIXES = ("vision_model.", "patch_head.")
NOT_TOWER = ("vision_model.mask_token",)
# The config fields that shape those parameters or what their inputs mean: a model starts from a tower only
# where every one of them agrees.
TOWER_FIELDS = (
    "hidden_size", "num_attention_heads", "intermediate_size", "vision_layers", "image_size", "patch_size", "num_channels",
    "image_embedder", "image_fit", "image_mean", "image_std", "patch_attributes", "layer_norm_eps",
)


def tower_folder(name: str | Path) -> Path:
    """A recipe's `vision_init`: an absolute folder, or one relative to `weights/`."""
    path = Path(name)
    return path if path.is_absolute() else WEIGHTS_DIR / path


def tower_state(model) -> dict[str, torch.Tensor]:
    return {name: tensor for name, tensor in model.state_dict().items() if name.startswith(TOWER_PREFIXES) and name not in NOT_TOWER}


def save_vision_tower(model, folder: str | Path, info: dict | None = None, dtype: torch.dtype = torch.float16) -> Path:
    """Save `model`'s vision tower and patch head to `folder` with the config fields they need, plus `info`
    (how it was trained, what it reached)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({name: tensor.detach().to(dtype).contiguous() for name, tensor in tower_state(model).items()}, str(folder / TOWER_FILE))
    config = {field: getattr(model.config, field) for field in TOWER_FIELDS}
    (folder / INFO_FILE).write_text(json.dumps({"config": config, **(info or {})}, indent=2))
    return folder


def load_vision_tower(model, folder: str | Path) -> dict:
    """Copy the tower saved in `folder` into `model` (in place) and return its info. A model whose config
    differs from the tower's in a field of TOWER_FIELDS is refused with the fields named."""
    folder = Path(folder)
    if not (folder / TOWER_FILE).is_file():
        raise FileNotFoundError(f"no pretrained vision tower in {folder}: make one with `python -m vqa pretrain-vision`")
    info = json.loads((folder / INFO_FILE).read_text())
    differing = [field for field in TOWER_FIELDS if json.loads(json.dumps(getattr(model.config, field))) != info["config"].get(field)]
    if differing:
        raise ValueError(f"the vision tower in {folder} was trained for another config ({', '.join(differing)} differ)")
    state = load_file(str(folder / TOWER_FILE))
    expected = set(tower_state(model))
    if set(state) != expected:
        raise ValueError(f"the vision tower in {folder} does not hold this model's vision parameters")
    model.load_state_dict({name: tensor.float() for name, tensor in state.items()}, strict=False)
    return info
