"""`vqa.load`: one entry point for every backbone."""

from __future__ import annotations

import json
import os
from pathlib import Path

from vqa.backbones.base import Backbone
from vqa.errors import ModelLoadError

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "weights" / "shapes-vlp"
EMBEDDED_MODEL_TYPE = "shapes-vlp"


def default_model() -> str:
    """The backbone loaded when none is named: $VQA_MODEL, else the embedded model."""
    return os.environ.get("VQA_MODEL") or str(DEFAULT_MODEL_DIR)


def _local_model_type(path: Path) -> str | None:
    config = path / "config.json"
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text()).get("model_type")
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{config} is not a readable model config: {exc}") from exc


def load(name_or_path: str | os.PathLike | None = None, quantize: str | None = None, progress=None) -> Backbone:
    """Load a backbone by local folder or hub id; the adapter is chosen from its config's model_type.

    quantize: None, "int8" (PyTorch dynamic int8), "bnb-int8" or "bnb-nf4" (bitsandbytes).
    progress: optional callable(fraction, message) for UIs.
    """
    name = str(name_or_path) if name_or_path else default_model()
    path = Path(name).expanduser()
    if path.is_dir() and _local_model_type(path) == EMBEDDED_MODEL_TYPE:
        from vqa.backbones.embedded import EmbeddedBackbone

        if progress:
            progress(0.1, f"Loading {path.name}")
        backbone = EmbeddedBackbone(path, quantize=quantize)
        if progress:
            progress(1.0, f"Loaded {path.name}")
        return backbone
    if name == str(DEFAULT_MODEL_DIR):
        raise ModelLoadError(f"The embedded model is missing from {DEFAULT_MODEL_DIR}: train it with `python -m vqa train --preset full --out {DEFAULT_MODEL_DIR}`.")
    from vqa.backbones.hub import load_hub_backbone

    return load_hub_backbone(name, quantize=quantize, progress=progress)
