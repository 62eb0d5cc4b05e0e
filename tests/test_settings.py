"""Every generation setting is checked in the `Backbone` API itself: the same clear message for the app,
its HTTP API, the command line and Python callers, and no value that makes one request's work unbounded."""

from __future__ import annotations

import math

import pytest

import vqa
from vqa import settings

QUESTION = "what color is the circle?"
#: (argument, values that must be refused): too large, too small, wrong type, not finite, not whole
REFUSED = {
    "top_k": [0, -3, settings.TOP_K.maximum + 1, 10**9, 2.5, "5", None, [], {}, True, math.nan, math.inf],
    "num_beams": [0, 9, 1_000_000, 1.5, "3", None, {}, math.inf],
    "top_p": [0.0, -1, 1e-6, 1.01, "0.9", None, [], math.nan, math.inf],
    "temperature": [0, -1, 0.01, 2.01, math.inf, math.nan, "1.0", None],
    "max_new_tokens": [0, 17, 1_000_000, 2.5, "8", None, math.inf],
    "decoding": ["telepathy", "", None, 3, ["beam"]],
}


@pytest.fixture(scope="module")
def scene():
    from vqa.data.splits import make_example

    return make_example("test", 0, 64)


@pytest.mark.parametrize("argument, value", [(a, v) for a, values in REFUSED.items() for v in values],
                         ids=lambda x: repr(x)[:20])
def test_every_answer_setting_out_of_range_wrong_type_or_not_finite_is_refused_with_its_range(tiny_model, scene, argument, value):
    with pytest.raises(vqa.InputError) as excinfo:
        tiny_model.ask(scene.image, QUESTION, **{argument: value})
    message = str(excinfo.value)
    declared = next(s for s in (settings.TOP_K, settings.NUM_BEAMS, settings.TOP_P, settings.TEMPERATURE, settings.ANSWER_TOKENS, settings.DECODING)
                    if s.name == argument)
    assert message.startswith(declared.label), message
    if isinstance(declared, settings.NumberSetting):
        assert f"from {declared.minimum:g} to {declared.maximum:g}" in message
    assert len(message) < 200  # a huge value is not echoed back in full


@pytest.mark.parametrize("argument, value", [("num_captions", 0), ("num_captions", 10_000), ("num_beams", 10_000), ("max_new_tokens", 41),
                                             ("max_new_tokens", 1_000_000), ("temperature", math.inf), ("top_p", 1e-6), ("decoding", "x")])
def test_caption_settings_are_checked_too(tiny_model, scene, argument, value):
    with pytest.raises(vqa.InputError):
        tiny_model.caption(scene.image, **{argument: value})


def test_each_limit_itself_is_accepted(tiny_model, scene):
    """The bounds are inclusive, and whole numbers sent as floats (as JSON does) are accepted."""
    top = tiny_model.ask(scene.image, QUESTION, top_k=float(settings.TOP_K.maximum), decoding="beam", num_beams=settings.NUM_BEAMS.maximum,
                         max_new_tokens=settings.ANSWER_TOKENS.maximum)
    assert len(top.classifier.candidates) == len(tiny_model.labels)  # at most the vocabulary
    assert 1 <= len(top.generative.candidates) <= settings.NUM_BEAMS.maximum
    low = tiny_model.ask(scene.image, QUESTION, decoding="nucleus", top_p=settings.TOP_P.minimum, temperature=settings.TEMPERATURE.minimum,
                         top_k=settings.TOP_K.maximum)
    assert 1 <= len(low.generative.candidates) <= settings.MAX_GENERATED_SEQUENCES
    captions = tiny_model.caption(scene.image, decoding="nucleus", num_captions=settings.NUM_CAPTIONS.maximum,
                                  max_new_tokens=settings.CAPTION_TOKENS.maximum)
    assert 1 <= len(captions.candidates) <= settings.NUM_CAPTIONS.maximum


def test_candidates_are_bounded(tiny_model, scene):
    with pytest.raises(vqa.InputError, match="from 1 to 200 candidate answers"):
        tiny_model.answer(scene.image, QUESTION, candidates=["red"] * (settings.MAX_CANDIDATES + 1))
    with pytest.raises(vqa.InputError, match="list of strings"):
        tiny_model.answer(scene.image, QUESTION, candidates="red")


def test_ask_answers_both_heads_from_one_loaded_image(tiny_model, scene, monkeypatch):
    """ask() loads and checks the picture once for both heads, and gives the same answers as two answer() calls."""
    import vqa.backbones.base as base

    loads = []
    real = base.load_image
    monkeypatch.setattr(base, "load_image", lambda image: loads.append(1) or real(image))
    both = tiny_model.ask(scene.image, QUESTION, top_k=3)
    assert len(loads) == 1
    alone = [tiny_model.answer(scene.image, QUESTION, head=h, top_k=3) for h in ("classifier", "generative")]
    assert [both.classifier.candidates, both.generative.candidates] == [a.candidates for a in alone]


def test_the_loaders_notes_come_back_on_the_result(tiny_model):
    import io

    from PIL import Image

    frames = [Image.new("RGB", (48, 48), colour) for colour in ("red", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    both = tiny_model.ask(buffer.getvalue(), QUESTION)
    assert both.notes == [vqa.image_io.ANIMATED_NOTE] and both.classifier.notes == both.notes
    assert tiny_model.caption(buffer.getvalue()).notes == [vqa.image_io.ANIMATED_NOTE]
