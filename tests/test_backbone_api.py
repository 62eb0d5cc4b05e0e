"""The Backbone API (`vqa/backbones/base.py`) on a fake backbone that records what reaches it.

The public methods check their arguments, load the picture and clean the text once, time each head and
attach the loader's notes and the domain verdict; none of that depends on a real model, so a subclass
whose underscored methods answer from their inputs checks it in milliseconds.
"""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from PIL import Image

import vqa.backbones.base as base
from vqa.backbones.base import Backbone, _non_empty, image_notes
from vqa.errors import InputError, UnsupportedError
from vqa.image_io import ANIMATED_NOTE
from vqa.results import Answer, AttentionMaps, Caption, ModelInfo
from vqa.retrieval import GalleryIndex
from vqa.settings import MAX_GENERATED_SEQUENCES

EVERYTHING = ("classifier", "generative", "caption", "explain", "itm", "retrieval")
COLOUR_WORDS = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}


def _unit(vector) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    return vector / np.linalg.norm(vector)


class Recorder(Backbone):
    """Answers from its inputs and records every call of an underscored method."""

    family = "fake"

    def __init__(self, name="fake-model", capabilities=EVERYTHING, domain=(True, None), itm=None, quantization=None):
        super().__init__(name, quantization=quantization)
        self.capabilities = frozenset(capabilities)
        self.domain = domain
        #: ITM probability of (picture's dominant colour, text): defaults to 0.5 for everything
        self.itm = itm or {}
        self.calls: list[tuple[str, dict]] = []

    def info(self) -> ModelInfo:
        return ModelInfo(self.name, self.family, "a fake", {}, sorted(self.capabilities))

    def _domain(self, image, question):
        self.calls.append(("domain", dict(size=image.size, question=question)))
        return self.domain

    def _classify(self, image, question, top_k, candidates):
        self.calls.append(("classify", dict(size=image.size, mode=image.mode, question=question, top_k=top_k, candidates=candidates)))
        return Answer("yes", 0.75, [("yes", 0.75), ("no", 0.25)], "classifier", notes=["scored as statements"])

    def _generate_answer(self, image, question, **decoding):
        self.calls.append(("generate", dict(size=image.size, question=question, **decoding)))
        return Answer(f"said {question}", 0.5, [(f"said {question}", 0.5)], "generative", notes=["generated"])

    def _caption(self, image, **decoding):
        self.calls.append(("caption", dict(size=image.size, mode=image.mode, **decoding)))
        return Caption(f"a {image.size[0]}x{image.size[1]} picture", 0.25, [])

    def _explain(self, image, question, answer):
        self.calls.append(("explain", dict(size=image.size, question=question, answer=answer)))
        return AttentionMaps(np.full((1, 1, 1, 2, 2), 0.25), ["[CLS]"], [0], image.size)

    def _embed_images(self, images):
        self.calls.append(("embed_images", dict(sizes=[image.size for image in images], modes=[image.mode for image in images])))
        return np.stack([_unit(np.asarray(image, dtype=np.float32).reshape(-1, 3).mean(0) + 1e-3) for image in images])

    def _embed_text(self, texts):
        self.calls.append(("embed_text", dict(texts=list(texts))))
        return np.stack([_unit(np.sum([COLOUR_WORDS[w] for w in text.split() if w in COLOUR_WORDS] + [(1e-3,) * 3], axis=0))
                         for text in texts])

    def _match(self, images, texts):
        self.calls.append(("match", dict(sizes=[image.size for image in images], texts=list(texts))))
        return np.array([[self.itm.get((_colour(image), text), 0.5) for text in texts] for image in images])

    def called(self, what: str) -> list[dict]:
        return [arguments for name, arguments in self.calls if name == what]


class Bare(Backbone):
    """A subclass that implements only what it must: every capability it claims falls back to the base class."""

    family = "bare"
    capabilities = frozenset(EVERYTHING)

    def info(self) -> ModelInfo:
        return ModelInfo(self.name, self.family, "", {}, [])


def _colour(image: Image.Image) -> str:
    r, g, b = np.asarray(image.convert("RGB"), dtype=np.float32).reshape(-1, 3).mean(0)
    return {0: "red", 1: "green", 2: "blue"}[int(np.argmax([r, g, b]))]


def picture(colour="red", size=(8, 6)) -> Image.Image:
    return Image.new("RGB", size, colour)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def animated_gif() -> bytes:
    buffer = io.BytesIO()
    frames = [Image.new("RGB", (6, 4), "red"), Image.new("RGB", (6, 4), "blue")]
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue()


@pytest.fixture
def clock(monkeypatch):
    """perf_counter as seen by base.py: each reading is 0.25 s after the previous one."""
    ticks = itertools.count()
    monkeypatch.setattr(base.time, "perf_counter", lambda: 1000 + 0.25 * next(ticks))


# ----- answer --------------------------------------------------------------------------------------
def test_answer_returns_the_chosen_heads_answer():
    model = Recorder()
    assert model.answer(picture(), "is it red?").answer == "yes"
    assert model.answer(picture(), "is it red?", head="generative").answer == "said is it red?"


def test_answer_asks_only_the_chosen_head():
    model = Recorder()
    model.answer(picture(), "is it red?", head="generative")
    assert model.called("classify") == [] and len(model.called("generate")) == 1


def test_answer_refuses_a_head_the_model_lacks_by_name():
    with pytest.raises(UnsupportedError, match=r"^tiny-one has no generative head\.$"):
        Recorder("tiny-one", capabilities=("classifier",)).answer(picture(), "is it red?", head="generative")


def test_answer_refuses_an_unknown_head_with_the_choices():
    with pytest.raises(InputError, match=r"^Head must be one of classifier, generative, not 'caption'\.$"):
        Recorder().answer(picture(), "is it red?", head="caption")


def test_answer_passes_every_setting_on():
    model = Recorder()
    model.answer(picture(), "what?", head="generative", top_k=2, decoding="nucleus", num_beams=4, top_p=0.5,
                 temperature=0.7, max_new_tokens=3, seed=11)
    assert model.called("generate") == [dict(size=(8, 6), question="what?", top_k=2, decoding="nucleus", num_beams=4,
                                             top_p=0.5, temperature=0.7, max_new_tokens=3, seed=11)]
    model.answer(picture(), "what?", top_k=4, candidates=("yes", "no"))
    assert model.called("classify")[-1] == dict(size=(8, 6), mode="RGB", question="what?", top_k=4, candidates=["yes", "no"])


def test_answer_defaults_are_greedy_decoding_of_eight_tokens_with_seed_zero():
    model = Recorder()
    model.answer(picture(), "what?", head="generative")
    assert model.called("generate") == [dict(size=(8, 6), question="what?", top_k=5, decoding="greedy", num_beams=3,
                                             top_p=0.9, temperature=1.0, max_new_tokens=8, seed=0)]


@pytest.mark.parametrize("setting, value, message", [
    ("top_k", 0, "Top-k answers must be a whole number from 1 to 1000, not 0."),
    ("decoding", "sampling", "Decoding must be one of greedy, beam, nucleus, not 'sampling'."),
    ("num_beams", 9, "Beams must be a whole number from 1 to 8, not 9."),
    ("top_p", 0.0, "Top-p must be a number from 0.05 to 1, not 0."),
    ("temperature", 3.0, "Temperature must be a number from 0.1 to 2, not 3."),
    ("max_new_tokens", 17, "Max tokens must be a whole number from 1 to 16, not 17."),
    ("seed", -1, "Seed must be a whole number from 0 to 4294967295, not -1."),
    ("candidates", "yes", "Candidate answers must be a list of strings, not 'yes'."),
])
def test_answer_refuses_a_bad_setting_with_its_message(setting, value, message):
    model = Recorder()
    with pytest.raises(InputError) as excinfo:
        model.answer(picture(), "what?", **{setting: value})
    assert str(excinfo.value) == message
    assert model.calls == []


# ----- ask -----------------------------------------------------------------------------------------
def test_ask_answers_with_both_heads_from_one_cleaned_question():
    model = Recorder()
    answers = model.ask(png_bytes(picture(size=(10, 4))), "  is it\tred? \x00")
    assert answers.classifier.answer == "yes" and answers.generative.answer == "said is it red?"
    assert model.called("classify")[0]["question"] == "is it red?" and model.called("classify")[0]["size"] == (10, 4)


def test_ask_defaults_are_both_heads_top_five_and_greedy_decoding_with_seed_zero():
    model = Recorder()
    model.ask(picture(), "what?")
    assert model.called("classify")[0]["top_k"] == 5 and model.called("classify")[0]["candidates"] is None
    assert model.called("generate") == [dict(size=(8, 6), question="what?", top_k=5, decoding="greedy", num_beams=3,
                                             top_p=0.9, temperature=1.0, max_new_tokens=8, seed=0)]


def test_ask_leaves_a_missing_head_as_none():
    model = Recorder(capabilities=("generative",))
    answers = model.ask(picture(), "what?")
    assert answers.classifier is None and answers.generative.answer == "said what?"
    assert model.called("classify") == []


def test_ask_with_only_the_classifier_head_runs_no_decoder():
    model = Recorder(capabilities=("classifier",))
    answers = model.ask(picture(), "what?")
    assert answers.generative is None and answers.classifier.answer == "yes"
    assert model.called("generate") == []


def test_ask_refuses_when_none_of_the_heads_is_there():
    model = Recorder("captioner", capabilities=("caption",))
    with pytest.raises(UnsupportedError, match=r"^captioner cannot answer questions; it has no classifier or generative head\.$"):
        model.ask(picture(), "what?")
    with pytest.raises(UnsupportedError, match=r"^captioner cannot answer questions; it has no generative head\.$"):
        model.ask(picture(), "what?", heads=("generative",))


def test_ask_checks_every_head_name():
    with pytest.raises(InputError, match="Head must be one of classifier, generative, not 'vision'"):
        Recorder().ask(picture(), "what?", heads=("classifier", "vision"))


def test_ask_caps_the_generated_answers_but_not_the_classifiers():
    model = Recorder()
    model.ask(picture(), "what?", top_k=50)
    assert model.called("classify")[0]["top_k"] == 50
    assert model.called("generate")[0]["top_k"] == MAX_GENERATED_SEQUENCES
    model.ask(picture(), "what?", top_k=3)
    assert model.called("generate")[1]["top_k"] == 3


def test_ask_checks_inputs_before_loading_the_picture():
    """A bad setting is reported even when the picture is also missing: nothing is decoded for a refused call."""
    with pytest.raises(InputError, match="Top-k answers"):
        Recorder().ask(None, "what?", top_k=0)
    with pytest.raises(InputError, match="No image was given"):
        Recorder().ask(None, "")


def test_ask_refuses_a_bad_picture_or_question():
    with pytest.raises(InputError, match="No image was given"):
        Recorder().ask(None, "what?")
    with pytest.raises(InputError, match="Please type a question"):
        Recorder().ask(picture(), " ")


def test_ask_times_each_head(clock):
    answers = Recorder().ask(picture(), "what?")
    assert answers.classifier.latency_ms == pytest.approx(250.0)
    assert answers.generative.latency_ms == pytest.approx(250.0)


def test_ask_puts_the_loaders_notes_before_each_heads_own():
    answers = Recorder().ask(animated_gif(), "what?")
    assert answers.notes == [ANIMATED_NOTE]
    assert answers.classifier.notes == [ANIMATED_NOTE, "scored as statements"]
    assert answers.generative.notes == [ANIMATED_NOTE, "generated"]


def test_ask_without_loader_notes_keeps_only_the_heads_notes():
    answers = Recorder().ask(picture(), "what?")
    assert answers.notes == [] and answers.classifier.notes == ["scored as statements"]


def test_ask_marks_every_answer_outside_the_domain():
    model = Recorder(domain=(False, "That picture is a photograph."))
    answers = model.ask(picture(), "what?")
    for verdict in (answers, answers.classifier, answers.generative):
        assert (verdict.in_domain, verdict.domain_note) == (False, "That picture is a photograph.")
    assert model.called("domain") == [dict(size=(8, 6), question="what?")]


def test_ask_inside_the_domain_says_so():
    answers = Recorder().ask(picture(), "what?")
    assert (answers.in_domain, answers.domain_note) == (True, None)
    assert (answers.generative.in_domain, answers.generative.domain_note) == (True, None)


# ----- caption -------------------------------------------------------------------------------------
def test_caption_describes_the_loaded_picture_with_beam_search_by_default():
    model = Recorder()
    result = model.caption(png_bytes(picture(size=(12, 5))))
    assert result.text == "a 12x5 picture"
    assert model.called("caption") == [dict(size=(12, 5), mode="RGB", num_captions=1, prompt=None, decoding="beam",
                                            num_beams=3, top_p=0.9, temperature=1.0, max_new_tokens=40, seed=0)]


def test_caption_passes_every_setting_and_a_cleaned_prompt():
    model = Recorder()
    model.caption(picture(), decoding="nucleus", num_captions=5, num_beams=2, top_p=0.6, temperature=1.5,
                  max_new_tokens=12, prompt="  a picture\nof ", seed=None)
    assert model.called("caption") == [dict(size=(8, 6), mode="RGB", num_captions=5, prompt="a picture of", decoding="nucleus",
                                            num_beams=2, top_p=0.6, temperature=1.5, max_new_tokens=12, seed=None)]


def test_caption_allows_longer_output_than_answers():
    model = Recorder()
    with pytest.raises(InputError, match=r"^Max tokens must be a whole number from 1 to 16, not 40\.$"):
        model.answer(picture(), "what?", head="generative", max_new_tokens=40)
    model.caption(picture(), max_new_tokens=40)
    assert [call["max_new_tokens"] for call in model.called("caption")] == [40]  # what answer refused reached the captioner
    with pytest.raises(InputError, match=r"^Max tokens must be a whole number from 1 to 40, not 41\.$"):
        Recorder().caption(picture(), max_new_tokens=41)


@pytest.mark.parametrize("setting, value, message", [
    ("num_captions", 6, "Captions must be a whole number from 1 to 5, not 6."),
    ("decoding", "contrastive", "Decoding must be one of beam, nucleus, greedy, not 'contrastive'."),
    ("prompt", "...", "Please type a question. It needs at least one word."),
])
def test_caption_refuses_a_bad_setting_with_its_message(setting, value, message):
    with pytest.raises(InputError) as excinfo:
        Recorder().caption(picture(), **{setting: value})
    assert str(excinfo.value) == message


def test_caption_refuses_without_the_capability():
    with pytest.raises(UnsupportedError, match=r"^answerer cannot write captions\.$"):
        Recorder("answerer", capabilities=("classifier",)).caption(picture())


def test_caption_is_timed_noted_and_judged_on_the_picture_alone(clock):
    model = Recorder(domain=(False, "not a shapes picture"))
    result = model.caption(animated_gif())
    assert result.latency_ms == pytest.approx(250.0)
    assert result.notes == [ANIMATED_NOTE]
    assert (result.in_domain, result.domain_note) == (False, "not a shapes picture")
    assert model.called("domain") == [dict(size=(6, 4), question=None)]


# ----- explain -------------------------------------------------------------------------------------
def test_explain_maps_the_cleaned_question_and_the_given_answer():
    model = Recorder(domain=(False, "odd question"))
    maps = model.explain(png_bytes(picture(size=(9, 7))), " where\nis it? ", answer="left")
    assert model.called("explain") == [dict(size=(9, 7), question="where is it?", answer="left")]
    assert (maps.in_domain, maps.domain_note) == (False, "odd question")
    assert model.called("domain") == [dict(size=(9, 7), question="where is it?")]


def test_explain_without_an_answer_passes_none():
    model = Recorder()
    model.explain(picture(), "where?")
    assert model.called("explain")[0]["answer"] is None


def test_explain_refuses_without_the_capability():
    with pytest.raises(UnsupportedError, match=r"^plain cannot show attention maps\.$"):
        Recorder("plain", capabilities=("classifier",)).explain(picture(), "where?")


def test_explain_refuses_a_bad_picture():
    with pytest.raises(InputError, match="No image was given"):
        Recorder().explain(None, "where?")


# ----- embeddings and matching ---------------------------------------------------------------------
def test_embed_images_loads_each_picture():
    model = Recorder()
    vectors = model.embed_images([png_bytes(picture("red")), picture("blue", (5, 5))])
    assert vectors.shape == (2, 3) and np.argmax(vectors[0]) == 0 and np.argmax(vectors[1]) == 2
    assert model.called("embed_images") == [dict(sizes=[(8, 6), (5, 5)], modes=["RGB", "RGB"])]


def test_embed_images_takes_a_lone_picture_as_a_list_of_one():
    model = Recorder()
    assert model.embed_images(picture("green")).shape == (1, 3)


def test_embed_images_refuses_an_empty_list():
    with pytest.raises(InputError, match=r"^No images were given\.$"):
        Recorder().embed_images([])


def test_embed_text_cleans_each_text_and_takes_a_lone_string_whole():
    model = Recorder()
    assert model.embed_text("  a red\tthing ").shape == (1, 3)
    model.embed_text(("blue", "green"))
    assert model.called("embed_text") == [dict(texts=["a red thing"]), dict(texts=["blue", "green"])]


def test_embed_text_refuses_an_empty_list():
    with pytest.raises(InputError, match=r"^No texts were given\.$"):
        Recorder().embed_text([])


@pytest.mark.parametrize("method, arguments, message", [
    ("embed_images", ([picture()],), "m cannot embed pictures for search (it has no image-text contrastive head)."),
    ("embed_text", (["red"],), "m cannot embed texts for search (it has no image-text contrastive head)."),
    ("match", (picture(), "red"), "m cannot tell whether a text matches a picture (it has no image-text matching head)."),
    ("search", ("red", [picture()]), "m cannot search (it has no image-text contrastive head)."),
])
def test_retrieval_methods_refuse_without_their_head(method, arguments, message):
    model = Recorder("m", capabilities=("classifier",))
    with pytest.raises(UnsupportedError) as excinfo:
        getattr(model, method)(*arguments)
    assert str(excinfo.value) == message


def test_match_returns_the_probability_of_that_picture_with_that_text():
    model = Recorder(itm={("blue", "a blue square"): 0.875})
    probability = model.match(png_bytes(picture("blue")), " a blue\nsquare")
    assert probability == 0.875 and type(probability) is float
    assert model.called("match") == [dict(sizes=[(8, 6)], texts=["a blue square"])]


def test_embedding_space_names_family_and_model():
    assert Recorder("model-a").embedding_space() == "fake:model-a"
    assert Recorder("model-a").embedding_space() != Recorder("model-b").embedding_space()


# ----- search --------------------------------------------------------------------------------------
GALLERY_COLOURS = ("red", "green", "blue")


def test_search_by_text_finds_the_picture_it_names():
    model = Recorder()
    hits = model.search("blue", [picture(c) for c in GALLERY_COLOURS], top_k=1, rerank=False)
    assert [(hit.position, hit.rank_before_rerank, hit.itm_score) for hit in hits] == [(2, 1, None)]
    assert hits[0].itc_score == pytest.approx(1.0, abs=1e-2) and hits[0].path is None and hits[0].text is None


def test_search_returns_top_k_hits_best_first():
    hits = Recorder().search("a red and green thing", [picture(c) for c in GALLERY_COLOURS], top_k=3, rerank=False)
    assert sorted(hit.position for hit in hits[:2]) == [0, 1] and hits[2].position == 2
    assert [hit.rank_before_rerank for hit in hits] == [1, 2, 3]
    assert hits[0].itc_score >= hits[1].itc_score > hits[2].itc_score


def test_search_returns_ten_hits_by_default():
    gallery = [picture((10 * i, 0, 255 - 10 * i)) for i in range(12)]
    assert len(Recorder().search("blue", gallery, rerank=False)) == 10
    assert len(Recorder().search("blue", gallery)) == 10


def test_search_reranks_text_against_pictures_by_matching():
    """The ITM head reads each candidate picture with the query and its order wins over the embeddings'."""
    model = Recorder(itm={("red", "blue"): 0.9, ("blue", "blue"): 0.2, ("green", "blue"): 0.1})
    hits = model.search("blue", [picture(c) for c in GALLERY_COLOURS], top_k=2)
    assert [hit.position for hit in hits] == [0, 2]
    assert [hit.itm_score for hit in hits] == [0.9, 0.2]
    assert hits[0].rank_before_rerank > hits[1].rank_before_rerank == 1
    assert model.called("match") == [dict(sizes=[(8, 6)] * 3, texts=["blue"])]


def test_search_reranks_only_the_candidates_it_retrieved():
    model = Recorder(itm={("red", "blue"): 0.9, ("blue", "blue"): 0.2})
    hits = model.search("blue", [picture(c) for c in GALLERY_COLOURS], top_k=1, rerank_candidates=1)
    assert [hit.position for hit in hits] == [2]
    assert len(model.called("match")[0]["sizes"]) == 1


def test_search_reranks_at_least_top_k_candidates():
    model = Recorder(itm={("red", "blue"): 0.9})
    hits = model.search("blue", [picture(c) for c in GALLERY_COLOURS], top_k=3, rerank_candidates=1)
    assert len(hits) == 3 and hits[0].position == 0


def test_search_reranks_sixteen_candidates_by_default():
    model = Recorder()
    gallery = [picture((10 * i, 0, 255 - 10 * i)) for i in range(20)]
    model.search("blue", gallery, top_k=1)
    assert len(model.called("match")[0]["sizes"]) == 16


def test_search_ties_in_matching_keep_the_embedding_order():
    model = Recorder()
    hits = model.search("a red and blue thing", [picture(c) for c in ("green", "blue", "red")], top_k=3)
    assert [hit.rank_before_rerank for hit in hits] == [1, 2, 3]
    assert hits[2].position == 0


def test_search_without_a_matching_head_refuses_to_rerank_but_searches_without():
    model = Recorder("embedder", capabilities=("retrieval",))
    gallery = [picture(c) for c in GALLERY_COLOURS]
    with pytest.raises(UnsupportedError, match=r"^embedder has no image-text matching head to re-rank with; search with rerank=False\.$"):
        model.search("blue", gallery)
    assert [hit.position for hit in model.search("blue", gallery, top_k=1, rerank=False)] == [2]


def test_search_by_picture_in_pictures_is_never_reranked():
    model = Recorder("embedder", capabilities=("retrieval",))
    hits = model.search(picture("green"), [picture(c) for c in GALLERY_COLOURS], top_k=1, rerank=True)
    assert hits[0].position == 1 and hits[0].itm_score is None
    assert model.called("match") == []


def test_search_by_picture_in_texts_reranks_each_text_with_the_picture():
    model = Recorder(itm={("green", "a blue thing"): 0.75})
    texts = GalleryIndex.from_texts(model, ["a red thing", "a green thing", "a blue thing"])
    hits = model.search(png_bytes(picture("green")), texts, top_k=2)
    assert [(hit.text, hit.itm_score) for hit in hits] == [("a blue thing", 0.75), ("a green thing", 0.5)]
    assert model.called("match")[0]["sizes"] == [(8, 6)] and len(model.called("match")[0]["texts"]) == 3


def test_search_by_picture_in_texts_without_rerank_keeps_the_embedding_order():
    model = Recorder()
    texts = GalleryIndex.from_texts(model, ["a red thing", "a green thing", "a blue thing"])
    hits = model.search(picture("red"), texts, top_k=1, rerank=False)
    assert [(hit.text, hit.itm_score) for hit in hits] == [("a red thing", None)]


def test_search_cleans_a_text_query():
    model = Recorder()
    hits = model.search("  blue\x00 ", [picture(c) for c in GALLERY_COLOURS], top_k=1)
    assert hits[0].position == 2
    assert model.called("embed_text")[-1] == dict(texts=["blue"]) and model.called("match")[0]["texts"] == ["blue"]


def test_search_takes_a_lone_picture_as_a_gallery_of_one():
    hits = Recorder().search("red", picture("red"), rerank=False)
    assert [hit.position for hit in hits] == [0]


def test_search_in_a_gallery_with_paths_reports_each_hits_file(tmp_path):
    files = []
    for colour in GALLERY_COLOURS:
        path = tmp_path / f"{colour}.png"
        picture(colour).save(path)
        files.append(str(path))
    hits = Recorder().search("green", files, top_k=1)
    assert hits[0].path == files[1]


def test_search_refuses_an_index_of_another_model():
    gallery = GalleryIndex.from_images(Recorder("model-a"), [picture(c) for c in GALLERY_COLOURS])
    with pytest.raises(InputError, match="built with the model 'model-a'"):
        Recorder("model-b").search("red", gallery)


@pytest.mark.parametrize("settings, message", [
    (dict(top_k=0), "The number of hits must be a whole number from 1 to 100, not 0."),
    (dict(rerank_candidates=101), "The number of re-ranked candidates must be a whole number from 1 to 100, not 101."),
])
def test_search_refuses_bad_numbers(settings, message):
    with pytest.raises(InputError) as excinfo:
        Recorder().search("red", [picture()], **settings)
    assert str(excinfo.value) == message


# ----- what a subclass does not implement ----------------------------------------------------------
@pytest.mark.parametrize("call, message", [
    (lambda m: m.answer(picture(), "what?"), "bare has no classifier head."),
    (lambda m: m.answer(picture(), "what?", head="generative"), "bare has no generative head."),
    (lambda m: m.caption(picture()), "bare cannot write captions."),
    (lambda m: m.explain(picture(), "where?"), "bare cannot show attention maps."),
    (lambda m: m.embed_images([picture()]), "bare cannot embed pictures for search."),
    (lambda m: m.embed_text(["red"]), "bare cannot embed texts for search."),
    (lambda m: m.match(picture(), "red"), "bare cannot tell whether a text matches a picture."),
])
def test_a_capability_claimed_but_not_implemented_says_so(call, message):
    with pytest.raises(UnsupportedError) as excinfo:
        call(Bare("bare"))
    assert str(excinfo.value) == message


def test_a_model_without_its_own_domain_check_is_always_in_domain():
    model = Recorder()
    assert Backbone._domain(model, picture(), "what?") == (True, None)


def test_defaults_hold_no_memory_and_an_evaluation_names_the_model_and_its_quantization(tmp_path):
    """A backbone without weights of its own reports none; an evaluation report says which model, at which
    quantization, it measured (none unless one was given)."""
    from vqa.data.splits import export_jsonl
    from vqa.evaluation import evaluate

    assert Bare("bare", quantization="int8").memory_bytes() == 0
    data = export_jsonl("test", tmp_path, num_scenes=1, image_size=32)
    report = evaluate(Recorder("answerer", capabilities=("classifier",), quantization="int8"), data=str(data))
    assert (report["model"], report["quantization"]) == ("answerer", "int8") and report["questions"] > 0
    assert evaluate(Recorder("plain", capabilities=("classifier",)), data=str(data))["quantization"] is None


# ----- helpers -------------------------------------------------------------------------------------
def test_non_empty_takes_lists_tuples_and_lone_items():
    assert _non_empty((1, 2), "things") == [1, 2]
    assert _non_empty("abc", "things") == ["abc"]
    with pytest.raises(InputError, match=r"^No things were given\.$"):
        _non_empty((), "things")


def test_image_notes_reads_the_loaders_note():
    image = picture()
    assert image_notes(image) == []
    image.info["vqa_note"] = ANIMATED_NOTE
    assert image_notes(image) == [ANIMATED_NOTE]
    image.info["vqa_note"] = ""
    assert image_notes(image) == []
