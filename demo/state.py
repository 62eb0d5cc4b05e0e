"""The models the demo serves, shared by every user and thread.

One `ModelManager` per server holds:
- the served backbone (loaded once, at startup or on first use, behind a lock): by default
  the int8 copy of the model ($VQA_QUANTIZE: int8, none, bnb-int8 or bnb-nf4). The product
  serves a quantized backbone: measured on the embedded model (bench/bench_model.py), int8
  answers with the same test accuracy as fp32 in three quarters of the time and under half
  the memory. A model that can't be quantized that way is served in full precision;
- its full-precision copy, loaded on first use by the Quantization tab's comparison;
- a small LRU of other quantized copies for that tab, at most one per scheme;
- the memory footprint of each loaded backbone (measuring it is not free).

Requests read the current backbone once at their start and keep that object, so a
model switch in the Model tab never changes a model under a running request: the
old one stays alive until its last request returns. Loads are serialised by one
lock; inference never waits for that lock.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import OrderedDict
from typing import Callable

import vqa
from vqa.backbones.base import Backbone
from vqa.quantization import normalise_scheme

log = logging.getLogger("demo")

#: Quantized copies kept in memory. Each one is a full model; two cover the usual
#: classroom comparison (int8 vs nf4) without holding every scheme at once.
QUANTIZED_CACHE_SIZE = 2

ProgressFn = Callable[[float, str], None]


def default_serving_scheme() -> str | None:
    """$VQA_QUANTIZE, or int8: the quantization the demo answers with."""
    return normalise_scheme(os.environ.get("VQA_QUANTIZE", "int8"))


class ModelManager:
    """The current model, its quantized copies and their sizes (thread-safe)."""

    def __init__(self, source: str | None = None, backbone: Backbone | None = None, quantized_cache_size: int = QUANTIZED_CACHE_SIZE, serve: str | None = "default"):
        """source: what `vqa.load` loads (a folder or hub id; default $VQA_MODEL or weights/shapes-vlp).
        backbone: an already loaded full-precision model for `source`, served as it is (tests pass one to skip loading).
        serve: the quantization scheme requests are answered with ("default": $VQA_QUANTIZE or int8; None: full precision)."""
        self.source = str(source) if source else vqa.default_model()
        self.serving_scheme = None if backbone is not None else default_serving_scheme() if serve == "default" else normalise_scheme(serve)
        self.serving_note: str | None = None  # why the served model fell back to full precision, for the Model tab
        self._backbone = backbone
        self._full_precision: Backbone | None = None  # the fp32 copy of a quantized served model, loaded on demand
        self.load_error: str | None = None
        self.load_seconds: float | None = None
        self._state_lock = threading.Lock()  # guards the fields above and the caches; held for microseconds
        self._load_lock = threading.Lock()  # one load at a time (loading uses both CPU cores and lots of memory)
        self._quantized: OrderedDict[tuple[str, str | None], Backbone] = OrderedDict()
        self._quantized_cache_size = quantized_cache_size
        self._memory: weakref.WeakKeyDictionary[Backbone, int] = weakref.WeakKeyDictionary()

    # ----- the current model ----------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self._backbone is not None

    @property
    def served_scheme(self) -> str | None:
        """The quantization the served model really has (None: full precision, also after a fallback)."""
        backbone = self._backbone
        return backbone.quantization if backbone is not None else None

    def current(self) -> Backbone:
        """The model to use for this request; loads it on first use (raises ModelLoadError if it can't)."""
        backbone = self._backbone
        if backbone is not None:
            return backbone
        with self._load_lock:
            if self._backbone is None:  # nobody loaded it while we waited
                self._backbone, self.serving_note = self._load_served(self.source, None)
            return self._backbone

    def full_precision(self, progress: ProgressFn | None = None) -> Backbone:
        """The current model in full precision: the reference the Quantization tab compares against."""
        served = self.current()
        if served.quantization is None:
            return served
        with self._load_lock:
            if self._full_precision is None:
                self._full_precision = self._load(self.source, None, progress)
            return self._full_precision

    def _load_served(self, source: str, progress: ProgressFn | None) -> tuple[Backbone, str | None]:
        """`source` quantized with the serving scheme, or in full precision where that scheme can't apply:
        (backbone, why it fell back or None). Records the load time, or the error for the page when
        even full precision fails."""
        start = time.perf_counter()
        backbone, note = None, None
        if self.serving_scheme is not None:
            try:
                backbone = self._load(source, self.serving_scheme, progress)
            except vqa.VQAError as exc:  # e.g. no int8 engine in this PyTorch build; a missing model fails again below
                note = f"Served in full precision: {self.serving_scheme} did not load ({exc})"
                log.warning("Could not load %s with %s (%s); trying full precision", source, self.serving_scheme, exc)
        if backbone is None:
            try:
                backbone = self._load(source, None, progress)
            except vqa.VQAError as exc:
                self.load_error = str(exc)
                raise
        self.load_error = None
        self.load_seconds = time.perf_counter() - start
        return backbone, note

    def preload(self) -> bool:
        """Load the default model now (at startup) so the first visitor does not wait; False if it failed.
        A failure is kept in `load_error` for the page; requests retry, so weights that appear later are picked up."""
        try:
            self.current()
            return True
        except vqa.VQAError as exc:
            log.warning("Could not load %s: %s", self.source, exc)
            return False

    def load(self, name_or_path: str, progress: ProgressFn | None = None) -> Backbone:
        """Switch every user to another model. If loading fails the current model stays and the error is raised."""
        name_or_path = str(name_or_path).strip()
        with self._load_lock:
            backbone, note = self._load_served(name_or_path, progress)
            with self._state_lock:
                self._backbone, self.serving_note = backbone, note
                self._full_precision = None  # the old model's
                self.source = name_or_path
                self._quantized.clear()  # copies of the old model
            return backbone

    def _load(self, source: str, scheme: str | None, progress: ProgressFn | None) -> Backbone:
        start = time.perf_counter()
        backbone = vqa.load(source, quantize=scheme, progress=progress)
        log.info("Loaded %s (quantization: %s) in %.1f s", source, scheme or "none", time.perf_counter() - start)
        return backbone

    # ----- quantized copies -----------------------------------------------------------
    def quantized(self, scheme: str | None, progress: ProgressFn | None = None) -> Backbone:
        """The current model quantized with `scheme` (None: the current model itself), from the LRU when possible."""
        scheme = normalise_scheme(scheme)
        served = self.current()
        if scheme is None:
            return self.full_precision(progress)
        if scheme == self.served_scheme:
            return served
        key = (self.source, scheme)
        with self._state_lock:
            if key in self._quantized:
                self._quantized.move_to_end(key)
                return self._quantized[key]
        with self._load_lock:
            with self._state_lock:  # another request may have loaded it while we waited
                if key in self._quantized:
                    self._quantized.move_to_end(key)
                    return self._quantized[key]
            backbone = self._load(key[0], scheme, progress)
            with self._state_lock:
                if key[0] == self.source:  # don't cache a copy of a model that was switched away meanwhile
                    self._quantized[key] = backbone
                    while len(self._quantized) > self._quantized_cache_size:
                        self._quantized.popitem(last=False)
            return backbone

    def cached_schemes(self) -> list[str | None]:
        """Schemes whose copy of the current model is already in memory (the served one included)."""
        with self._state_lock:
            cached = [scheme for (source, scheme) in self._quantized if source == self.source]
        if self.served_scheme is not None:
            cached.append(self.served_scheme)
        return cached

    # ----- facts ------------------------------------------------------------------------
    def memory_bytes(self, backbone: Backbone) -> int:
        """backbone.memory_bytes(), measured once per model (it serialises the weights)."""
        try:
            with self._state_lock:
                if backbone in self._memory:
                    return self._memory[backbone]
        except TypeError:  # a backbone that cannot be weakly referenced: measure every time
            return int(backbone.memory_bytes())
        value = int(backbone.memory_bytes())
        with self._state_lock:
            self._memory[backbone] = value
        return value
