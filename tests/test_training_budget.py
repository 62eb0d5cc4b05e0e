"""Training for a time budget (a live run in class, the zoo's equal budgets) and starting from a pretrained
vision tower (vqa.training.vision_tower), on the tiny recipe."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vqa.training import lr_at, preset, train
from vqa.training.loop import build_model
from vqa.training.vision_tower import load_vision_tower, save_vision_tower

ROOT = Path(__file__).resolve().parents[1]


def test_a_timed_run_ends_on_the_clock_with_its_schedule_spent(tmp_path):
    """A recipe with far more steps than fit in its minutes: the run ends when its time is spent, not at the
    ceiling, validates along the way, and its learning rate has decayed to the floor by the end, as a run of
    the right number of steps would."""
    from vqa.model.pretrained_text import frozen_encoder

    recipe = replace(preset("smoke"), steps=100_000, eval_every=25_000, minutes=0.2, eval_scenes=2)
    frozen_encoder(build_model(recipe).config.text_encoder, torch.device("cpu"))  # loaded once per process, not in the budget
    summary = train(recipe, tmp_path, progress=False)
    assert summary["ended_by"] == "time"
    assert summary["steps_done"] < recipe.vision_warmup_steps + recipe.steps
    joint = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    joint = [record for record in joint if record["phase"] == "joint"]
    assert len(joint) >= 3, joint  # the quarters of its time, and the end
    assert joint[0]["lr"] > joint[-1]["lr"]
    assert joint[-1]["lr"] < recipe.min_learning_rate + 0.1 * (recipe.learning_rate - recipe.min_learning_rate)
    assert (tmp_path / "model.safetensors").exists()


def test_the_clock_moves_the_cosine_on_where_it_is_ahead_of_the_steps():
    recipe = replace(preset("smoke"), steps=1000, warmup_steps=1)
    first_joint = recipe.vision_warmup_steps + 10
    assert lr_at(first_joint, recipe, time_spent=0.0) > 0.9 * recipe.learning_rate
    assert lr_at(first_joint, recipe, time_spent=1.0) == pytest.approx(recipe.min_learning_rate)
    halfway = (recipe.learning_rate + recipe.min_learning_rate) / 2
    assert lr_at(first_joint, recipe, time_spent=0.5) == pytest.approx(halfway, rel=0.02)


def test_on_a_slow_machine_validations_wait_so_that_they_take_at_most_a_fifth_of_the_time():
    """A live run asks for a validation every twelfth of its time; where one validation costs as much as a
    twelfth (a slow machine), the next waits until four times its cost has gone to training."""
    import time

    from vqa.training.loop import VALIDATION_SHARE, JointClock

    clock = JointClock(replace(preset("smoke"), steps=1200, eval_every=100, minutes=3), start=time.time())
    clock.joint_start = time.time()
    clock.time_spent = 0.09
    assert clock.validation_due(joint_step=5)  # a twelfth of the time has passed
    clock.validated_at, clock.validation_cost = 0.17, 0.08  # it took almost another twelfth
    clock.time_spent = 0.25
    assert not clock.validation_due(joint_step=9)  # three twelfths are due, but only 0.08 has gone to training
    clock.time_spent = 0.17 + 0.08 * (1 - VALIDATION_SHARE) / VALIDATION_SHARE + 0.01
    assert clock.validation_due(joint_step=20)


def test_a_recipe_starts_from_a_saved_vision_tower(tmp_path):
    trained = build_model(preset("smoke"))
    with torch.no_grad():
        for parameter in trained.vision_model.parameters():
            parameter.add_(0.5)
    save_vision_tower(trained, tmp_path / "tower", {"perception_steps": 7})
    torch.manual_seed(0)
    model = build_model(replace(preset("smoke"), vision_init=str(tmp_path / "tower")))
    for name, parameter in model.named_parameters():
        if name.startswith(("vision_model.", "patch_head.")):
            # stored in fp16, as weights/ stores everything
            torch.testing.assert_close(parameter, trained.get_parameter(name).half().float())
    # the fusion and the heads start as a fresh model's: only the tower is copied
    torch.manual_seed(0)
    fresh = build_model(preset("smoke"))
    torch.testing.assert_close(model.fusion.state_dict(), fresh.fusion.state_dict())
    assert not torch.equal(next(model.vision_model.parameters()), next(fresh.vision_model.parameters()))


def test_a_tower_of_another_config_is_refused_with_what_differs(tmp_path):
    save_vision_tower(build_model(preset("smoke")), tmp_path)
    other = build_model(replace(preset("smoke"), model={**preset("smoke").model, "image_size": 48}))
    with pytest.raises(ValueError, match="image_size"):
        load_vision_tower(other, tmp_path)
    with pytest.raises(FileNotFoundError, match="pretrain-vision"):
        load_vision_tower(other, tmp_path / "missing")


def test_a_model_that_masks_patches_starts_from_a_tower_without_a_mask_embedding(tmp_path):
    """The dual stream hides patches (MVM) with a mask embedding that the perception phase never trains: it takes
    the tower and starts that embedding fresh, and a tower saved from it holds no mask embedding either."""
    smoke = preset("smoke")
    trained = build_model(smoke)
    save_vision_tower(trained, tmp_path / "tower")
    masking = build_model(replace(smoke, model={**smoke.model, "image_mask_token": True}, vision_init=str(tmp_path / "tower")))
    torch.testing.assert_close(masking.get_parameter("patch_head.weight"), trained.get_parameter("patch_head.weight").half().float())
    assert masking.vision_model.mask_token is not None
    save_vision_tower(masking, tmp_path / "from_masking")
    assert "vision_model.mask_token" not in load_file(str(tmp_path / "from_masking" / "vision_tower.safetensors"))
    load_vision_tower(build_model(smoke), tmp_path / "from_masking")  # and a model without one takes it back


def test_pretrain_vision_saves_a_tower_that_training_starts_from(tmp_path):
    out = tmp_path / "tower"
    run = subprocess.run([sys.executable, "-m", "vqa", "pretrain-vision", "--preset", "smoke", "--steps", "3", "--out", str(out), "--no-progress"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    info = json.loads(run.stdout.strip().splitlines()[-1])
    assert info["perception_steps"] == 3 and set(info["val_patch_accuracy"]) == {"color", "shape", "size"}
    assert sorted(p.name for p in out.iterdir()) == ["vision_tower.json", "vision_tower.safetensors"]
    summary = train(replace(preset("smoke"), vision_init=str(out), vision_warmup_steps=0), tmp_path / "model", progress=False)
    assert summary["ended_by"] == "steps"


def test_the_quick_recipe_starts_from_the_shipped_tower_and_its_scratch_form_learns_to_see():
    """The classroom's quick recipe builds from weights/vision/quick (a config that drifted from the tower's
    is refused, so this fails when they part); its from-scratch form keeps a perception phase."""
    from demo.classroom import QUICK_RECIPE, QUICK_SCRATCH_RECIPE, ClassroomTraining
    from vqa.training.vision_tower import tower_folder

    quick = preset("quick")
    assert quick.vision_warmup_steps == 0 and quick.vision_init
    info = load_vision_tower(build_model(replace(quick, vision_init=None)), tower_folder(quick.vision_init))
    assert info["val_patch_accuracy"]["shape"] > 0.8  # patch-level: a border patch holds a sliver of its shape
    classroom = ClassroomTraining(models=None, enabled=True)
    assert classroom.recipe(QUICK_RECIPE).vision_init == quick.vision_init
    scratch = classroom.recipe(QUICK_SCRATCH_RECIPE)
    assert scratch.vision_init is None and scratch.vision_warmup_steps > 0


def test_zoo_members_with_a_vit_tower_start_from_the_shipped_zoo_tower():
    """Every member with the zoo's ViT tower builds from weights/vision/zoo, the dual stream's patch mask
    embedding included (it is not part of a tower), with no perception phase; MLIM's CNN embedder has no tower
    and learns to see by itself; on the tests' tiny base no member uses a tower made for other sizes."""
    from vqa.training.vision_tower import tower_folder
    from vqa.zoo import MEMBERS, member_recipe
    from vqa.zoo.members import ZOO_TOWER

    tower = load_file(str(tower_folder(ZOO_TOWER) / "vision_tower.safetensors"))
    for name in MEMBERS:
        recipe = member_recipe(name)
        if name == "mlim":
            assert recipe.vision_init is None
            continue
        assert recipe.vision_init == ZOO_TOWER and recipe.vision_warmup_steps == 0, name
        model = build_model(recipe)  # refuses a tower of another config
        torch.testing.assert_close(model.get_parameter("patch_head.weight"), tower["patch_head.weight"].float())
        assert member_recipe(name, base="smoke").vision_init is None
        assert member_recipe(name, pretrained_tower=False).vision_warmup_steps > 0
