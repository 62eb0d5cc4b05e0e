"""Distributed training trains one model: two processes (torchrun, gloo on the CPU) keep identical replicas.

With the losses computed outside the DistributedDataParallel module's forward, the gradients were
never averaged and the two replicas drifted apart (0.01 after 8 steps of the smoke recipe)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from live_server import free_port

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = """
import sys
from vqa.training import preset, train
train(preset("smoke", steps=6), sys.argv[1], progress=False, replica_file=sys.argv[1] + "/replica_{rank}.pt")
"""


def test_two_processes_keep_identical_replicas(tmp_path):
    script = tmp_path / "train_two.py"
    script.write_text(SCRIPT)
    out = tmp_path / "model"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
                          str(script), str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    first, second = (torch.load(out / f"replica_{rank}.pt") for rank in (0, 1))
    assert set(first) == set(second) and first
    assert max((first[name] - second[name]).abs().max().item() for name in first) < 1e-6
