"""Shared fixtures: a tiny model trained for a few steps (seconds), and the shipped weights when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach for the network
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # The suite runs on two workers (pyproject's `-n 2`): one thread for each worker and for each server or command
    # it starts, so that two workers do not fight over two cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_MODEL = ROOT / "weights" / "shapes-vlp"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A real ShapesVLP model folder (tiny config, 3 training steps) built through the training code."""
    from vqa.training import preset, train

    out = tmp_path_factory.mktemp("tiny_model")
    train(preset("smoke"), out, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    import vqa

    return vqa.load(tiny_model_dir)


@pytest.fixture(scope="session")
def shipped_model():
    import vqa

    if not (SHIPPED_MODEL / "model.safetensors").exists():
        pytest.skip(f"no shipped weights at {SHIPPED_MODEL}")
    return vqa.load(SHIPPED_MODEL)
