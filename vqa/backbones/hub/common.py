"""What every hub adapter shares.

- `HubBackbone`: a transformers model + its tokenizer and image processor behind the
  `Backbone` API, with the vision encoding of each image cached (`encode_image`).
- Ranking candidate answers by a softmax over their scores (ITM, CLIP).
  Decoding settings and sequence scoring live in `vqa.backbones.decoding`, shared with
  the embedded model.
- Attention onto the patch grid: rows normalised to sum to 1 over the grid.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from vqa.backbones.base import Backbone
from vqa.backbones.decoding import (  # noqa: F401 - re-exported: the adapters import them from here
    generated_log_likelihood,
    generation_kwargs,
    ranked,
    scored_positions,
    seeded,
    sequence_log_likelihood,
)
from vqa.backbones.image_cache import ImageEncodingCache, image_key
from vqa.data.vocabulary import COLOR_NAMES, COUNTS, SHAPES, SIZES
from vqa.errors import InputError
from vqa.quantization import SCHEME_LABELS, model_bytes
from vqa.results import Answer, AttentionMaps, ModelInfo

log = logging.getLogger(__name__)

#: What "classifier" ranks when the caller gives no candidates: the answers of this
#: project's shapes world (yes/no, counts, colours, shapes, sizes). Say so in info().
DEFAULT_CANDIDATES: tuple[str, ...] = ("yes", "no", *COUNTS, *COLOR_NAMES, *SHAPES, *SIZES)
DEFAULT_CANDIDATES_NOTE = (
    f"Without a candidate list, ranking scores a default list of {len(DEFAULT_CANDIDATES)} answers "
    f"(yes/no, counts {COUNTS[0]}-{COUNTS[-1]}, colours, shapes, sizes of the shapes world); "
    "pass candidates=[...] for others."
)


def clean_texts(texts: list[str]) -> list[str]:
    """Texts with whitespace collapsed, empty ones dropped, duplicates removed (order kept)."""
    seen = dict.fromkeys(t for t in (" ".join(str(x).split()) for x in texts) if t)
    if not seen:
        raise InputError("No text to compare: the list is empty or every entry is blank.")
    return list(seen)


def candidate_list(candidates: list[str] | None) -> list[str]:
    """The caller's candidate answers, cleaned, or the default list when none are given."""
    if not candidates:
        log.info("no candidates given: ranking the default list (%d answers)", len(DEFAULT_CANDIDATES))
        return list(DEFAULT_CANDIDATES)
    return clean_texts(candidates)


def softmax_ranking(texts: list[str], logits: torch.Tensor, top_k: int, head: str = "rank") -> Answer:
    """An Answer ranking `texts` by a softmax over their scores (the probabilities sum to 1 over all texts)."""
    probs = torch.softmax(logits.float().flatten(), dim=0).tolist()
    pairs = sorted(zip(texts, probs), key=lambda kv: kv[1], reverse=True)
    return Answer(answer=pairs[0][0], score=float(pairs[0][1]), candidates=[(t, float(p)) for t, p in pairs[:top_k]],
                  head=head)


# ----- attention onto the patch grid ------------------------------------------------------
def patch_grid(image_size, patch_size) -> tuple[int, int]:
    """(rows, cols) of patches from a config's image_size and patch_size (ints or pairs)."""
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
    return int(h) // int(ph), int(w) // int(pw)


def normalise_rows(maps: np.ndarray) -> np.ndarray:
    """Make each (grid_h, grid_w) map sum to 1; an all-zero map becomes uniform."""
    maps = np.clip(np.asarray(maps, dtype=np.float64), 0.0, None)
    totals = maps.sum(axis=(-2, -1), keepdims=True)
    uniform = np.full_like(maps, 1.0 / (maps.shape[-1] * maps.shape[-2]))
    return np.where(totals > 0, maps / np.where(totals > 0, totals, 1.0), uniform).astype(np.float32)


def patches_to_grid(weights: torch.Tensor, grid: tuple[int, int]) -> np.ndarray:
    """(..., n_patches) attention over row-major patches → (..., grid_h, grid_w), rows normalised."""
    gh, gw = grid
    if weights.shape[-1] != gh * gw:
        raise ValueError(f"{weights.shape[-1]} patch columns do not fill a {gh}x{gw} grid")
    return normalise_rows(weights.float().reshape(*weights.shape[:-1], gh, gw).cpu().numpy())


def stack_layers(per_layer: tuple[torch.Tensor, ...] | list[torch.Tensor]) -> torch.Tensor:
    """Per-layer (1, heads, q, k) attentions → (layers, heads, q, k)."""
    return torch.stack([a[0] for a in per_layer], dim=0)


# ----- facts for the Model tab ------------------------------------------------------------
def human_count(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.1f} k"


def human_bytes(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def weights_on_disk(folder: Path) -> int:
    """Bytes of the safetensors files (hub cache entries are symlinks: stat follows them)."""
    return sum(p.stat().st_size for p in Path(folder).glob("*.safetensors"))


class HubBackbone(Backbone):
    """A hub checkpoint behind the Backbone API.

    Subclasses set `family`, `capabilities`, `fusion`, `description`, implement
    `_encode_image(image)` (the expensive vision pass, cached by `encode_image`)
    and `facts()`, plus the underscored task methods of `Backbone`.
    """

    fusion: str = ""
    description: str = ""

    def __init__(self, name: str, model: torch.nn.Module, tokenizer, image_processor, folder: Path,
                 quantization: str | None = None, notes: list[str] | None = None, num_parameters: int = 0):
        super().__init__(name, quantization)
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.folder = Path(folder)
        self.config = model.config
        self.notes = list(notes or [])
        # The loader passes the count of a meta skeleton of the config; counting the loaded model is right only
        # at full precision (dynamic int8 packs weights outside `parameters()`, nf4 packs two to a byte).
        self.num_parameters = num_parameters or sum(p.numel() for p in model.parameters())
        self.encodings = ImageEncodingCache()
        self._memory: int | None = None
        self._attention_lock = threading.Lock()

    # ----- the cached vision pass --------------------------------------------------------
    def encode_image(self, image: Image.Image, key: str | None = None) -> Any:
        """The vision encoding of `image`, computed once per image content and reused. `key`: the
        image's `image_key` when the caller already hashed it."""
        return self.encodings.get_or_compute(key or image_key(image, self.quantization), lambda: self._encode_image(image))

    def _encode_image(self, image: Image.Image) -> Any:
        raise NotImplementedError

    def pixel_values(self, image: Image.Image) -> torch.Tensor:
        return self.image_processor(images=image, return_tensors="pt")["pixel_values"]

    def tokenize(self, texts: str | list[str], max_length: int) -> dict[str, torch.Tensor]:
        return self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=max_length)

    def token_strings(self, ids: torch.Tensor) -> list[str]:
        return self.tokenizer.convert_ids_to_tokens(ids.tolist())

    @contextlib.contextmanager
    def eager_attention(self):
        """Run with the eager attention kernel: the fused SDPA path returns no attention weights."""
        with self._attention_lock:
            previous = getattr(self.model.config, "_attn_implementation", None)
            if previous in (None, "eager"):
                yield
                return
            self.model.set_attn_implementation("eager")
            try:
                yield
            finally:
                self.model.set_attn_implementation(previous)

    # ----- info ----------------------------------------------------------------------------
    def facts(self) -> dict[str, str]:
        return {}

    def info(self) -> ModelInfo:
        facts = {"family": self.family, "fusion": self.fusion, **self.facts(),
                 "parameters": human_count(self.num_parameters),
                 "size on disk": human_bytes(weights_on_disk(self.folder)),
                 "memory (weights)": human_bytes(self.memory_bytes()),
                 "quantization": SCHEME_LABELS.get(self.quantization, str(self.quantization)),
                 "checkpoint": str(self.folder)}
        return ModelInfo(name=self.name, family=self.family, description=self.description, facts=facts,
                         capabilities=sorted(self.capabilities), quantization=self.quantization,
                         notes=list(self.notes))

    def clear_caches(self) -> None:
        self.encodings.clear()

    def memory_bytes(self) -> int:
        if self._memory is None:
            # Dynamic int8 packs weights outside parameters/buffers: only the state dict sees them.
            self._memory = model_bytes(self.model) if self.quantization == "int8" else int(
                self.model.get_memory_footprint())
        return self._memory

    def attention_maps(self, cross: np.ndarray, tokens: list[str], image: Image.Image, kind: str, note: str,
                       layers: list[int] | None = None, **extra) -> AttentionMaps:
        return AttentionMaps(cross=cross, tokens=tokens, layers=layers or list(range(cross.shape[0])),
                             image_size=image.size, kind=kind, note=note, **extra)
