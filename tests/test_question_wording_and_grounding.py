"""The generated questions read as English, never give their answer away, ask what their family says, and
name (in `phrase` / `phrase_objects` / `referent` / `relation`) exactly the objects their words describe:
what grounding is trained on and pointing accuracy is measured against (vqa/data/questions.py).
tests/test_data_oracle.py checks the answers; these check everything else about a question."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from vqa.data.questions import FAMILIES, TEMPLATES, answer_balance, ask, ask_exist
from vqa.data.scenes import sample_scene
from vqa.data.vocabulary import COLOR_NAMES, HELD_OUT_PAIRS, SHAPE_PLURALS, SHAPES, SIZES

NOUNS = {"object", "thing", "shape"}
PLURAL_NOUNS = {"objects", "things", "shapes"}
TEMPLATE_WORDS = {w for texts in TEMPLATES.values() for t in texts for w in re.findall(r"[a-z]+", re.sub(r"\{\w+\}", "", t))}
VOCABULARY = TEMPLATE_WORDS | set(COLOR_NAMES) | set(SHAPES) | set(SHAPE_PLURALS.values()) | set(SIZES) | NOUNS | PLURAL_NOUNS | {"a", "an", "left", "right"}


@pytest.fixture
def asked():
    """(scene, question) for every family over 300 scenes of the training distribution. Built for each test
    (a tenth of a second), not once per module: mutation testing credits a shared fixture to its first test only."""
    rng = np.random.default_rng(2024)
    pairs = []
    for _ in range(300):
        scene = sample_scene(rng, allow_pairs="train")
        for family in FAMILIES:
            question = ask(scene, rng, family)
            if question is not None:
                pairs.append((scene, question))
    return pairs


def words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z_]+", text)


def named_by(scene, phrase: str) -> tuple[int, ...]:
    """The objects a phrase's colour, shape and size words describe ("shapes", "objects", "things": all)."""
    ws = words(phrase)
    colors = [w for w in ws if w in COLOR_NAMES]
    shapes = [w for w in ws if w in SHAPES] + [s for s, p in SHAPE_PLURALS.items() if p in ws]
    sizes = [w for w in ws if w in SIZES]
    return tuple(i for i, o in enumerate(scene.objects)
                 if all(getattr(o, attribute) == value[0] for attribute, value in (("color", colors), ("shape", shapes), ("size", sizes)) if value))


def test_asking_for_a_family_gives_a_question_of_that_family(asked):
    assert Counter(q.family for _, q in asked).keys() == set(FAMILIES)
    rng = np.random.default_rng(0)
    scene = sample_scene(rng)
    for family in FAMILIES:
        for _ in range(5):
            question = ask(scene, rng, family)
            assert question is None or question.family == family
    assert ask(scene, rng, "not_exist").answer in ("yes", "no")
    assert all(ask_exist(scene, rng).family == "exist" for _ in range(5))  # not negated unless asked
    with pytest.raises(ValueError, match="unknown family 'colour'"):
        ask(scene, rng, "colour")


def test_every_word_of_every_question_is_lowercase_english_from_the_vocabulary(asked):
    for _, question in asked:
        unknown = [w for w in words(question.text) if w not in VOCABULARY]
        assert not unknown, question.text


def test_a_and_an_agree_with_the_next_word(asked):
    for _, question in asked:
        for article, word in re.findall(r"\b(a|an) ([a-z]+)", question.text):
            assert article == ("an" if word[0] in "aeiou" else "a"), question.text
    an_questions = [q.text for _, q in asked if re.search(r"\ban (orange|ellipse)", q.text)]
    assert an_questions, "no question named an orange thing or an ellipse"


def test_the_phrase_never_gives_the_answer_away(asked):
    for _, question in asked:
        phrase = set(words(question.phrase or ""))
        if question.family == "color":
            assert not phrase & set(COLOR_NAMES), question
        elif question.family == "shape":
            assert not phrase & (set(SHAPES) | {"shape"}), question  # not "what shape is the red shape?"
        elif question.family == "size":
            assert not phrase & set(SIZES), question


def test_an_object_phrase_ends_in_its_one_noun(asked):
    for _, question in asked:
        if question.family in ("color", "shape", "size", "spatial_color", "spatial_shape"):
            phrase = words(question.phrase)
            assert phrase[-1] in set(SHAPES) | NOUNS and sum(w in set(SHAPES) | NOUNS for w in phrase) == 1, question


def test_the_phrase_is_in_the_question_and_names_exactly_its_objects(asked):
    for scene, question in asked:
        assert question.phrase and question.phrase in question.text, question
        named = named_by(scene, question.phrase)
        if question.family in ("exist", "not_exist", "count"):
            assert question.phrase_objects == named, question
        else:
            assert len(named) == 1 and question.phrase_objects == named, question


def test_the_referent_is_the_object_the_answer_is_about(asked):
    for scene, question in asked:
        if question.family in ("color", "shape", "size"):
            assert (question.referent,) == question.phrase_objects
            assert getattr(scene.objects[question.referent], question.family) == question.answer
            assert question.relation is None
        elif question.family.startswith("spatial"):
            (anchor,) = question.phrase_objects
            assert question.relation in ("left", "right") and f" {question.relation} " in f" {question.text} ", question
            side = [i for i, o in enumerate(scene.objects)
                    if (o.x < scene.objects[anchor].x if question.relation == "left" else o.x > scene.objects[anchor].x)]
            assert side == [question.referent], question
        elif question.family == "count":
            assert question.referent is None


def test_an_existence_question_points_at_the_object_only_when_it_names_colour_and_shape_and_it_is_there(asked):
    pointed = 0
    for scene, question in asked:
        if question.family not in ("exist", "not_exist"):
            continue
        present = bool(question.phrase_objects)
        assert question.answer == ("yes" if present != (question.family == "not_exist") else "no"), question
        both = any(w in COLOR_NAMES for w in words(question.phrase)) and any(w in SHAPES for w in words(question.phrase))
        if present and both:
            assert question.referent in question.phrase_objects, question
            pointed += 1
        else:
            assert question.referent is None, question
    assert pointed >= 50


@pytest.mark.parametrize("family", ["exist", "count"])
def test_existence_and_counting_name_a_colour_a_shape_or_both(asked, family):
    """A model never asked "is there a circle?" or "how many red things?" cannot answer them, nor say
    "no" or "0" to them when nothing of the kind is there."""
    kinds, absent = Counter(), Counter()
    for _, question in asked:
        if question.family.removeprefix("not_") != family:
            continue
        ws = words(question.phrase)
        color = any(w in COLOR_NAMES for w in ws)
        shape = any(w in SHAPES or w in SHAPE_PLURALS.values() for w in ws)
        kind = "both" if color and shape else "colour" if color else "shape" if shape else "all"
        kinds[kind] += 1
        absent[kind] += not question.phrase_objects
    expected = {"both", "colour", "shape", "all"} if family == "count" else {"both", "colour", "shape"}
    assert set(kinds) == expected and min(kinds.values()) >= 10, kinds
    assert all(absent[kind] >= 10 for kind in expected - {"all"}), absent


def test_questions_about_absent_things_never_name_a_held_out_pair(asked):
    for _, question in asked:
        ws = words(question.phrase)
        named = {(c, s) for c in COLOR_NAMES if c in ws for s in SHAPES if s in ws or SHAPE_PLURALS[s] in ws}
        assert not named & HELD_OUT_PAIRS, question


def test_zero_is_a_common_counting_answer(asked):
    answers = Counter(q.answer for _, q in asked if q.family == "count")
    assert answers["0"] >= 0.05 * sum(answers.values()), answers


def test_answer_balance_counts_each_answer(asked):
    questions = [q for _, q in asked if q.family == "exist"]
    balance = answer_balance(questions)
    assert set(balance) == {"yes", "no"} and sum(balance.values()) == len(questions)
