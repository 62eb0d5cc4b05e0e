"""The models the demo serves: what a visitor may choose, and one shared cache of what is loaded.

A public Space is open to anonymous visitors, so:
- each browser session chooses its own model (the choice lives in that session's `gr.State`,
  as an offer's key); one visitor's choice never changes what another sees;
- what may be chosen is an allow-list (`offers()`): the default model, the models shipped under
  weights/, and the hub checkpoints of the catalogue. `VQA_ALLOW_CUSTOM_MODELS=1` (a teacher's
  laptop, a private Space) also lets a visitor name any local folder or hub id;
- loaded models live in one cache shared by every session, keyed by (model, quantization) and
  bounded by memory: the least recently used is evicted, except the default model as served.
  Ten visitors choosing the same model load it once;
- one load at a time: a request that needs a load while another runs is told the server is busy
  (a script cannot queue up loads), and a model that fails to load is not retried in another precision
  unless the quantization itself is what this machine lacks.

Requests take the backbone object once at their start and keep it, so an eviction or another
visitor's choice never changes a model under a running request.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import vqa
from vqa.backbones.base import Backbone
from vqa.loading import EMBEDDED_MODEL_TYPE, DEFAULT_MODEL_DIR
from vqa.quantization import normalise_scheme

log = logging.getLogger("demo")

ProgressFn = Callable[[float, str], None]

#: Memory the cache of loaded models may hold, in bytes ($VQA_MODEL_MEMORY_MB): the default model
#: always stays; others are evicted, least recently used first, once the total is over this.
DEFAULT_MEMORY_BUDGET = 3_000 * 1_000_000
#: Where shipped models live: every folder below it (two levels deep) holding an embedded model is offered.
WEIGHTS_DIR = DEFAULT_MODEL_DIR.parent
#: The architecture zoo's members, one folder each: what the Learn tab compares.
ZOO_DIR = WEIGHTS_DIR / "zoo"
#: The one message for a model that is not offered: the same whether or not such a folder or hub id
#: exists, so that it tells a visitor nothing about the server.
NOT_OFFERED = "That model is not offered on this server. Choose one from the list."
BUSY = "Another model is loading on this server right now. Please try again in a few seconds."


class BusyError(vqa.VQAError):
    """A load was asked for while another one runs."""


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def custom_models_allowed() -> bool:
    """$VQA_ALLOW_CUSTOM_MODELS: may visitors name any local folder or hub id?"""
    return _truthy(os.environ.get("VQA_ALLOW_CUSTOM_MODELS"))


def default_serving_scheme() -> str | None:
    """$VQA_QUANTIZE, or int8: the quantization the demo answers with."""
    return normalise_scheme(os.environ.get("VQA_QUANTIZE", "int8"))


def memory_budget() -> int:
    value = os.environ.get("VQA_MODEL_MEMORY_MB")
    return int(float(value) * 1_000_000) if value else DEFAULT_MEMORY_BUDGET


@dataclass(frozen=True)
class Offer:
    """One model a visitor may choose. `key` is what the browser sees and sends back; `source` is
    what `vqa.load` loads (a server path stays on the server)."""

    key: str
    source: str
    label: str
    available: bool = True
    reason: str = ""  # why it is unavailable, in words a visitor may read
    listed: bool = True  # False: selectable only by the session that holds its key (a model trained live)


@dataclass
class Loaded:
    """A backbone in the cache, with what the Model tab says about it."""

    backbone: Backbone
    seconds: float
    memory: int
    note: str | None = None  # why it is served in full precision


def shipped_model_folders(weights_dir: Path = WEIGHTS_DIR) -> list[Path]:
    """Folders under weights/ (and one level below, e.g. weights/zoo/NAME) that hold an embedded model."""
    import json

    folders = []
    for config in sorted([*weights_dir.glob("*/config.json"), *weights_dir.glob("*/*/config.json")]):
        try:
            if json.loads(config.read_text()).get("model_type") == EMBEDDED_MODEL_TYPE:
                folders.append(config.parent)
        except (OSError, ValueError):
            log.warning("Skipping %s: not a readable model config", config)
    return folders


def hub_offers() -> list[Offer]:
    """The catalogue's hub checkpoints, each marked available or not (with the reason) before anyone clicks."""
    try:
        from vqa.backbones.hub import HUB_MODELS
        from vqa.backbones.hub.availability import hub_availability
    except ImportError:
        return []
    offers = []
    for entry in HUB_MODELS:
        extra = " · ".join(x for x in (entry.get("does"), entry.get("size")) if x)
        status = hub_availability(entry["id"])
        if not status.ok:
            log.info("Hub model %s is offered as unavailable: %s. %s", entry["id"], status.reason, status.advice)
        offers.append(Offer(entry["id"], entry["id"], f"{entry['id']} — {extra}" if extra else entry["id"], status.ok, status.reason))
    return offers


class ModelManager:
    """The allow-list of models and the shared, memory-bounded cache of loaded backbones (thread-safe)."""

    def __init__(self, source: str | None = None, backbone: Backbone | None = None, serve: str | None = "default",
                 allow_custom: bool | None = None, memory_budget_bytes: int | None = None, offer_hub: bool = True):
        """source: the default model (a folder or hub id; default $VQA_MODEL or weights/shapes-vlp).
        backbone: an already loaded model for `source`, served as it is (tests pass one to skip loading).
        serve: the quantization requests are answered with ("default": $VQA_QUANTIZE or int8; None: full precision).
        allow_custom: may visitors name any folder or hub id (default: $VQA_ALLOW_CUSTOM_MODELS).
        offer_hub: list the catalogue's hub checkpoints."""
        self.source = str(source) if source else vqa.default_model()
        self.serving_scheme = None if backbone is not None else default_serving_scheme() if serve == "default" else normalise_scheme(serve)
        self.allow_custom = custom_models_allowed() if allow_custom is None else allow_custom
        self.memory_budget = memory_budget() if memory_budget_bytes is None else memory_budget_bytes
        self.load_error: str | None = None  # why the default model could not be loaded, for the page
        self._offer_hub = offer_hub
        self._offers: dict[str, Offer] | None = None
        self._cache: OrderedDict[tuple[str, str | None], Loaded] = OrderedDict()
        self._state_lock = threading.Lock()  # guards the cache; held for microseconds
        self._load_lock = threading.Lock()  # one load at a time (loading uses both CPU cores and lots of memory)
        if backbone is not None:
            self._cache[(self.source, backbone.quantization)] = Loaded(backbone, 0.0, 0)
            self.serving_scheme = backbone.quantization

    # ----- what may be chosen --------------------------------------------------------
    @property
    def default_key(self) -> str:
        return self.offers()[0].key

    def offers(self) -> list[Offer]:
        """The allow-list, default first: what the Model tab's dropdown shows."""
        with self._state_lock:
            if self._offers is None:
                self._offers = {o.key: o for o in self._build_offers()}
            return [o for o in self._offers.values() if o.listed]

    def zoo_offers(self) -> dict[str, Offer]:
        """The architecture zoo's members on offer, by member name (the folder's name)."""
        return {Path(o.source).name: o for o in self.offers() if Path(o.source).parent.resolve() == ZOO_DIR.resolve()}

    def register_trained(self, folder: str | Path, label: str) -> str:
        """Offer a model trained on this server to the session that trained it: an unlisted key, unguessable,
        that only that session holds."""
        import secrets

        key = f"trained/{secrets.token_hex(8)}"
        self.offers()
        with self._state_lock:
            self._offers[key] = Offer(key, str(folder), label, listed=False)
        return key

    def _build_offers(self) -> list[Offer]:
        default = Offer(self._public_key(self.source), self.source, f"{self._public_name(self.source)} (default, embedded)")
        offers = [default]
        for folder in shipped_model_folders():
            key = self._public_key(str(folder))
            if key != default.key:
                offers.append(Offer(key, str(folder), f"{folder.name} (shipped)"))
        if self._offer_hub:
            offers += [o for o in hub_offers() if o.key != default.key]
        return offers

    @staticmethod
    def _public_key(source: str) -> str:
        """A name for the browser: a folder under weights/ by its path there, a hub id as it is, any other folder by its name."""
        path = Path(source)
        if path.is_absolute() or path.exists():
            try:
                return str(path.resolve().relative_to(WEIGHTS_DIR.parent))
            except ValueError:
                return path.name
        return source

    @classmethod
    def _public_name(cls, source: str) -> str:
        return Path(cls._public_key(source)).name if Path(source).exists() else source

    def choose(self, choice: str | None, custom: str | None = None) -> str:
        """The key a session keeps for a visitor's choice, or InputError (NOT_OFFERED) for anything not on the list.

        In custom mode a typed folder or hub id is its own key."""
        typed = custom.strip() if isinstance(custom, str) else ""
        if typed:
            if not self.allow_custom:
                raise vqa.InputError(NOT_OFFERED)
            return typed
        if not isinstance(choice, str) or not choice.strip():
            raise vqa.InputError("Choose a model from the list.")
        offer = self._offer(choice.strip())
        if offer is None:
            raise vqa.InputError(NOT_OFFERED)
        if not offer.available:
            raise vqa.UnsupportedError(f"{offer.key} is unavailable here: {offer.reason}.")
        return offer.key

    def _offer(self, key: str) -> Offer | None:
        self.offers()
        return self._offers.get(key)

    def _source(self, key: str | None) -> str:
        """What `vqa.load` loads for a session's key (None: the default model)."""
        if key is None or key == self.default_key:
            return self.source
        offer = self._offer(key)
        if offer is not None:
            return offer.source
        if self.allow_custom:
            return key
        raise vqa.InputError(NOT_OFFERED)

    # ----- the served models ---------------------------------------------------------
    @property
    def loaded(self) -> bool:
        """Is the default model in memory?"""
        with self._state_lock:
            return any(source == self.source for source, _ in self._cache)

    def current(self, key: str | None = None, progress: ProgressFn | None = None, wait_s: float = 0.0) -> Backbone:
        """The model a session answers with (None: the default), loaded on first use.
        wait_s: how long to wait for another load to finish before saying the server is busy."""
        return self.entry(key, progress, wait_s).backbone

    def entry(self, key: str | None = None, progress: ProgressFn | None = None, wait_s: float = 0.0) -> Loaded:
        """The cache entry of a session's served model: the backbone, its load time, memory and serving note."""
        source = self._source(key)
        for scheme in dict.fromkeys((self.serving_scheme, None)):  # a full-precision fallback is cached under None
            found = self._cached((source, scheme))
            if found is not None and (scheme == self.serving_scheme or found.note):
                return found
        return self._load_served(source, progress, wait_s)

    def served_scheme(self, key: str | None = None) -> str | None:
        """The quantization a session's model really has (None: full precision, also after a fallback)."""
        return self.current(key).quantization

    def full_precision(self, key: str | None = None, progress: ProgressFn | None = None) -> Backbone:
        """A session's model in full precision: the reference the Quantization tab compares against."""
        return self.quantized(key, None, progress)

    def quantized(self, key: str | None, scheme: str | None, progress: ProgressFn | None = None) -> Backbone:
        """A session's model quantized with `scheme` (None: full precision), from the cache when possible."""
        scheme = normalise_scheme(scheme)
        served = self.current(key, progress)
        if scheme == served.quantization:
            return served
        source = self._source(key)
        found = self._cached((source, scheme))
        if found is not None:
            return found.backbone
        return self._load(source, scheme, progress).backbone

    def cached_schemes(self, key: str | None = None) -> list[str | None]:
        """Schemes whose copy of a session's model is already in memory."""
        source = self._source(key)
        with self._state_lock:
            return [scheme for (s, scheme) in self._cache if s == source]

    def preload(self) -> bool:
        """Load the default model now (at startup) so the first visitor does not wait; False if it failed.
        A failure is kept in `load_error` for the page; requests retry, so weights that appear later are picked up."""
        try:
            self.current()
            return True
        except vqa.VQAError as exc:
            log.warning("Could not load %s: %s", self.source, exc)
            return False

    # ----- loading and the cache --------------------------------------------------------
    def _cached(self, cache_key: tuple[str, str | None]) -> Loaded | None:
        with self._state_lock:
            found = self._cache.get(cache_key)
            if found is not None:
                self._cache.move_to_end(cache_key)
            return found

    def _load_served(self, source: str, progress: ProgressFn | None, wait_s: float = 0.0) -> Loaded:
        """`source` with the serving scheme, or in full precision where this machine lacks that scheme."""
        if self.serving_scheme is None:
            return self._load(source, None, progress, wait_s)
        try:
            return self._load(source, self.serving_scheme, progress, wait_s)
        except vqa.UnsupportedError as exc:  # the scheme, not the model, is what failed: e.g. no int8 engine here
            log.warning("Could not load %s with %s (%s); serving it in full precision", source, self.serving_scheme, exc)
            loaded = self._load(source, None, progress, wait_s)
            loaded.note = f"Served in full precision: {self.serving_scheme} is not available here ({exc})"
            return loaded

    def _load(self, source: str, scheme: str | None, progress: ProgressFn | None, wait_s: float = 0.0) -> Loaded:
        acquired = self._load_lock.acquire(timeout=wait_s) if wait_s > 0 else self._load_lock.acquire(blocking=False)
        if not acquired:
            raise BusyError(BUSY)
        try:
            found = self._cached((source, scheme))  # loaded by the request that held the lock just before
            if found is not None:
                return found
            start = time.perf_counter()
            try:
                backbone = vqa.load(source, quantize=scheme, progress=progress)
            except vqa.VQAError as exc:
                if source == self.source:
                    self.load_error = str(exc)
                raise
            seconds = time.perf_counter() - start
            loaded = Loaded(backbone, seconds, int(backbone.memory_bytes()))
            log.info("Loaded %s (quantization: %s) in %.1f s, %.0f MB", source, scheme or "none", seconds, loaded.memory / 1e6)
            if source == self.source:
                self.load_error = None
            with self._state_lock:
                self._cache[(source, scheme)] = loaded
                self._evict()
            return loaded
        finally:
            self._load_lock.release()

    def _evict(self) -> None:
        """Drop least recently used models until the cache fits its budget; the default as served stays,
        and so does the model just loaded (the last entry). Caller holds the state lock."""
        pinned = {(self.source, self.serving_scheme)}
        while sum(entry.memory for entry in self._cache.values()) > self.memory_budget:
            victim = next((k for k in list(self._cache)[:-1] if k not in pinned), None)
            if victim is None:
                return
            log.info("Evicting %s (%s) from the model cache", *victim)
            del self._cache[victim]

    def memory_bytes(self, backbone: Backbone) -> int:
        """The weights' memory, as measured when the backbone was loaded."""
        with self._state_lock:
            for entry in self._cache.values():
                if entry.backbone is backbone:
                    return entry.memory or int(backbone.memory_bytes())
        return int(backbone.memory_bytes())
