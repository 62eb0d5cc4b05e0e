"""The demo's handlers called directly, without a server, on a tiny random model.

The model is trained for 3 steps into a temporary folder (seconds), so these tests
run whether or not weights/shapes-vlp exists; its answers are noise, so we check
shapes and messages, not correctness. One test uses the real model when present.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest
from PIL import Image

import demo  # noqa: F401  (offline environment first)
from demo.handlers import Handlers, agreement_badge, label_value, model_choices, quantization_choices
from demo.make_examples import load_examples, make_examples
from demo.state import ModelManager
from demo.ui import build_demo
import vqa
from vqa.image_io import MAX_QUESTION_CHARS

QUESTION = "what color is the square?"


@pytest.fixture(scope="session")
def model_dir(tiny_model_dir) -> Path:
    return tiny_model_dir


@pytest.fixture(scope="session")
def handlers(model_dir) -> Handlers:
    models = ModelManager(str(model_dir))
    assert models.preload(), models.load_error
    return Handlers(models)


@pytest.fixture(scope="session")
def image_path(tmp_path_factory) -> str:
    from vqa.data.splits import make_example

    path = tmp_path_factory.mktemp("images") / "scene.png"
    make_example("test", 0, 96).image.save(path)
    return str(path)


def _message(excinfo) -> str:
    return str(excinfo.value.message if hasattr(excinfo.value, "message") else excinfo.value)


# ----- Ask -------------------------------------------------------------------------------
def test_ask_gives_both_answers(handlers, image_path):
    classifier, generative, badge, classifier_note, generative_note = handlers.ask(image_path, QUESTION, top_k=3)
    assert isinstance(classifier, dict) and 1 <= len(classifier) <= 3
    assert all(0.0 <= p <= 1.0 for p in classifier.values())
    assert list(classifier.values()) == sorted(classifier.values(), reverse=True)
    assert isinstance(generative, dict) and len(generative) >= 1
    assert "agree" in badge  # "Both heads agree" or "The heads disagree"
    assert "ms" in classifier_note and "sequence probability" in generative_note


@pytest.mark.parametrize("decoding", ["greedy", "beam", "nucleus"])
def test_ask_shows_what_the_model_writes_with_each_decoding(handlers, image_path, decoding):
    settings = dict(top_k=3, decoding=decoding, num_beams=2, top_p=0.8, temperature=0.7, max_new_tokens=4)
    _, generative, _, _, note = handlers.ask(image_path, QUESTION, **settings)
    expected = handlers.models.current().ask(image_path, QUESTION, **settings).generative
    assert generative == label_value(expected)


def test_ask_gives_a_pil_image_the_answers_of_the_same_picture_uploaded_as_a_file(handlers, image_path):
    with Image.open(image_path) as opened:
        picture = opened.convert("RGB")
    from_pil = handlers.ask(picture, QUESTION, top_k=3)
    from_file = handlers.ask(image_path, QUESTION, top_k=3)
    assert from_pil[0] and from_pil[:2] == from_file[:2]  # the same classifier and generator answers, probabilities and all


def test_agreement_badge_both_ways():
    a = vqa.Answer("red", 0.9, [("red", 0.9)], "classifier")
    b = vqa.Answer("Red", 0.5, [("Red", 0.5)], "generative")
    c = vqa.Answer("blue", 0.5, [("blue", 0.5)], "generative")
    assert "agree" in agreement_badge(a, b) and "disagree" not in agreement_badge(a, b)
    assert "disagree" in agreement_badge(a, c)
    assert "&lt;b&gt;" in agreement_badge(vqa.Answer("<b>", 1, [], "classifier"), c)  # answers are escaped
    assert label_value(vqa.Answer("", 0.1, [("", 0.1)], "generative")) == {"(empty answer)": 0.1}


@pytest.mark.parametrize(
    "image, question, expected",
    [
        (None, QUESTION, "No image was given"),
        ("IMAGE", "", "Please type a question"),
        ("IMAGE", "   \n\t ", "Please type a question"),
        ("IMAGE", "x" * 10_000, f"the limit is {MAX_QUESTION_CHARS}"),
        ("NOT_AN_IMAGE", QUESTION, "not a readable image"),
        ("MISSING", QUESTION, "There is no file"),
    ],
    ids=["no-image", "empty-question", "blank-question", "10000-chars", "non-image-file", "missing-file"],
)
def test_ask_bad_input_gives_clear_error(handlers, image_path, tmp_path, image, question, expected):
    if image == "IMAGE":
        image = image_path
    elif image == "NOT_AN_IMAGE":
        image = tmp_path / "notes.png"
        image.write_text("this is a text file with an image name\n")
        image = str(image)
    elif image == "MISSING":
        image = str(tmp_path / "nothing.png")
    with pytest.raises(gr.Error) as excinfo:
        handlers.ask(image, question)
    assert expected in _message(excinfo)
    assert "Traceback" not in _message(excinfo) and str(tmp_path) not in _message(excinfo)


def test_unexpected_error_becomes_generic_gr_error(image_path, caplog):
    class Broken:
        loaded = True
        allow_custom = False

        def current(self, key=None, progress=None):
            raise RuntimeError("internal detail that must not reach users")

    with pytest.raises(gr.Error) as excinfo:
        Handlers(Broken()).ask(image_path, QUESTION)
    assert "internal detail" not in _message(excinfo)
    assert "server log" in _message(excinfo)
    assert "internal detail" in caplog.text  # logged with its traceback


# ----- Caption ---------------------------------------------------------------------------
@pytest.mark.parametrize("decoding", ["beam", "nucleus"])
def test_caption_shows_what_the_model_writes(handlers, image_path, decoding):
    """The best caption and each row of the table are the model's own captions for the same settings, best first."""
    settings = dict(decoding=decoding, num_captions=2, num_beams=2, max_new_tokens=6)
    best, table, note = handlers.caption(image_path, **settings)
    expected = handlers.models.current().caption(image_path, **settings)
    rows = [row.split(" | ") for row in table.splitlines()[2:]]
    written = expected.candidates or [(expected.text, expected.score)]
    assert best == expected.text
    assert [(cells[1], float(cells[2].rstrip(" |"))) for cells in rows] == [
        (text or "(empty)", pytest.approx(p, rel=1e-2)) for text, p in written]
    assert note.startswith(f"{len(rows)} caption(s)")


def test_caption_without_image(handlers):
    with pytest.raises(gr.Error, match="No image"):
        handlers.caption(None)


# ----- Attention -------------------------------------------------------------------------
def test_explain_outputs_images(handlers, image_path):
    heat, grid, bar, text, note, state, layers, heads, tokens = handlers.explain(image_path, QUESTION)
    for picture in (heat, grid, bar):
        assert isinstance(picture, Image.Image) and picture.width > 10 and picture.height > 10
    assert "looked most at" in text
    # by default the mean over the fusion layers: with [CLS], the map pointing accuracy is measured on
    assert layers["value"] == "mean" and "mean over the fusion layers" in text
    _, _, first_text = handlers.redraw_attention(state, "first", "mean", "all", "attention")
    assert f"first fusion layer ({state['maps'].layers[0]})" in first_text
    _, _, last_text = handlers.redraw_attention(state, "last", "mean", "all", "attention")
    assert f"last fusion layer ({state['maps'].layers[-1]})" in last_text
    assert note  # the AttentionMaps.note is shown
    assert state["maps"].cross.ndim == 5
    assert ("all question words", "all") in tokens["choices"]
    # by default the map of [CLS], the token the classifier reads: where the answer came from
    assert tokens["value"] == "0:[CLS]" and "[CLS], the summary token the classifier answers from" in text
    assert ("mean over heads", "mean") in heads["choices"]
    token_values = [v for _, v in tokens["choices"]]
    assert "5:square" in token_values

    # re-drawing from the state: one head, one word; rollout; mean over layers
    heat2, grid2, text2 = handlers.redraw_attention(state, "0", "1", "5:square", "attention")
    assert isinstance(heat2, Image.Image) and "head 1" in text2 and "square" in text2
    heat3, _, text3 = handlers.redraw_attention(state, "mean", "mean", "all", "rollout")
    assert isinstance(heat3, Image.Image) and "rollout" in text3


def test_explain_keeps_a_token_choice_only_if_it_still_fits(handlers, image_path):
    *_, tokens = handlers.explain(image_path, "is there a red star?", token="5:square")
    assert tokens["value"] == "all"


# ----- Quantization ----------------------------------------------------------------------
def test_compare_quantized_int8(handlers, image_path):
    summary, full, quant, heat_full, heat_quant, heat_diff = handlers.compare_quantized(image_path, QUESTION, "int8")
    assert "int8" in summary and "Total variation" in summary and "Memory" in summary and "Latency" in summary
    assert isinstance(full, dict) and isinstance(quant, dict) and len(full) <= 5
    for picture in (heat_full, heat_quant, heat_diff):
        assert isinstance(picture, Image.Image)
    # the quantized copy is cached: a second comparison does not load again
    assert "int8" in handlers.models.cached_schemes()
    summary2, *_ = handlers.compare_quantized(image_path, QUESTION, "int8")
    assert "already loaded" in summary2


def test_compare_with_none_is_zero_drift(handlers, image_path):
    summary, full, quant, *_ = handlers.compare_quantized(image_path, QUESTION, "none")
    assert full == quant
    assert "**0.0000**" in summary


def test_total_variation_between_two_different_distributions():
    from demo.handlers import total_variation

    p, q = {"red": 0.7, "blue": 0.3}, {"red": 0.2, "green": 0.8}
    assert total_variation(p, q) == pytest.approx(0.8)  # (|0.7-0.2| + |0.3-0| + |0-0.8|) / 2
    assert total_variation(p, p) == 0 and total_variation({"a": 1.0}, {"b": 1.0}) == pytest.approx(1.0)


def test_compare_reports_the_drift_between_full_precision_and_int8(handlers, image_path):
    """The summary's total variation is the one between the two models' own answer distributions."""
    import re

    from demo.handlers import COMPARE_TOP_K, total_variation

    summary, *_ = handlers.compare_quantized(image_path, QUESTION, "int8")
    shown = float(re.search(r"\*\*Total variation\*\* between the two answer distributions: \*\*([0-9.]+)\*\*", summary).group(1))
    full = dict(handlers.models.full_precision().answer(image_path, QUESTION, top_k=COMPARE_TOP_K).candidates)
    quant = dict(handlers.models.quantized(None, "int8").answer(image_path, QUESTION, top_k=COMPARE_TOP_K).candidates)
    assert full != quant and shown == pytest.approx(total_variation(full, quant), abs=5e-5) and shown > 0


def test_compare_unknown_scheme(handlers, image_path):
    with pytest.raises(gr.Error, match="Quantization must be one of none, int8"):
        handlers.compare_quantized(image_path, QUESTION, "int3")


def test_quantization_choices_mark_unavailable():
    values = [v for _, v in quantization_choices()]
    assert values == ["none", "int8", "bnb-int8", "bnb-nf4"]
    available = vqa.quantization.availability()
    for (label, value) in quantization_choices():
        scheme = None if value == "none" else value
        assert ("unavailable" in label) == (not available[scheme][0])


# ----- Model -----------------------------------------------------------------------------
def test_model_facts_and_header(handlers, model_dir):
    facts = handlers.model_facts()
    assert model_dir.name in facts and "Parameters" in facts and "It can:" in facts
    assert model_dir.name in handlers.header()
    choices = model_choices(handlers.models)
    assert choices[0][1] == model_dir.name  # the browser sees a name, never the server path
    assert all(str(model_dir.parent) not in value for _, value in choices)


def test_a_model_not_offered_is_refused_whether_or_not_it_exists(handlers, tmp_path, model_dir):
    before = handlers.models.current()
    messages = []
    for choice, custom in ((None, str(tmp_path / "no-such-model")), (None, str(model_dir)), (str(model_dir), ""), ("owner/unknown-model", ""), ("/etc", "")):
        with pytest.raises(gr.Error) as excinfo:
            handlers.load_model(choice, custom)
        messages.append(_message(excinfo))
    assert len(set(messages)) == 1 and "not offered" in messages[0]
    assert str(tmp_path) not in messages[0] and str(model_dir) not in messages[0]
    assert handlers.models.current() is before
    with pytest.raises(gr.Error, match="Choose a model"):
        handlers.load_model("", "  ")


def test_choosing_a_model_is_per_session_and_keeps_the_quantized_cache(model_dir, image_path, tmp_path):
    """Two sessions: one switches to another (really different) model; the other keeps the default."""
    import shutil

    other = tmp_path / "other-model"
    shutil.copytree(model_dir, other)
    models = ModelManager(str(model_dir), serve=None, allow_custom=True, offer_hub=False)
    h = Handlers(models)
    h.compare_quantized(image_path, QUESTION, "int8")
    assert set(models.cached_schemes()) == {None, "int8"}
    status, facts, header, key = h.load_model(None, str(other))
    assert "ready" in status and "other-model" in header and key == str(other)
    assert models.current(key) is not models.current(None)
    assert "other-model" not in h.header(None) and "other-model" in h.header(key)
    assert set(models.cached_schemes()) == {None, "int8"}  # the default's copies stay for the other sessions


def test_the_app_answers_with_int8_and_compares_against_full_precision(model_dir, image_path, monkeypatch):
    monkeypatch.delenv("VQA_QUANTIZE", raising=False)
    models = ModelManager(str(model_dir))
    h = Handlers(models)
    served = models.current()
    assert models.served_scheme() == "int8" and served.quantization == "int8"
    assert "int8" in h.header() and "| Answers with | int8" in h.model_facts()
    # Ask shows what the int8 model answers
    classifier, *_ = h.ask(image_path, QUESTION, top_k=1)
    assert list(classifier) == [served.answer(image_path, QUESTION, top_k=1).answer]
    # the comparison's left side is a full-precision copy, loaded once, bigger than the served one
    summary, *_ = h.compare_quantized(image_path, QUESTION, "int8")
    full = models.full_precision()
    assert full.quantization is None and full is not served and models.full_precision() is full
    assert models.memory_bytes(full) > models.memory_bytes(served)
    assert "already loaded" in summary  # the int8 side is the served model itself


def test_serving_falls_back_to_full_precision_when_int8_is_unavailable(model_dir, monkeypatch):
    import vqa.quantization

    monkeypatch.setattr(vqa.quantization, "availability", lambda: {None: (True, ""), "int8": (False, "no quantized engine in this build")})
    models = ModelManager(str(model_dir), serve="int8")
    h = Handlers(models)
    assert models.current().quantization is None and models.served_scheme() is None
    assert "no quantized engine" in h.model_facts() and models.full_precision() is models.current()


def test_missing_default_model_is_reported_not_crashing(tmp_path, image_path):
    models = ModelManager(str(tmp_path / "empty"))
    assert models.preload() is False and models.load_error
    h = Handlers(models)
    assert "No model loaded" in h.header()
    with pytest.raises(gr.Error):
        h.ask(image_path, QUESTION)


# ----- page and examples -----------------------------------------------------------------
def test_build_demo_has_the_api(handlers):
    page = build_demo(handlers.models)
    names = {d.api_name for d in page.fns.values() if d.api_visibility == "public"}
    assert {"ask", "caption", "explain", "compare_quantized", "load_model", "compare_models", "train_live", "stop_live"} <= names


def test_examples_gallery(tmp_path):
    records = make_examples(tmp_path, count=2)
    assert len(records) == 2 and all(r["question"] for r in records)
    loaded = load_examples(tmp_path)
    assert [Path(r["image"]).is_file() for r in loaded] == [True, True]
    assert Image.open(loaded[0]["image"]).size == (96, 96)
    shipped = load_examples()  # demo/examples/ is committed
    assert len(shipped) >= 8


@pytest.mark.slow
def test_real_model_answers_an_example():
    weights = vqa.DEFAULT_MODEL_DIR
    if not (weights / "model.safetensors").is_file():
        pytest.skip(f"the trained model is not in {weights} yet (train it with `python -m vqa train --preset full --out {weights}`)")
    h = Handlers(ModelManager(str(weights), serve="int8"))
    model = vqa.load(weights, quantize="int8")
    # The app shows exactly what the served model answers (answer quality is tested in test_embedded_api.py).
    for example in load_examples():
        classifier, generative, *_ = h.ask(example["image"], example["question"])
        expected = model.answer(example["image"], example["question"], top_k=1).answer
        assert max(classifier, key=classifier.get) == expected
