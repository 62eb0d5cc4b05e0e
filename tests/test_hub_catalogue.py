"""`hub_availability`: can a hub checkpoint be loaded here, answered before anyone picks it.

Fake Hugging Face caches are built in tmp_path (the layout `hf download` writes) from tiny
checkpoints; the hub itself is never reached: offline by environment, or a faked file list.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from vqa.backbones.hub import HUB_MODELS, PAIR_SEPARATOR, Availability, hub_availability
from vqa.backbones.hub import availability, loader

try:
    from hub_fixtures import make_pickle_only, make_vilt, put_in_hf_cache
except ImportError:  # tests/ imported as a package
    from tests.hub_fixtures import make_pickle_only, make_vilt, put_in_hf_cache

GB = 10**9


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    return {"safetensors": make_vilt(root / "vilt"), "pickle": make_pickle_only(root / "pickle-only")}


@pytest.fixture
def hf_cache(monkeypatch, tmp_path, checkpoints):
    """An offline server whose HF cache (HF_HUB_CACHE) holds tiny/vilt (safetensors) and tiny/pickled (pickle only)."""
    cache = tmp_path / "hf-cache"
    put_in_hf_cache(checkpoints["safetensors"], cache, "tiny/vilt")
    put_in_hf_cache(checkpoints["pickle"], cache, "tiny/pickled")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    availability.forget_remote_answers()
    yield cache
    availability.forget_remote_answers()


def assert_reason_is_for_visitors(answer: Availability, tmp_path) -> None:
    assert answer.reason and str(tmp_path) not in answer.reason
    assert "hf download" not in answer.reason and "`" not in answer.reason and "/tmp" not in answer.reason


def test_cached_checkpoint_with_safetensors_is_available(hf_cache, tmp_path):
    answer = hub_availability("tiny/vilt")
    assert answer.ok, answer
    assert_reason_is_for_visitors(answer, tmp_path)


def test_cached_checkpoint_with_pickle_weights_only_is_not(hf_cache, tmp_path):
    answer = hub_availability("tiny/pickled")
    assert not answer.ok and answer.reason == "ships no safetensors weights"
    assert "pickle" in answer.advice
    assert_reason_is_for_visitors(answer, tmp_path)


def test_absent_checkpoint_on_an_offline_server_is_not_and_the_advice_says_how_to_get_it(hf_cache, tmp_path):
    answer = hub_availability("someone/absent")
    assert not answer.ok and "not downloaded on this server" in answer.reason and "offline" in answer.reason
    assert "hf download someone/absent" in answer.advice and str(hf_cache) in answer.advice
    assert "HF_HUB_OFFLINE" in answer.advice
    assert_reason_is_for_visitors(answer, tmp_path)


def test_a_pair_is_available_when_both_parts_are(hf_cache, tmp_path, checkpoints):
    assert hub_availability(f"tiny/vilt{PAIR_SEPARATOR}tiny/vilt").ok
    answer = hub_availability(f"tiny/vilt{PAIR_SEPARATOR}someone/absent")
    assert not answer.ok and answer.reason.startswith("someone/absent: not downloaded")
    assert "hf download someone/absent" in answer.advice
    local = hub_availability(f"{checkpoints['pickle']}{PAIR_SEPARATOR}tiny/vilt")
    assert not local.ok and local.reason == "local checkpoint: ships no safetensors weights"  # no server path
    for answer in (answer, local, hub_availability("a/b+c/d+e/f"), hub_availability("not a name")):
        assert not answer.ok
        assert_reason_is_for_visitors(answer, tmp_path)


def test_local_folder_is_judged_by_its_weights_without_naming_it(checkpoints, tmp_path):
    answer = hub_availability(str(checkpoints["safetensors"]))
    assert answer.ok and str(checkpoints["safetensors"]) not in answer.reason
    assert not hub_availability(str(checkpoints["pickle"])).ok


def test_every_catalogue_entry_answers_offline_without_leaking_paths(hf_cache, tmp_path):
    for entry in HUB_MODELS:
        answer = hub_availability(entry["id"])
        assert not answer.ok and "offline" in answer.reason, entry["id"]
        assert_reason_is_for_visitors(answer, tmp_path)


@pytest.fixture
def online_hub(monkeypatch, hf_cache):
    """The same cache, but a hub that answers: a faked file list per repository, counting requests."""
    import httpx
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError

    hub = SimpleNamespace(repos={}, listed=[])

    def model_info(self, repo_id, files_metadata=False, **kwargs):
        hub.listed.append(repo_id)
        if repo_id not in hub.repos:
            url = f"https://huggingface.co/api/models/{repo_id}"
            raise RepositoryNotFoundError(f"404 {repo_id}", response=httpx.Response(404, request=httpx.Request("GET", url)))
        return SimpleNamespace(siblings=[SimpleNamespace(rfilename=f, size=size)
                                         for f, size in hub.repos[repo_id].items()])

    monkeypatch.setattr(loader, "offline_reason", lambda: None)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    monkeypatch.delenv("VQA_MAX_DOWNLOAD_GB", raising=False)
    return hub


def test_uncached_checkpoint_is_judged_by_the_hubs_file_list(online_hub, tmp_path):
    online_hub.repos = {
        "owner/fine": {"config.json": 1_000, "model.safetensors": GB // 2},
        "owner/pickled": {"config.json": 1_000, "pytorch_model.bin": GB // 2},
        "owner/huge": {"config.json": 1_000, "model.safetensors": 3 * GB},
    }
    fine = hub_availability("owner/fine")
    assert fine.ok and "downloads on first use" in fine.reason
    pickled, huge = hub_availability("owner/pickled"), hub_availability("owner/huge")
    assert not pickled.ok and pickled.reason == "ships no safetensors weights"
    assert not huge.ok and "too large" in huge.reason and "VQA_MAX_DOWNLOAD_GB" in huge.advice
    missing = hub_availability("owner/missing")
    assert not missing.ok and missing.reason == "not found on the Hugging Face hub"
    assert hub_availability("tiny/vilt").ok and "tiny/vilt" not in online_hub.listed  # cached: no request
    for answer in (fine, pickled, huge, missing):
        assert_reason_is_for_visitors(answer, tmp_path)


def test_answers_from_the_hub_are_remembered_for_a_few_minutes(online_hub, monkeypatch):
    online_hub.repos = {"owner/fine": {"model.safetensors": GB}}
    assert hub_availability("owner/fine").ok and hub_availability("owner/fine").ok
    assert online_hub.listed == ["owner/fine"]
    clock = availability.time.monotonic() + availability.REMOTE_ANSWER_TTL_S + 1
    monkeypatch.setattr(availability.time, "monotonic", lambda: clock)
    hub_availability("owner/fine")
    assert online_hub.listed == ["owner/fine", "owner/fine"]
