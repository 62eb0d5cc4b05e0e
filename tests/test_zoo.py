"""The zoo command on a tiny budget: members trained, measured, described and plotted; the real zoo is
trained by `python -m vqa zoo`, never here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import vqa
from vqa.training import build_model
from vqa.training.objectives import check_objectives
from vqa.training.recipes import loss_weights, masking
from vqa.zoo import MEMBERS, fit_to_budget, member_recipe

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", MEMBERS)
def test_every_member_recipe_trains_objectives_its_architecture_has(name):
    recipe = member_recipe(name, base="smoke")
    model = build_model(recipe)
    check_objectives(model, loss_weights(recipe), masking(recipe))  # raises for an objective the model cannot train
    assert model.config.architecture == name  # the model the member trains is of its own architecture


def test_a_larger_budget_fits_more_steps():
    recipe = member_recipe("med-late", base="smoke")
    short, long = fit_to_budget(recipe, minutes=0.02), fit_to_budget(recipe, minutes=0.2)
    assert long.steps > short.steps >= 1
    assert long.eval_every * 4 >= long.steps  # validation every quarter of the run


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo")
    run = subprocess.run(
        [sys.executable, "-m", "vqa", "zoo", "--members", "med-early", "encoder-decoder", "--minutes-per-member", "0.05",
         "--base", "smoke", "--eval-scenes", "3", "--out", str(out), "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return out


def test_the_zoo_command_writes_members_results_cards_and_plots(tiny_zoo):
    results = json.loads((tiny_zoo / "results.json").read_text())
    assert list(results["members"]) == ["med-early", "encoder-decoder"]
    for name, member in results["members"].items():
        assert 0 <= member["test_accuracy"] <= 1 and member["train_minutes"] >= 0
        if name == "encoder-decoder":
            assert member["best_head"] == "generative"  # it has no classifier
        assert member["curve"], name  # validation during training, for the learning-curve plot
        card = (tiny_zoo / name / "README.md").read_text()
        assert f"# {name}" in card and "Stands for" in card
        assert not (tiny_zoo / name / "checkpoint").exists()
        # the shipped member answers with the head the results name (a barely trained decoder may write nothing)
        answer = vqa.load(tiny_zoo / name).answer(Image.new("RGB", (30, 30), "red"), "is there a circle?", head=member["best_head"])
        assert answer.head == member["best_head"] and 0 <= answer.score <= 1
    for plot in ("family_accuracy.png", "learning_curves.png", "fusion_layer.png", "costs.png"):
        with Image.open(tiny_zoo / plot) as image:
            assert image.width > 300 and image.height > 200
    table = (tiny_zoo / "results.md").read_text()
    assert "| `med-early` |" in table and "| `encoder-decoder` |" in table
