"""What the Ask, Caption and Attention tabs show (`demo/handlers.py`), on a fake model with fixed results.

The handlers only format what the `vqa` API returns, so a backbone whose answers, captions and attention
maps are chosen here lets each test check the exact text, table and picture a visitor sees, in
milliseconds. The layers × heads grid (matplotlib) is replaced by a stand-in that says which word it
was drawn for.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import gradio as gr
import numpy as np
import pytest
from PIL import Image

import demo  # noqa: F401  (offline environment first)
import demo.handlers as handlers_module
import vqa
from demo.handlers import (
    DISPLAY_SIDE,
    GENERIC_ERROR,
    GRID_CACHE_SIZE,
    Handlers,
    attention_view,
    colorbar_image,
    display_copy,
    domain_notice,
    grid_view,
    head_notes,
    mark_peak,
    user_errors,
)
from vqa.backbones.base import Backbone
from vqa.results import Answer, Answers, AttentionMaps, Caption, ModelInfo

TOKENS = ["[CLS]", "what", "colour", "is", "the", "square", "?"]
GREY = (90, 90, 90)


def attention(in_domain=True, answer=None) -> AttentionMaps:
    """Two layers (2 and 5), two heads, a 3×3 grid; each view has its own hottest patch:
    first layer [CLS] top left (head 1 alone: top right), last layer bottom right, the mean over
    layers bottom left, "square" in the first layer the centre, all words the middle left."""
    cross = np.zeros((2, 2, len(TOKENS), 3, 3))
    cross[0, 0, 0, 0, 0] = 1.0  # first layer, head 0, [CLS]: top left
    cross[0, 1, 0, 0, 2] = 0.6  # first layer, head 1, [CLS]: top right
    cross[1, :, 0, 2, 2] = 1.0  # last layer, [CLS]: bottom right
    cross[0, :, 0, 2, 0] = 0.45  # [CLS], bottom left: second in each layer, first in their mean
    cross[1, :, 0, 2, 0] = 0.9
    cross[0, :, 5, 1, 1] = 1.0  # first layer, "square": centre
    cross[0, :, 1:5, 1, 0] = 1.0  # first layer, the other words: middle left
    return AttentionMaps(cross, list(TOKENS), [2, 5], (96, 64), kind="cross-attention", note="where each word looked",
                         answer=answer, in_domain=in_domain, domain_note=None if in_domain else "A photo, not shapes.")


class FakeModel(Backbone):
    """Returns the results it was given and records the arguments of each call."""

    family = "fake"

    def __init__(self, name="fake-model", answers=None, caption=None, maps=None):
        super().__init__(name)
        self.capabilities = frozenset({"classifier", "generative", "caption", "explain"})
        self.answers = answers
        self.caption_result = caption
        self.maps = maps or attention()
        self.calls = []

    def info(self):
        return ModelInfo(self.name, self.family, "", {}, [])

    def ask(self, image, question, **settings):
        self.calls.append(("ask", image, question, settings))
        return self.answers

    def caption(self, image, **settings):
        self.calls.append(("caption", image, settings))
        return self.caption_result

    def explain(self, image, question, answer=None):
        self.calls.append(("explain", image, question))
        return self.maps


class FakeModels:
    """The part of ModelManager the handlers use."""

    default_key = "shapes-vlp"

    def __init__(self, model=None, error=None, allow_custom=False):
        self.model = model or FakeModel()
        self.error = error
        self.allow_custom = allow_custom
        self.requests = []

    def current(self, key=None, progress=None):
        self.requests.append(("current", key, progress))
        if self.error:
            raise self.error
        return self.model

    def quantized(self, key, scheme, progress=None):
        self.requests.append(("quantized", key, scheme, progress))
        if self.error:
            raise self.error
        return self.model


@pytest.fixture(autouse=True)
def grid_stand_in(monkeypatch):
    """The layers × heads grid as a small picture whose size says which word it was drawn for."""
    drawn = []

    def layer_grid(image, maps, token=None):
        drawn.append((image.size, token))
        return Image.new("RGB", (10 + (-1 if token is None else token), 2 + len(maps.layers)))

    monkeypatch.setattr(handlers_module, "layer_grid", layer_grid)
    return drawn


def picture(size=(96, 64)) -> Image.Image:
    return Image.new("RGB", size, GREY)


def answers(classifier="red", generative="red", notes=(), in_domain=True) -> Answers:
    result = Answers(notes=list(notes), in_domain=in_domain, domain_note=None if in_domain else "A photo, not shapes.")
    if classifier is not None:
        result.classifier = Answer(classifier, 0.834, [(classifier, 0.834), ("blue", 0.004)], "classifier", latency_ms=12.4,
                                   notes=list(notes))
    if generative is not None:
        result.generative = Answer(generative, 0.5, [(generative, 0.5)], "generative", latency_ms=30.6, notes=list(notes))
    return result


def message(excinfo) -> str:
    return str(excinfo.value.message if hasattr(excinfo.value, "message") else excinfo.value)


# ----- which model ---------------------------------------------------------------------------------
def test_a_handler_uses_the_sessions_model():
    models = FakeModels(FakeModel(answers=answers()))
    Handlers(models).ask(picture(), "what colour?", model_key="session-model")
    assert models.requests == [("current", "session-model", None)]


def test_the_served_model_is_loaded_with_the_callers_progress():
    models = FakeModels()
    progress = object()
    assert Handlers(models)._model("k", progress) is models.model
    assert models.requests == [("current", "k", progress)]


def test_a_quantized_model_is_asked_for_by_its_scheme():
    models = FakeModels()
    progress = object()
    assert Handlers(models)._model("k", progress, scheme="int8") is models.model
    assert models.requests == [("quantized", "k", "int8", progress)]


def test_a_failed_load_on_a_public_server_names_only_the_model(caplog):
    models = FakeModels(error=vqa.ModelLoadError("/srv/secret/weights is damaged"))
    with caplog.at_level(logging.WARNING, logger="demo"):
        with pytest.raises(gr.Error) as excinfo:
            Handlers(models).ask(picture(), "what colour?")
    assert message(excinfo) == "shapes-vlp could not be loaded on this server right now."
    assert caplog.messages == ["Loading shapes-vlp failed: /srv/secret/weights is damaged"]
    with caplog.at_level(logging.WARNING, logger="demo"):
        with pytest.raises(vqa.ModelLoadError, match=r"^my-model could not be loaded on this server right now\.$"):
            Handlers(models)._model("my-model")
    assert caplog.messages[-1] == "Loading my-model failed: /srv/secret/weights is damaged"


def test_a_failed_load_where_custom_models_are_allowed_keeps_the_loaders_message():
    models = FakeModels(error=vqa.ModelLoadError("no model.safetensors in my-folder"), allow_custom=True)
    with pytest.raises(gr.Error) as excinfo:
        Handlers(models).ask(picture(), "what colour?")
    assert message(excinfo) == "no model.safetensors in my-folder"


# ----- errors --------------------------------------------------------------------------------------
def test_user_errors_shows_library_messages_and_hides_bugs(caplog):
    @user_errors
    def refuses():
        raise vqa.InputError("Please type a question.")

    @user_errors
    def breaks():
        raise KeyError("internal detail")

    @user_errors
    def already_shown():
        raise gr.Error("shown as is")

    with pytest.raises(gr.Error) as excinfo:
        refuses()
    assert message(excinfo) == "Please type a question."
    with pytest.raises(gr.Error) as excinfo:
        breaks()
    assert message(excinfo) == GENERIC_ERROR and "internal detail" in caplog.text
    with pytest.raises(gr.Error) as excinfo:
        already_shown()
    assert message(excinfo) == "shown as is"
    assert breaks.__name__ == "breaks"


# ----- Ask -----------------------------------------------------------------------------------------
def test_ask_shows_both_heads_with_their_probabilities_and_times():
    model = FakeModel(answers=answers("red", "Red"))
    classifier, generative, badge, classifier_note, generative_note = Handlers(FakeModels(model)).ask(picture(), "what colour?")
    assert classifier == {"red": 0.834, "blue": 0.004} and generative == {"Red": 0.5}
    assert "Both heads agree: <b>red</b>" in badge
    assert classifier_note == "Top answer **83%** likely · 12 ms"
    assert generative_note == "Generated “**Red**” · sequence probability **50%** (greedy) · 31 ms"


def test_ask_passes_every_setting_to_the_model():
    model = FakeModel(answers=answers())
    image = picture()
    Handlers(FakeModels(model)).ask(image, "what colour?", top_k=3, decoding="nucleus", num_beams=2, top_p=0.7, temperature=1.3,
                                    max_new_tokens=5)
    assert model.calls == [("ask", image, "what colour?", dict(top_k=3, decoding="nucleus", num_beams=2, top_p=0.7, temperature=1.3,
                                                                max_new_tokens=5))]


def test_ask_defaults_are_the_ui_defaults():
    model = FakeModel(answers=answers())
    Handlers(FakeModels(model)).ask(picture(), "what colour?")
    assert model.calls[0][3] == dict(top_k=5, decoding="greedy", num_beams=3, top_p=0.9, temperature=1.0, max_new_tokens=8)


def test_the_generators_note_names_the_decoding_the_model_was_asked_for_and_nothing_else_changes():
    """The same written answer under three decodings: each note names the decoding the model received, and the
    three notes differ in that word alone."""
    model = FakeModel(answers=answers())
    handlers = Handlers(FakeModels(model))
    notes = {decoding: handlers.ask(picture(), "what colour?", decoding=decoding)[4] for decoding in ("greedy", "beam", "nucleus")}
    assert [call[3]["decoding"] for call in model.calls] == ["greedy", "beam", "nucleus"]
    assert len(set(notes.values())) == 3
    for decoding, note in notes.items():
        assert note.replace(f"({decoding})", "(greedy)") == notes["greedy"], note


def test_ask_says_when_the_heads_disagree():
    _, _, badge, _, _ = Handlers(FakeModels(FakeModel(answers=answers("red", "blue")))).ask(picture(), "what colour?")
    assert "The heads disagree: classifier <b>red</b>, generator <b>blue</b>" in badge


def test_ask_escapes_and_shows_an_empty_generated_answer():
    _, generative, _, _, note = Handlers(FakeModels(FakeModel(answers=answers("red", "")))).ask(picture(), "what colour?")
    assert generative == {"(empty answer)": 0.5} and note.startswith("Generated “**(empty answer)**”")
    _, _, _, _, note = Handlers(FakeModels(FakeModel(answers=answers("red", "<i>x</i>")))).ask(picture(), "what colour?")
    assert note.startswith("Generated “**&lt;i&gt;x&lt;/i&gt;**”")


def test_ask_with_a_model_lacking_a_head_says_so():
    model = FakeModel("answer-only", answers=answers(generative=None))
    classifier, generative, badge, classifier_note, generative_note = Handlers(FakeModels(model)).ask(picture(), "what colour?")
    assert generative is None and badge == "" and generative_note == "answer-only has no generative head."
    model = FakeModel("writer-only", answers=answers(classifier=None))
    classifier, *_, classifier_note, _ = Handlers(FakeModels(model)).ask(picture(), "what colour?")
    assert classifier is None and classifier_note == "writer-only has no classifier head."


def test_ask_adds_the_pictures_notes_under_the_classifier_and_each_heads_own_under_it():
    result = answers(notes=["Animated image: the first frame was used."])
    result.classifier.notes.append("Scored as statements.")
    result.generative.notes.append("Stopped at 8 tokens.")
    *_, classifier_note, generative_note = Handlers(FakeModels(FakeModel(answers=result))).ask(picture(), "what colour?")
    assert classifier_note == ("Top answer **83%** likely · 12 ms  \nAnimated image: the first frame was used.  \n"
                               "Scored as statements.")
    assert generative_note.endswith("· 31 ms  \nStopped at 8 tokens.")


def test_ask_outside_the_domain_shows_the_notice_instead_of_the_badge():
    classifier, _, badge, _, _ = Handlers(FakeModels(FakeModel(answers=answers(in_domain=False)))).ask(picture(), "what colour?")
    assert badge == domain_notice("A photo, not shapes.") and "agree" not in badge
    assert classifier == {"red": 0.834, "blue": 0.004}


def test_ask_turns_a_refusal_into_its_message():
    class Refusing(FakeModel):
        def ask(self, image, question, **settings):
            raise vqa.InputError("Please type a question.")

    with pytest.raises(gr.Error) as excinfo:
        Handlers(FakeModels(Refusing())).ask(picture(), "")
    assert message(excinfo) == "Please type a question."


def test_head_notes_are_those_beyond_the_pictures():
    result = answers(notes=["about the picture"])
    result.classifier.notes.append("about the head")
    assert head_notes(result.classifier, result) == ["about the head"]
    assert head_notes(None, result) == []


def test_the_domain_notice_escapes_the_note():
    notice = domain_notice("<b>not</b> shapes")
    assert notice.startswith('<div class="vqa-badge vqa-outside" style="') and "#d97706" in notice
    assert notice.endswith("⚠ Outside what this model knows. &lt;b&gt;not&lt;/b&gt; shapes</div>")


# ----- Caption -------------------------------------------------------------------------------------
def captioned(in_domain=True, candidates=None, notes=()) -> Caption:
    return Caption("a red square", 0.0123456, [("a red square", 0.0123456), ("a | b\nc", 0.5), ("", 0.25)] if candidates is None else candidates,
                   latency_ms=41.6, notes=list(notes), in_domain=in_domain, domain_note=None if in_domain else "A photo, not shapes.")


def test_caption_shows_the_best_caption_and_a_table_of_all():
    best, table, note = Handlers(FakeModels(FakeModel(caption=captioned()))).caption(picture())
    assert best == "a red square"
    assert table.splitlines() == ["| # | Caption | Probability |", "|---|---|---|", "| 1 | a red square | 0.0123 |",
                                  "| 2 | a \\| b c | 0.5 |", "| 3 | (empty) | 0.25 |"]
    assert note == ("3 caption(s) by beam decoding · 42 ms · probability of a caption = the product of its word probabilities, "
                    "so long captions get small numbers")


def test_caption_without_alternatives_shows_the_caption_itself():
    _, table, note = Handlers(FakeModels(FakeModel(caption=captioned(candidates=[])))).caption(picture(), decoding="greedy")
    assert table.splitlines()[2:] == ["| 1 | a red square | 0.0123 |"]
    assert note.startswith("1 caption(s) by greedy decoding")


def test_caption_escapes_what_the_model_wrote():
    _, table, _ = Handlers(FakeModels(FakeModel(caption=captioned(candidates=[("<script>", 1.0)])))).caption(picture())
    assert "| 1 | &lt;script&gt; | 1 |" in table


def test_caption_passes_every_setting_to_the_model():
    model = FakeModel(caption=captioned())
    image = picture()
    Handlers(FakeModels(model)).caption(image, decoding="nucleus", num_captions=2, num_beams=4, top_p=0.5, temperature=0.8, max_new_tokens=12,
                                        model_key="k")
    assert model.calls == [("caption", image, dict(decoding="nucleus", num_captions=2, num_beams=4, top_p=0.5, temperature=0.8,
                                                    max_new_tokens=12))]


def test_caption_defaults_are_the_ui_defaults():
    model = FakeModel(caption=captioned())
    Handlers(FakeModels(model)).caption(picture())
    assert model.calls[0][2] == dict(decoding="beam", num_captions=3, num_beams=3, top_p=0.9, temperature=1.0, max_new_tokens=40)


def test_caption_adds_the_pictures_notes_and_the_domain_warning():
    model = FakeModel(caption=captioned(in_domain=False, notes=["Animated image: the first frame was used."]))
    _, _, note = Handlers(FakeModels(model)).caption(picture())
    assert note.startswith("⚠ **Outside what this model knows.** A photo, not shapes.  \n3 caption(s) by beam decoding")
    assert note.endswith("small numbers  \nAnimated image: the first frame was used.")


# ----- Attention -----------------------------------------------------------------------------------
def test_explain_starts_on_the_mean_over_layers_and_cls(grid_stand_in):
    model = FakeModel()
    heat, grid, bar, text, note, state, layers, heads, tokens = Handlers(FakeModels(model)).explain(picture(), "  what colour\nis the square? ")
    assert model.calls[0][2] == "what colour is the square?" and model.calls[0][1].size == (96, 64)
    assert text == ("The model looked most at the **bottom left** of the picture (ringed in cyan). Bright = more attention. "
                    "Showing: mean over the fusion layers, mean over heads, from [CLS], the summary token the classifier answers from; "
                    "grid 3×3 patches.")
    assert note == "*cross-attention:* where each word looked"
    assert heat.size == (384, 256) and bar.size == colorbar_image().size
    assert grid_stand_in == [((96, 64), 0)] and grid.size == (10, 4)
    assert layers == gr.update(choices=[("first fusion layer (2)", "first"), ("last fusion layer (5)", "last"), ("layer 2", "0"),
                                        ("layer 5", "1"), ("mean over layers", "mean")], value="mean")
    assert heads == gr.update(choices=[("mean over heads", "mean"), ("head 0", "0"), ("head 1", "1")], value="mean")
    assert tokens["value"] == "0:[CLS]" and tokens["choices"][:2] == [("all question words", "all"), ("[CLS] (summary)", "0:[CLS]")]
    assert state["maps"] is model.maps and state["image"].size == (96, 64) and list(state["grids"]) == ["0:[CLS]"]


def test_explain_keeps_the_chosen_view():
    outputs = Handlers(FakeModels()).explain(picture(), "what colour?", layer="last", head="1", token="5:square", method="attention")
    text, layers, heads, tokens = outputs[3], outputs[6], outputs[7], outputs[8]
    assert (layers["value"], heads["value"], tokens["value"]) == ("last", "1", "5:square")
    assert "Showing: last fusion layer (5), head 1, from the word “square”" in text


def test_explain_falls_back_to_the_defaults_for_choices_not_on_the_menus():
    outputs = Handlers(FakeModels()).explain(picture(), "what colour?", layer="7", head="9", token="5:circle", method="guess")
    text, layers, heads, tokens = outputs[3], outputs[6], outputs[7], outputs[8]
    assert (layers["value"], heads["value"], tokens["value"]) == ("mean", "mean", "all")
    assert "Showing: mean over the fusion layers, mean over heads, from all question words" in text


def test_explain_keeps_rollout_when_chosen():
    text = Handlers(FakeModels()).explain(picture(), "what colour?", method="rollout")[3]
    assert "attention rollout through all fusion layers (heads averaged), from [CLS]" in text


def test_explain_keeps_only_a_display_sized_picture():
    state = Handlers(FakeModels()).explain(picture((1200, 900)), "what colour?")[5]
    assert state["image"].size == (DISPLAY_SIDE, 288)


def test_explain_refuses_a_bad_picture_or_question_before_asking_the_model():
    models = FakeModels()
    with pytest.raises(gr.Error) as excinfo:
        Handlers(models).explain(None, "what colour?")
    assert message(excinfo) == "No image was given. Please upload an image."
    with pytest.raises(gr.Error) as excinfo:
        Handlers(models).explain(picture(), " ")
    assert message(excinfo) == "Please type a question."
    assert models.requests == []


def test_explain_outside_the_domain_warns_above_the_description():
    text = Handlers(FakeModels(FakeModel(maps=attention(in_domain=False)))).explain(picture(), "what colour?")[3]
    assert text.startswith("⚠ **Outside what this model knows.** A photo, not shapes.  \nThe model looked most at")


def test_explain_with_an_answer_names_it():
    text = Handlers(FakeModels(FakeModel(maps=attention(answer="<red>")))).explain(picture(), "what colour?")[3]
    assert text.startswith("Answer **&lt;red&gt;**. The model looked most at")


def test_explain_without_a_note_shows_the_kind_alone():
    maps = attention()
    maps.note = ""
    assert Handlers(FakeModels(FakeModel(maps=maps))).explain(picture(), "what colour?")[4] == "*cross-attention*"


# ----- re-drawing ----------------------------------------------------------------------------------
@pytest.fixture
def state():
    return Handlers(FakeModels()).explain(picture(), "what colour?")[5]


@pytest.mark.parametrize("layer, head, token, method, where, showing", [
    ("first", "mean", "0:[CLS]", "attention", "top left", "first fusion layer (2), mean over heads, from [CLS]"),
    ("first", "1", "0:[CLS]", "attention", "top right", "first fusion layer (2), head 1, from [CLS]"),
    ("last", "mean", "0:[CLS]", "attention", "bottom right", "last fusion layer (5), mean over heads, from [CLS]"),
    ("1", "0", "0:[CLS]", "attention", "bottom right", "layer 5, head 0, from [CLS]"),
    ("0", "mean", "5:square", "attention", "centre", "layer 2, mean over heads, from the word “square”"),
    ("mean", "mean", "0:[CLS]", "attention", "bottom left", "mean over the fusion layers, mean over heads, from [CLS]"),
    ("first", "mean", "all", "attention", "middle left", "first fusion layer (2), mean over heads, from all question words"),
    ("first", "mean", "0:[CLS]", "rollout", "bottom left", "attention rollout through all fusion layers (heads averaged), from [CLS]"),
])
def test_redraw_shows_the_chosen_view(state, layer, head, token, method, where, showing):
    heat, _, text = Handlers(FakeModels()).redraw_attention(state, layer, head, token, method)
    assert f"looked most at the **{where}** of the picture" in text and f"Showing: {showing}" in text
    assert heat.size == (384, 256)


def test_redraw_without_a_state_changes_nothing():
    assert Handlers(FakeModels()).redraw_attention(None) == (gr.skip(), gr.skip(), gr.skip())
    assert Handlers(FakeModels()).redraw_attention({"image": picture()}) == (gr.skip(), gr.skip(), gr.skip())


def test_redraw_refuses_a_layer_not_on_the_menu(state):
    with pytest.raises(gr.Error) as excinfo:
        Handlers(FakeModels()).redraw_attention(state, "7", "mean", "all", "attention")
    assert message(excinfo) == "Choose the layer from its menu: first, last, 0, 1, mean."
    with pytest.raises(gr.Error) as excinfo:
        Handlers(FakeModels()).redraw_attention(state, "first", "mean", "all", "guess")
    assert message(excinfo) == "Method must be one of attention, rollout, not 'guess'."


def test_redraw_draws_each_words_grid_once(state, grid_stand_in):
    h = Handlers(FakeModels())
    first = h.redraw_attention(state, "first", "mean", "5:square", "attention")[1]
    again = h.redraw_attention(state, "last", "1", "5:square", "attention")[1]
    assert again is first and grid_stand_in[-1] == ((96, 64), 5) and len(grid_stand_in) == 2
    assert h.redraw_attention(state, "first", "mean", "0:[CLS]", "attention")[1] is state["grids"]["0:[CLS]"]
    assert len(grid_stand_in) == 2


def test_redraw_reads_a_word_no_longer_in_the_question_as_all_words(state, grid_stand_in):
    _, grid, text = Handlers(FakeModels()).redraw_attention(state, "first", "mean", "5:circle", "attention")
    assert "from all question words" in text and grid_stand_in[-1] == ((96, 64), None) and "all" in state["grids"]
    assert "5:circle" not in state["grids"]


def test_redraw_keeps_the_most_recent_grids(state, grid_stand_in):
    h = Handlers(FakeModels())
    for token in ("1:what", "2:colour", "3:is", "4:the", "1:what"):
        h.redraw_attention(state, "first", "mean", token, "attention")
    assert list(state["grids"]) == ["2:colour", "3:is", "4:the", "1:what"]
    assert len(state["grids"]) == GRID_CACHE_SIZE
    drawn = len(grid_stand_in)
    h.redraw_attention(state, "first", "mean", "0:[CLS]", "attention")
    assert len(grid_stand_in) == drawn + 1 and list(state["grids"]) == ["3:is", "4:the", "1:what", "0:[CLS]"]


# ----- pictures ------------------------------------------------------------------------------------
def test_the_peak_is_ringed_in_cyan_inside_black():
    heat = Image.new("RGB", (384, 384), GREY)
    grid_map = np.zeros((4, 4))
    grid_map[1, 2] = 1.0  # hottest patch centred at (240, 144); ring radius 48, lines 3 wide
    marked = mark_peak(heat, grid_map)
    for x, y in ((240 + 47, 144), (240 - 47, 144), (240, 144 + 47), (240, 144 - 47)):
        assert marked.getpixel((x, y)) == (0, 255, 255)
    for x, y in ((240 + 50, 144), (240 - 50, 144), (240, 144 + 50), (240, 144 - 50)):
        assert marked.getpixel((x, y)) == (0, 0, 0)
    assert marked.getpixel((240, 144)) == GREY and marked.getpixel((240 + 54, 144)) == GREY
    assert marked.getpixel((240 + 44, 144)) == GREY
    assert heat.getpixel((240 + 47, 144)) == GREY


def ring_colours(marked: Image.Image, cx: int, cy: int) -> list[tuple[int, int, int]]:
    """The colours met going right from the centre, grey left out."""
    return [marked.getpixel((x, cy)) for x in range(cx, marked.width) if marked.getpixel((x, cy)) != GREY]


def test_the_rings_lines_grow_with_the_picture():
    grid_map = np.zeros((4, 4))
    grid_map[1, 2] = 1.0
    colours = ring_colours(mark_peak(Image.new("RGB", (384, 384), GREY), grid_map), 240, 144)
    assert colours == [(0, 255, 255)] * 3 + [(0, 0, 0)] * 3
    colours = ring_colours(mark_peak(Image.new("RGB", (100, 100), GREY), grid_map), 62, 37)
    assert colours == [(0, 255, 255)] * 2 + [(0, 0, 0)] * 2


def test_a_fine_grid_still_gets_a_visible_ring():
    heat = Image.new("RGB", (100, 100), GREY)
    grid_map = np.zeros((50, 50))
    grid_map[25, 25] = 1.0  # centre (51, 51); radius at least 6, lines at least 2 wide
    marked = mark_peak(heat, grid_map)
    assert marked.getpixel((51 + 6 - 1, 51)) == (0, 255, 255)
    assert marked.getpixel((51 + 6 + 1, 51)) == (0, 0, 0)
    assert marked.getpixel((51 + 6 + 3, 51)) == GREY


def test_a_display_copy_is_shrunk_to_the_display_side_and_leaves_the_original():
    original = picture((1000, 500))
    small = display_copy(original)
    assert small.size == (DISPLAY_SIDE, 192) and original.size == (1000, 500)
    assert display_copy(picture((100, 50))).size == (100, 50)


def test_a_display_copy_is_smoothed_not_sampled():
    """Fine stripes shrunk to a third become grey, not a random pick of black or white columns."""
    stripes = Image.fromarray((np.indices((30, 1152))[1] % 2 * 255).astype(np.uint8)).convert("RGB")
    small = display_copy(stripes)
    assert small.size == (DISPLAY_SIDE, 10)
    assert all(60 <= small.getpixel((x, 5))[0] <= 195 for x in range(2, 380))


def test_the_colour_bar_is_a_fresh_copy_each_time():
    first = colorbar_image()
    first.putpixel((0, 0), (1, 2, 3))
    assert colorbar_image().getpixel((0, 0)) != (1, 2, 3)


def test_the_grid_is_drawn_for_the_chosen_word(grid_stand_in):
    maps = attention()
    grid_view(maps, picture(), "5:square")
    grid_view(maps, picture(), "5:circle")
    grid_view(maps, picture())
    assert [token for _, token in grid_stand_in] == [5, None, None]


def test_attention_view_defaults_to_the_first_layer_mean_of_heads_and_all_words():
    _, text = attention_view(attention(), picture())
    assert "**middle left**" in text and "Showing: first fusion layer (2), mean over heads, from all question words;" in text


def test_the_last_layer_is_the_last_of_several():
    cross = np.zeros((3, 1, 1, 3, 4))
    cross[1, 0, 0, 0, 0] = 1.0  # middle layer: top left
    cross[2, 0, 0, 2, 3] = 1.0  # last layer: bottom right
    maps = AttentionMaps(cross, ["red"], [2, 5, 8], (40, 30))
    _, text = attention_view(maps, picture((40, 30)), "last", "mean", "0:red", "attention")
    assert "**bottom right**" in text and "Showing: last fusion layer (8), mean over heads, from the word “red”; grid 3×4 patches." in text


@pytest.mark.parametrize("size, row, col, words", [
    (5, 1, 1, "top left"),  # patch centres at 0.3: inside the first third
    (5, 3, 3, "bottom right"),  # 0.7
    (7, 4, 4, "centre"),  # 0.64: inside the middle third
    (7, 2, 2, "centre"),  # 0.36
])
def test_the_thirds_of_the_picture_are_exact(size, row, col, words):
    cross = np.zeros((1, 1, 1, size, size))
    cross[0, 0, 0, row, col] = 1.0
    maps = AttentionMaps(cross, ["red"], [0], (70, 70))
    _, text = attention_view(maps, picture((70, 70)), "first", "mean", "0:red", "attention")
    assert f"looked most at the **{words}** of the picture" in text


@pytest.mark.parametrize("row, col, words", [
    (0, 0, "top left"), (0, 1, "top centre"), (0, 2, "top right"),
    (1, 0, "middle left"), (1, 1, "centre"), (1, 2, "middle right"),
    (2, 0, "bottom left"), (2, 1, "bottom centre"), (2, 2, "bottom right"),
])
def test_the_description_names_the_hottest_ninth(row, col, words):
    cross = np.zeros((1, 1, 1, 3, 3))
    cross[0, 0, 0, row, col] = 1.0
    maps = AttentionMaps(cross, ["red"], [0], (30, 30))
    _, text = attention_view(maps, picture((30, 30)), "first", "mean", "0:red", "attention")
    assert f"looked most at the **{words}** of the picture" in text
