"""`load_hub_backbone`: a hub id or a local folder → a `Backbone`.

How a name is resolved, in order:

1. A local folder (config.json + safetensors weights + tokenizer/image-processor files).
2. A hub id ("owner/name") already in the local Hugging Face cache (HF_HUB_CACHE, else
   HF_HOME/hub, read when called). No network is touched for a cached model.
3. Otherwise the model is downloaded, but only when that can work: not when
   HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set, and not when a 2-second connection
   check to the hub fails. Then a `ModelLoadError` says at once how to get the model,
   instead of transformers retrying the network for a minute. Before downloading, the
   hub's file list is read: a repository without safetensors weights, or whose download
   would exceed VQA_MAX_DOWNLOAD_GB (default 2), is refused before any byte is fetched.

The adapter is chosen from the checkpoint's config (`architectures`, then `model_type`,
then the weight names), never from its name. Only safetensors weights are loaded (a
folder with pickle weights only is refused), and `trust_remote_code` stays off.

Pairing: "idA+idB" loads both and serves each request from the first that can (see
`paired.py`), e.g. "Salesforce/blip-vqa-base+Salesforce/blip-image-captioning-base".

Quantization: "int8" is PyTorch dynamic int8 applied after loading; "bnb-int8" and
"bnb-nf4" go through `BitsAndBytesConfig` in `from_pretrained`. The LM head (the Linear
that outputs the vocabulary) stays full precision with every scheme; with nf4, Linear
layers whose shape the 4-bit CPU kernel cannot pack stay full precision too. `info().notes`
lists what was kept.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
import time
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import torch

from vqa.backbones.base import Backbone
from vqa.backbones.hub.catalog import PAIR_SEPARATOR
from vqa.errors import ModelLoadError
from vqa.quantization import bnb_config, dynamic_int8, normalise_scheme, require_available

log = logging.getLogger(__name__)
Progress = Callable[[float, str], None]

# architecture class name → (adapter module, adapter class)
ADAPTERS: dict[str, tuple[str, str]] = {
    "BlipForQuestionAnswering": ("blip", "BlipVqaBackbone"),
    "BlipForConditionalGeneration": ("blip", "BlipCaptionBackbone"),
    "BlipForImageTextRetrieval": ("blip", "BlipRetrievalBackbone"),
    "ViltForQuestionAnswering": ("vilt", "ViltVqaBackbone"),
    "VisionEncoderDecoderModel": ("vision_encoder_decoder", "VisionEncoderDecoderBackbone"),
    "CLIPModel": ("clip", "ClipBackbone"),
}
# model_type → architectures of that family we serve, and the weight names that tell them apart
# when a config has no `architectures` (prefixes that must all be present; checked in order).
FAMILIES: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "blip": [("BlipForImageTextRetrieval", ("itm_head.",)),
             ("BlipForQuestionAnswering", ("text_encoder.", "text_decoder.")),
             ("BlipForConditionalGeneration", ("text_decoder.",))],
    "vilt": [("ViltForQuestionAnswering", ("classifier.",))],
    "vision-encoder-decoder": [("VisionEncoderDecoderModel", ())],
    "clip": [("CLIPModel", ())],
}
SUPPORTED_TEXT = ("BLIP (blip: VQA, captioning, image-text retrieval), ViLT (vilt: VQA), "
                  "VisionEncoderDecoder (vision-encoder-decoder: captioning), CLIP (clip)")

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
DOWNLOAD_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken"]
#: Largest download a load may start, in GB (10^9 bytes, as the hub shows sizes); VQA_MAX_DOWNLOAD_GB overrides it.
DEFAULT_MAX_DOWNLOAD_GB = 2.0
HUB_REQUEST_TIMEOUT_S = 10.0

# bitsandbytes' 4-bit CPU kernel packs weights in blocks: rows (out_features) in groups of 32
# and 64 input values per quantization block (bitsandbytes.functional._convert_weight_packed_for_cpu).
NF4_OUT_MULTIPLE, NF4_BLOCKSIZE = 32, 64


def load_hub_backbone(name_or_path: str, quantize: str | None = None, progress: Progress | None = None) -> Backbone:
    """Load a hub checkpoint (hub id or local folder) as a `Backbone`.

    name_or_path: "owner/name", a folder, or two of those joined by "+" to pair them.
    quantize: None, "int8", "bnb-int8" or "bnb-nf4".
    progress: optional callable(fraction in [0, 1], message) for the UI.
    Raises ModelLoadError when the model can't be found or loaded (with what to do),
    UnsupportedError for an unknown or unavailable quantization.
    """
    scheme = normalise_scheme(quantize)
    require_available(scheme)
    report = progress or (lambda fraction, message: None)
    names = split_pair(name_or_path)
    if len(names) == 1:
        backbone = _load_one(names[0], scheme, report)
    else:
        from vqa.backbones.hub.paired import PairedBackbone

        share = 1.0 / len(names)
        parts = [_load_one(name, scheme, lambda f, m, i=i: report((i + f) * share, m)) for i, name in enumerate(names)]
        backbone = PairedBackbone(parts, PAIR_SEPARATOR.join(p.name for p in parts))
    report(1.0, f"{backbone.name} ready")
    return backbone


def split_pair(name_or_path: str) -> list[str]:
    """"idA+idB" → ["idA", "idB"]; a folder whose own name contains "+" stays one name."""
    name = str(name_or_path).strip()
    if PAIR_SEPARATOR not in name or Path(name).expanduser().is_dir():
        return [name]
    names = [n.strip() for n in name.split(PAIR_SEPARATOR)]
    if len(names) != 2 or not all(names):
        raise ModelLoadError(f"{name!r}: a pair is two checkpoints joined by '+', e.g. "
                             "'Salesforce/blip-vqa-base+Salesforce/blip-image-captioning-base'.")
    return names


# ----- finding the checkpoint ---------------------------------------------------------------
def hub_cache_dir() -> Path:
    """The Hugging Face cache, read from the environment now (huggingface_hub reads it at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _truthy(variable: str) -> bool:
    return os.environ.get(variable, "").strip().lower() in ("1", "true", "yes", "on")


_reachability: dict[str, tuple[float, bool]] = {}


def _hub_reachable(timeout: float = 2.0) -> bool:
    """Can we open a TCP connection to the hub? Bounded in time (DNS included); remembered for a minute."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    cached = _reachability.get(host)
    if cached and time.monotonic() - cached[0] < 60:
        return cached[1]
    result = [False]

    def connect():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result[0] = True
        except OSError:
            pass

    worker = threading.Thread(target=connect, daemon=True)  # getaddrinfo ignores socket timeouts
    worker.start()
    worker.join(timeout + 0.5)
    _reachability[host] = (time.monotonic(), result[0])
    return result[0]


def offline_reason() -> str | None:
    """Why a download can't happen now, or None when it can."""
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if _truthy(variable):
            return f"{variable} is set"
    if not _hub_reachable():
        return "the Hugging Face hub cannot be reached (no network)"
    return None


def how_to_get(name: str, cache: Path) -> str:
    return (f"Run `hf download {name}` on a machine with network (then copy {cache} here), "
            f"or set HF_HOME to a folder that has it, or pass a local folder.")


def is_hub_id(name: str) -> bool:
    """Does `name` have the form of a hub id ("owner/name"), rather than a path?"""
    return bool(REPO_ID.fullmatch(name)) and not name.startswith((".", "/", "~"))


def cached_snapshot(name: str) -> Path | None:
    """The snapshot of hub id `name` in the local Hugging Face cache, or None (a local lookup: no network)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(name, cache_dir=hub_cache_dir(), local_files_only=True))
    except LocalEntryNotFoundError:
        return None


def max_download_bytes() -> int:
    """The download size limit in bytes: VQA_MAX_DOWNLOAD_GB (read now), else DEFAULT_MAX_DOWNLOAD_GB."""
    raw = os.environ.get("VQA_MAX_DOWNLOAD_GB", "").strip()
    try:
        gigabytes = float(raw) if raw else DEFAULT_MAX_DOWNLOAD_GB
    except ValueError:
        log.warning("VQA_MAX_DOWNLOAD_GB=%r is not a number of gigabytes: using %g", raw, DEFAULT_MAX_DOWNLOAD_GB)
        gigabytes = DEFAULT_MAX_DOWNLOAD_GB
    return int(gigabytes * 1e9)


def files_to_download(name: str) -> dict[str, int]:
    """{file name: size in bytes} of the files of hub repo `name` that a download fetches (DOWNLOAD_PATTERNS),
    read from the hub's file list in one request; nothing is downloaded."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import filter_repo_objects

    siblings = HfApi().model_info(name, files_metadata=True, timeout=HUB_REQUEST_TIMEOUT_S).siblings or []
    chosen = filter_repo_objects(siblings, allow_patterns=DOWNLOAD_PATTERNS, key=lambda sibling: sibling.rfilename)
    return {sibling.rfilename: sibling.size or 0 for sibling in chosen}


def has_safetensors(file_names) -> bool:
    return any(str(file_name).endswith(".safetensors") for file_name in file_names)


def check_download(name: str, files: dict[str, int]) -> None:
    """Refuse a download (ModelLoadError) that would bring no safetensors weights or exceed the size limit."""
    if not has_safetensors(files):
        raise ModelLoadError(f"{name} ships no safetensors weights on the hub (pickle weights are refused: loading "
                             "a pickle can run arbitrary code). Pick a checkpoint that ships model.safetensors.")
    total, limit = sum(files.values()), max_download_bytes()
    if total > limit:
        raise ModelLoadError(
            f"{name} is a {total / 1e9:.2f} GB download, over this server's limit of {limit / 1e9:g} GB "
            "(VQA_MAX_DOWNLOAD_GB sets it). " + how_to_get(name, hub_cache_dir()))


def resolve_folder(name: str) -> Path:
    """The local folder holding `name`: the folder itself, the cached hub snapshot, or a fresh download."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if not is_hub_id(name):
        raise ModelLoadError(f"{name!r} is neither a folder nor a hub id of the form 'owner/name'.")
    from huggingface_hub import snapshot_download

    cache = hub_cache_dir()
    snapshot = cached_snapshot(name)
    if snapshot is not None:
        return snapshot
    reason = offline_reason()
    if reason:
        raise ModelLoadError(f"{name} is not in the local Hugging Face cache ({cache}) and {reason}. "
                             + how_to_get(name, cache))
    try:
        files = files_to_download(name)
    except Exception as exc:  # not found, gated, network dropped: the download would fail the same way
        raise ModelLoadError(f"Could not list the files of {name} on the hub: {type(exc).__name__}: {exc}. "
                             + how_to_get(name, cache)) from exc
    check_download(name, files)
    try:
        return Path(snapshot_download(name, cache_dir=cache, allow_patterns=DOWNLOAD_PATTERNS))
    except Exception as exc:  # not found, gated, network dropped: all end the same way for the user
        raise ModelLoadError(f"Could not download {name}: {type(exc).__name__}: {exc}. " + how_to_get(name, cache)) \
            from exc


def check_weights(folder: Path, name: str) -> None:
    """Safetensors only: pickle weights can run code when loaded."""
    if any(folder.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ModelLoadError(
            f"{name} has only pickle weights ({', '.join(pickles)}); they are refused because loading a pickle can "
            "run arbitrary code. Convert them to safetensors on a trusted machine (e.g. load and "
            "`save_pretrained(..., safe_serialization=True)`), or use a checkpoint that ships model.safetensors.")
    raise ModelLoadError(f"{name}: no *.safetensors weights in {folder} (an incomplete download?). "
                         + how_to_get(name, hub_cache_dir()))


def weight_names(folder: Path) -> set[str]:
    """Tensor names in the checkpoint, read from the safetensors headers (no weights loaded)."""
    from safetensors import safe_open

    names: set[str] = set()
    for file in folder.glob("*.safetensors"):
        with safe_open(str(file), framework="pt") as f:
            names.update(f.keys())
    return names


def pick_architecture(raw_config: dict, folder: Path, name: str) -> str:
    """Which adapter serves this checkpoint, from its config (and weight names if the config is silent)."""
    model_type = raw_config.get("model_type")
    if model_type not in FAMILIES:
        remote = " It asks for custom code (auto_map), which stays disabled." if "auto_map" in raw_config else ""
        raise ModelLoadError(f"{name}: model_type {model_type!r} is not supported.{remote} "
                             f"Supported families: {SUPPORTED_TEXT}.")
    served = [arch for arch, _ in FAMILIES[model_type]]
    for arch in raw_config.get("architectures") or []:
        if arch in served:
            return arch
    if raw_config.get("architectures"):
        raise ModelLoadError(f"{name}: {', '.join(raw_config['architectures'])} is not supported for {model_type}; "
                             f"supported: {', '.join(served)}.")
    keys = weight_names(folder)
    for arch, prefixes in FAMILIES[model_type]:
        if all(any(k.startswith(p) for k in keys) for p in prefixes):
            return arch
    raise ModelLoadError(f"{name}: cannot tell which {model_type} head these weights are for.")


# ----- quantization ----------------------------------------------------------------------------
def linear_shape(module: torch.nn.Module) -> tuple[int, int] | None:
    """(in_features, out_features) of a full-precision linear layer, or None for anything else."""
    if isinstance(module, torch.nn.Linear) and not is_quantized(module):
        return module.in_features, module.out_features
    if type(module).__name__ == "Conv1D":  # transformers' GPT-2 linear layer: weight is (in, out)
        return int(module.weight.shape[0]), int(module.weight.shape[1])
    return None


def is_quantized(module: torch.nn.Module) -> bool:
    return type(module).__module__.startswith(("torch.ao.nn.quantized", "bitsandbytes"))


def full_precision_modules(model: torch.nn.Module, scheme: str | None, vocab_size: int | None) -> dict[str, str]:
    """Linear layers that must stay full precision under `scheme`, with the reason for each."""
    keep: dict[str, str] = {}
    if scheme is None:
        return keep
    for name, module in model.named_modules():
        shape = linear_shape(module)
        if shape is None:
            continue
        n_in, n_out = shape
        if vocab_size and n_out == vocab_size:
            keep[name] = "LM head (vocabulary logits)"
        elif scheme == "bnb-nf4" and (n_out % NF4_OUT_MULTIPLE or n_in % NF4_BLOCKSIZE):
            keep[name] = (f"shapes the 4-bit CPU kernel cannot pack (needs inputs % {NF4_BLOCKSIZE} and "
                          f"outputs % {NF4_OUT_MULTIPLE})")
    return keep


def dynamic_int8_except(model: torch.nn.Module, keep: set[str]) -> None:
    """`vqa.quantization.dynamic_int8` on every nn.Linear except the named ones (in place)."""

    def visit(module: torch.nn.Module, prefix: str) -> None:
        for child_name, child in list(module.named_children()):
            full = prefix + child_name
            if full in keep:
                continue
            if any(k.startswith(full + ".") for k in keep):
                visit(child, full + ".")
            elif isinstance(child, torch.nn.Linear):
                holder = torch.nn.Sequential(child)  # quantize_dynamic swaps children, never the root
                dynamic_int8(holder)
                setattr(module, child_name, holder[0])
            else:
                dynamic_int8(child)

    visit(model, "")


def quantization_notes(model: torch.nn.Module, scheme: str | None, planned: dict[str, str]) -> list[str]:
    """What the scheme actually converted, and which linear layers stayed full precision and why."""
    if scheme is None:
        return []
    quantized = sum(is_quantized(m) for m in model.modules())
    kept: dict[str, list[str]] = {}
    for name, module in model.named_modules():
        if linear_shape(module) is not None:
            reason = planned.get(name) or f"{type(module).__name__} layers are not converted by {scheme}"
            kept.setdefault(reason, []).append(name)
    total = quantized + sum(len(v) for v in kept.values())
    notes = [f"{quantized} of {total} linear layers quantized ({scheme}); embeddings, convolutions and norms "
             "stay full precision."]
    for reason, names in kept.items():
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        notes.append(f"Kept in full precision ({reason}): {shown}.")
    if scheme.startswith("bnb") and not torch.cuda.is_available():
        notes.append("bitsandbytes on CPU saves memory but runs slower than fp32.")
    return notes


# ----- loading -----------------------------------------------------------------------------------
def _load_one(name: str, scheme: str | None, report: Progress) -> Backbone:
    import importlib

    from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer

    report(0.0, f"Looking for {name}")
    folder = resolve_folder(name)
    report(0.1, "Reading the config")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"{name}: no config.json in {folder}. " + how_to_get(name, hub_cache_dir()))
    raw_config = json.loads(config_file.read_text())
    architecture = pick_architecture(raw_config, folder, name)
    check_weights(folder, name)
    module_name, class_name = ADAPTERS[architecture]
    adapter = getattr(importlib.import_module(f"vqa.backbones.hub.{module_name}"), class_name)
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except (ValueError, KeyError, OSError) as exc:
        raise ModelLoadError(f"{name}: its config.json could not be read: {exc}") from exc

    with torch.device("meta"):  # shapes only: which layers a scheme must leave alone, and the parameter count
        skeleton = adapter.model_class._from_config(config)
    vocab_size = getattr(config.get_text_config(decoder=True), "vocab_size", None)
    keep = full_precision_modules(skeleton, scheme, vocab_size)
    num_parameters = sum(p.numel() for p in skeleton.parameters())
    del skeleton

    report(0.2, f"Loading {architecture} weights" + (f" ({scheme})" if scheme else ""))
    kwargs = dict(config=config, use_safetensors=True, local_files_only=True, trust_remote_code=False,
                  dtype=torch.float32)
    if scheme in ("bnb-int8", "bnb-nf4"):
        kwargs["quantization_config"] = bnb_config(scheme, sorted(keep))
    try:
        model = adapter.model_class.from_pretrained(folder, **kwargs).eval()
        report(0.8, "Loading the tokenizer and image processor")
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
        image_processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, RuntimeError, ImportError) as exc:
        raise ModelLoadError(f"{name}: loading {architecture} failed: {type(exc).__name__}: {exc}") from exc
    if scheme == "int8":
        report(0.9, "Quantizing (dynamic int8)")
        dynamic_int8_except(model, set(keep))
    return adapter(name, model, tokenizer, image_processor, folder, quantization=scheme,
                   notes=quantization_notes(model, scheme, keep), num_parameters=num_parameters)
