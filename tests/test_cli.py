"""The command line, `python -m vqa ...`, run as a user runs it: in a new process."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, SHIPPED_MODEL
from vqa.cli import build_parser

ANSWER_FIELDS = {"head", "answer", "score", "candidates", "latency_ms", "in_domain", "domain_note"}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vqa", *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})


def scene(tmp_path, image_size: int):
    """A generated test-split scene saved as PNG, and one of its questions."""
    from vqa.data.splits import make_example

    example = make_example("test", 1, image_size)
    path = tmp_path / "scene.png"
    example.image.save(path)
    return str(path), example.questions[0].text


def test_every_subcommand_and_argument_has_help():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    described = {choice.dest for choice in subparsers._choices_actions if choice.help}
    assert described == set(subparsers.choices), "subcommands without help"
    missing = [f"{name} {action.option_strings[0] if action.option_strings else action.dest}"
               for name, sub in subparsers.choices.items() for action in sub._actions
               if not action.help or action.help == argparse.SUPPRESS]
    assert not missing, f"arguments without help: {', '.join(missing)}"


def test_cli_ask_and_caption(tiny_model_dir, tmp_path):
    image, question = scene(tmp_path, 32)
    both = run_cli("ask", image, question, "--model", str(tiny_model_dir), "--json")
    assert both.returncode == 0, both.stderr
    answers = json.loads(both.stdout)  # one JSON document, keyed by head
    assert list(answers) == ["classifier", "generative"]
    assert all(set(answer) == ANSWER_FIELDS and answer["head"] == head for head, answer in answers.items())
    one = run_cli("ask", image, question, "--head", "generative", "--model", str(tiny_model_dir), "--json")
    assert one.returncode == 0, one.stderr
    answer = json.loads(one.stdout)
    assert set(answer) == ANSWER_FIELDS and answer["head"] == "generative"
    caption = run_cli("caption", image, "--model", str(tiny_model_dir), "--json")
    assert caption.returncode == 0, caption.stderr
    assert {"caption", "in_domain", "domain_note"} <= set(json.loads(caption.stdout))
    outside = json.loads(run_cli("ask", image, "what animal is this?", "--model", str(tiny_model_dir), "--json").stdout)
    assert outside["classifier"]["in_domain"] is False and "“animal”" in outside["classifier"]["domain_note"]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["ask", "caption"])
def test_a_clean_run_prints_nothing_on_stderr(command, tmp_path):
    """No library notice, warning or progress bar: stdout has the answer and stderr stays empty."""
    if not (SHIPPED_MODEL / "model.safetensors").exists():
        pytest.skip(f"no shipped weights at {SHIPPED_MODEL}")
    image, question = scene(tmp_path, 96)
    result = run_cli(command, image, *([question] if command == "ask" else []), "--model", str(SHIPPED_MODEL))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert result.stderr == ""


def test_cli_reports_bad_input_without_a_traceback(tiny_model_dir, tmp_path):
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    result = run_cli("ask", str(not_an_image), "what is this?", "--model", str(tiny_model_dir))
    assert result.returncode == 2
    assert "error:" in result.stderr and "Traceback" not in result.stderr


def test_cli_evaluate_reads_outside_jsonl(tiny_model_dir, tmp_path):
    from vqa.data.splits import export_jsonl, read_jsonl

    path = export_jsonl("test", tmp_path, num_scenes=2, image_size=32)
    result = run_cli("evaluate", "--data", str(path), "--model", str(tiny_model_dir), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    records = read_jsonl(path)
    assert report["questions"] == len(records) > 0  # every question of the file was asked
    assert 0.0 <= report["classifier_accuracy"] <= 1.0 and "pointing_accuracy" in report
    families = {}
    for record in records:
        families[record["family"]] = families.get(record["family"], 0) + 1
    assert {family: row["n"] for family, row in report["families"].items()} == families


def test_train_with_another_architecture_keeps_elongated_pages_only_where_the_model_letterboxes(monkeypatch, tmp_path):
    """`train --preset full --architecture single-stream` trains: a squashing model gets square pages only."""
    import vqa.training
    from vqa.cli import main

    recipes = []
    monkeypatch.setattr(vqa.training, "train", lambda recipe, out, progress: recipes.append(recipe) or {})
    for architecture in ("single-stream", "shapes-vlp"):
        assert main(["train", "--preset", "full", "--architecture", architecture, "--out", str(tmp_path / architecture)]) == 0
    assert [recipe.elongated_share for recipe in recipes] == [0.0, 0.5]


def test_train_quick_starts_from_the_tower_unless_another_architecture_trains(monkeypatch, tmp_path):
    """`train --preset quick` starts from the pretrained vision tower; with --architecture, the tower (made for
    the default architecture) is left out and the model learns to see in its perception phase; --minutes sets
    the time budget."""
    import vqa.training
    from vqa.cli import main

    recipes = []
    monkeypatch.setattr(vqa.training, "train", lambda recipe, out, progress: recipes.append(recipe) or {})
    assert main(["train", "--preset", "quick", "--minutes", "3", "--out", str(tmp_path / "a")]) == 0
    assert main(["train", "--preset", "quick", "--architecture", "med-mid", "--out", str(tmp_path / "b")]) == 0
    quick, other = recipes
    assert quick.vision_init and quick.vision_warmup_steps == 0 and quick.minutes == 3
    assert other.vision_init is None and other.vision_warmup_steps > 0 and other.minutes is None
