"""Knowing what it does not know: every result says whether the picture and the question lie inside what
the model learned, from a calibration saved in the model folder (vqa/domain.py)."""

from __future__ import annotations

import json

import numpy as np

import matplotlib.cbook
import pytest
from PIL import Image

import vqa
from vqa.data.splits import make_example
from vqa.domain import CALIBRATION_FILE, DomainCalibration

QUESTION = "what color is the circle?"


def photograph() -> Image.Image:
    """A real photograph that a runtime dependency ships (matplotlib's sample of Grace Hopper)."""
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as image:
        return image.convert("RGB")


def test_every_result_type_carries_the_verdict(tiny_model):
    scene = make_example("test", 0, 64).image
    both = tiny_model.ask(scene, QUESTION)
    results = [both, both.classifier, both.generative, tiny_model.caption(scene), tiny_model.explain(scene, QUESTION)]
    for result in results:
        assert isinstance(result.in_domain, bool) and (result.domain_note is None) == result.in_domain


def test_training_saves_a_calibration_that_the_model_reads_back(tiny_model_dir, tiny_model):
    saved = json.loads((tiny_model_dir / CALIBRATION_FILE).read_text())
    assert saved["image_threshold"] > 0 and {"what", "color", "circle", "how", "many"} <= set(saved["known_words"])
    assert tiny_model.domain.image_threshold == pytest.approx(saved["image_threshold"])


def test_the_verdict_follows_the_saved_threshold_not_a_constant(tiny_model_dir, tmp_path):
    """The same scene and question, judged by a copy of the model whose saved threshold is 0: now outside."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    calibration = DomainCalibration.load(copy)
    scene = make_example("test", 1, 64).image
    assert vqa.load(copy).ask(scene, QUESTION).in_domain
    calibration.image_threshold = 0.0
    calibration.save(copy)
    strict = vqa.load(copy).ask(scene, QUESTION)
    assert not strict.in_domain and "does not look like" in strict.domain_note


def test_a_question_with_words_never_taught_is_flagged_and_says_which(tiny_model):
    scene = make_example("test", 2, 64).image
    result = tiny_model.ask(scene, "what animal is this?")
    assert not result.in_domain and "“animal”" in result.domain_note and "“this”" in result.domain_note
    assert result.classifier.answer  # the answers stay: a model failing outside its world is itself a lesson


def test_a_model_folder_without_a_calibration_is_in_domain(tiny_model_dir, tmp_path):
    import shutil

    copy = tmp_path / "uncalibrated"
    shutil.copytree(tiny_model_dir, copy)
    (copy / CALIBRATION_FILE).unlink()
    assert vqa.load(copy).ask(photograph(), "what animal is this?").in_domain


@pytest.mark.slow
def test_the_shipped_model_flags_a_photograph_and_keeps_its_own_scenes(shipped_model):
    photo = shipped_model.ask(photograph(), "is there a circle?")  # words it knows: the picture decides
    assert not photo.in_domain and "photograph" in photo.domain_note
    verdicts = [shipped_model.ask(ex.image, q.text).in_domain for ex in (make_example("test", i, 96) for i in range(20)) for q in ex.questions]
    assert sum(verdicts) / len(verdicts) >= 0.98


def test_hub_backbones_are_in_domain(tmp_path):
    """A hub model has no notion of its own domain: in domain, no note."""
    from hub_fixtures import make_blip

    from vqa.backbones.hub import load_hub_backbone

    backbone = load_hub_backbone(str(make_blip(tmp_path / "blip", task="vqa")))
    result = backbone.ask(photograph(), "what animal is this?")
    assert result.in_domain and result.domain_note is None


def test_words_that_only_the_training_rewordings_use_are_known_to_a_model_trained_on_them():
    """A model trained with re-worded questions read "hue" and "colour"; one trained on the templates alone did not."""
    from vqa.domain import calibrate

    def patch_states_of(image):
        return np.asarray(image, dtype=np.float32).reshape(-1, 3)  # (pixels, 3): any fixed features will do here

    counts = {"train_scenes": 2, "val_scenes": 2, "question_scenes": 300}
    plain = calibrate(patch_states_of, 16, **counts)
    reworded = calibrate(patch_states_of, 16, reworded_share=1.0, **counts)
    assert {"hue", "shade"} <= reworded.known_words
    assert not {"hue", "shade"} & plain.known_words
    assert len(reworded.known_words) > len(plain.known_words) + 20  # the grammar speaks a wider English


OTHER_WORDINGS = ["which hue is the circle?", "identify the shape of the red object.", "is the picture free of triangles?"]


def test_a_question_in_other_words_is_inside_when_the_sentence_encoder_reads_it_as_a_training_question(tiny_model):
    """The tiny model reads questions through the sentence encoder: new words alone no longer make a guess."""
    domain = tiny_model.domain
    assert domain.question_encoder and domain.question_embeddings.shape[0] > 100
    scene = make_example("test", 2, 64).image
    for question in OTHER_WORDINGS:
        assert domain.unknown_words(question), question  # words the generator never wrote...
        assert tiny_model.ask(scene, question).in_domain, question  # ...in a sentence it did
    far = tiny_model.ask(scene, "what is the circle's favourite food?")
    assert not far.in_domain and "“favourite”" in far.domain_note and "unlike every question" in far.domain_note


def test_the_question_threshold_and_embeddings_are_the_saved_ones(tiny_model_dir, tmp_path):
    import shutil

    from vqa.domain import QUESTION_EMBEDDINGS_FILE

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    assert (copy / QUESTION_EMBEDDINGS_FILE).is_file()
    calibration = DomainCalibration.load(copy)
    assert 0.5 < calibration.question_threshold < 1.0
    scene = make_example("test", 1, 64).image
    assert vqa.load(copy).ask(scene, OTHER_WORDINGS[0]).in_domain
    calibration.question_threshold = 1.01  # no sentence is that near: the word check decides again
    calibration.save(copy)
    assert not vqa.load(copy).ask(scene, OTHER_WORDINGS[0]).in_domain
    (copy / QUESTION_EMBEDDINGS_FILE).unlink()  # a folder without the embeddings keeps the word check
    assert "never learned (“hue”)" in vqa.load(copy).ask(scene, OTHER_WORDINGS[0]).domain_note


def test_the_generators_own_questions_are_judged_without_running_the_sentence_encoder(tiny_model, monkeypatch):
    import vqa.model.pretrained_text as pretrained_text

    def refuse(*args, **kwargs):
        raise AssertionError("the sentence encoder ran for a question of known words")

    monkeypatch.setattr(pretrained_text, "sentence_embeddings", refuse)
    example = make_example("test", 3, 64)
    assert all(tiny_model.domain.question_note(q.text) is None for q in example.questions)
