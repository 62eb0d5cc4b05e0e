"""Can a hub checkpoint be loaded here? Answered before anyone picks it, without loading it.

`hub_availability("owner/name")` (or a folder, or "idA+idB") returns an `Availability`:

- in the local Hugging Face cache: ok when the snapshot holds safetensors weights;
- not cached, but a download can happen (`loader.offline_reason()` is None): the hub's file
  list decides (safetensors weights, and a download within VQA_MAX_DOWNLOAD_GB); this answer
  is remembered for a few minutes, since it costs a request;
- not cached and offline: not ok.

`reason` is for a visitor: short, and never a server path or a command. `advice` is for the
operator (server log, README): how to get the model, where the cache is.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from vqa.backbones.hub import loader
from vqa.errors import ModelLoadError

#: How long an answer that needed the hub is reused, in seconds.
REMOTE_ANSWER_TTL_S = 300.0
NO_SAFETENSORS = "ships no safetensors weights"


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str  # for a visitor: no server path, cache path or shell command
    advice: str = ""  # for the operator: how to get the model, where the cache is


_remote_answers: dict[str, tuple[float, Availability]] = {}
_remote_lock = threading.Lock()


def hub_availability(name: str) -> Availability:
    """Whether `name` (a hub id, a local folder, or two of those joined by "+") can be loaded on this server."""
    try:
        parts = loader.split_pair(name)
    except ModelLoadError as exc:
        return Availability(False, "not a valid pair: two checkpoints joined by '+'", str(exc))
    answers = [(part, part_availability(part)) for part in parts]
    if len(answers) == 1:
        return answers[0][1]
    failed = [(part, answer) for part, answer in answers if not answer.ok]
    reason = "; ".join(f"{public_name(part)}: {answer.reason}" for part, answer in failed or answers)
    advice = " ".join(answer.advice for _, answer in answers if answer.advice)
    return Availability(not failed, reason, advice)


def public_name(part: str) -> str:
    """How a reason may name one checkpoint: its hub id, never a server folder."""
    return part if loader.is_hub_id(part) and not Path(part).expanduser().is_dir() else "local checkpoint"


def part_availability(name: str) -> Availability:
    """The availability of one checkpoint (a folder or a hub id)."""
    folder = Path(name).expanduser()
    if folder.is_dir():
        return folder_availability(folder, "a local checkpoint on this server")
    if not loader.is_hub_id(name):
        return Availability(False, "not a hub id of the form owner/name",
                            f"{name!r} is neither a folder nor a hub id of the form 'owner/name'.")
    snapshot = loader.cached_snapshot(name)
    if snapshot is not None:
        return folder_availability(snapshot, "downloaded on this server")
    offline = loader.offline_reason()
    if offline:
        return Availability(False, "not downloaded on this server (the server is offline)",
                            f"{name} is not in the Hugging Face cache ({loader.hub_cache_dir()}) and {offline}. "
                            + loader.how_to_get(name, loader.hub_cache_dir()))
    return remote_availability(name)


def folder_availability(folder: Path, where: str) -> Availability:
    """A checkpoint on disk: ok when it holds safetensors weights."""
    if loader.has_safetensors(p.name for p in folder.iterdir()):
        return Availability(True, where)
    if any(p.suffix in loader.PICKLE_SUFFIXES for p in folder.iterdir()):
        return Availability(False, NO_SAFETENSORS,
                            f"{folder} holds pickle weights only, which are refused (loading a pickle can run code); "
                            "convert them to safetensors on a trusted machine.")
    return Availability(False, "its download on this server is incomplete (no weights)",
                        f"{folder} holds no weights: download it again (`hf download`).")


def remote_availability(name: str) -> Availability:
    """Not cached, but the hub is reachable: the repository's file list decides (remembered for a while)."""
    with _remote_lock:
        remembered = _remote_answers.get(name)
    if remembered and time.monotonic() - remembered[0] < REMOTE_ANSWER_TTL_S:
        return remembered[1]
    answer = _ask_the_hub(name)
    with _remote_lock:
        _remote_answers[name] = (time.monotonic(), answer)
    return answer


def _ask_the_hub(name: str) -> Availability:
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        files = loader.files_to_download(name)
    except GatedRepoError as exc:  # a subclass of RepositoryNotFoundError: test it first
        return Availability(False, "gated on the Hugging Face hub (needs an access token)", str(exc))
    except RepositoryNotFoundError as exc:
        return Availability(False, "not found on the Hugging Face hub", str(exc))
    except Exception as exc:  # network dropped, hub error: the download would fail the same way
        return Availability(False, "could not be checked on the Hugging Face hub",
                            f"Listing the files of {name} failed: {type(exc).__name__}: {exc}")
    size = f"{sum(files.values()) / 1e9:.2f} GB"
    try:
        loader.check_download(name, files)
    except ModelLoadError as exc:
        reason = f"too large to download on this server ({size})" if loader.has_safetensors(files) else NO_SAFETENSORS
        return Availability(False, reason, str(exc))
    return Availability(True, f"downloads on first use ({size})")


def forget_remote_answers() -> None:
    """Ask the hub again next time (after the operator changed something, and between tests)."""
    with _remote_lock:
        _remote_answers.clear()
