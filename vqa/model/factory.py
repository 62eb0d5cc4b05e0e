"""Architectures as data: each file in `vqa/model/architectures/` names one architecture of the family,
and one factory builds any of them (open_clip's `model_configs/` + `create_model`).

    >>> from vqa.model import list_architectures, create_model
    >>> list_architectures()
    ['dual-encoder', 'dual-stream', 'encoder-decoder', 'med-early', ...]
    >>> model = create_model("single-stream", hidden_size=32)   # any config field can be overridden

A file has a `fusion` kind, `vision`, `text` and `decoder` sections, the `heads` the model has and the
`objectives` it trains with by default (loss weights, see `vqa.training.objectives`; `masking` optionally
names the masking scheme). Sizes it does not
set (hidden size, heads, image size) are `ShapesVLPConfig`'s defaults, the same for every architecture,
so that members differ only where their architectures do. docs/architectures.md says how to add one.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

from vqa.data.vocabulary import PATCH_ATTRIBUTE_VALUES, answer_vocabulary
from vqa.model.configuration import ShapesVLPConfig
from vqa.model.modeling import ShapesVLPForVQA
from vqa.tokenizer import PACKAGE_TOKENIZER_DIR, load_tokenizer

ARCHITECTURES_DIR = Path(__file__).parent / "architectures"
SECTIONS = {"fusion", "vision", "text", "decoder", "heads", "objectives", "masking", "description", "stands_for"}
# How the file's sections map onto the flat config that is saved with the weights.
SECTION_FIELDS = {
    ("vision", "embedder"): "image_embedder",
    ("vision", "layers"): "vision_layers",
    ("vision", "fit"): "image_fit",
    ("vision", "mask_token"): "image_mask_token",
    ("text", "layers"): "text_layers",
    ("text", "fusion_layer"): "fusion_layer",
    ("text", "encoder"): "text_encoder",
    ("decoder", "layers"): "decoder_layers",
}


def list_architectures() -> list[str]:
    """The names of the architectures this project can build."""
    return sorted(path.stem for path in ARCHITECTURES_DIR.glob("*.json"))


def load_architecture(name: str) -> dict:
    """The architecture file `name` as a dict, checked for unknown sections and fields."""
    return copy.deepcopy(_read_architecture(name))


@functools.lru_cache(maxsize=None)
def _read_architecture(name: str) -> dict:
    path = ARCHITECTURES_DIR / f"{name}.json"
    if name not in list_architectures():
        raise ValueError(f"unknown architecture {name!r}: choose one of {', '.join(list_architectures())}")
    spec = json.loads(path.read_text())
    unknown = set(spec) - SECTIONS
    for section in ("vision", "text", "decoder"):
        unknown |= {f"{section}.{key}" for key in spec.get(section, {}) if (section, key) not in SECTION_FIELDS}
    if unknown:
        raise ValueError(f"{path.name}: unknown fields {sorted(unknown)}")
    return spec


def architecture_config(name: str, **overrides) -> ShapesVLPConfig:
    """The config of architecture `name` for the shapes world (the package tokenizer, the answer vocabulary,
    the patch attributes), with `overrides` (any `ShapesVLPConfig` field) applied last."""
    spec = load_architecture(name)
    fields = {"fusion": spec["fusion"], "heads": spec["heads"]}
    for (section, key), field in SECTION_FIELDS.items():
        if key in spec.get(section, {}):
            fields[field] = spec[section][key]
    tokenizer = load_tokenizer(PACKAGE_TOKENIZER_DIR)
    labels = answer_vocabulary()
    return ShapesVLPConfig(
        vocab_size=len(tokenizer),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        pad_token_id=tokenizer.pad_token_id,
        cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id,
        mask_token_id=tokenizer.mask_token_id,
        answer_start_token_id=tokenizer.convert_tokens_to_ids("[ANS]"),
        caption_start_token_id=tokenizer.convert_tokens_to_ids("[CAP]"),
        patch_attributes={attribute: len(values) for attribute, values in PATCH_ATTRIBUTE_VALUES.items()},
        architecture=name,
        **{**fields, **overrides},
    )


def create_model(name: str, **overrides) -> ShapesVLPForVQA:
    """A freshly initialised model of architecture `name` (see `architecture_config`)."""
    return ShapesVLPForVQA(architecture_config(name, **overrides))


def default_objectives(name: str) -> dict[str, float]:
    """The loss weights architecture `name` trains with unless a recipe says otherwise."""
    return dict(load_architecture(name)["objectives"])
