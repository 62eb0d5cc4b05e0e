"""Training's augmentations: questions in other words (vqa/data/wordings.py) and pictures in another look
(vqa/data/style_augmentation.py). Answers stay true, grounding still finds the words that name objects,
colours keep their names, and with both shares at zero the training data is the generator's own."""

from __future__ import annotations

import re

import numpy as np

from vqa.data.scenes import render, render_object_map
from vqa.data.splits import make_example
from vqa.data.style_augmentation import vary_style
from vqa.data.vocabulary import COLOR_NAMES, FAMILY_ANSWER_KIND, SHAPES, answer_kind, colour_name
from vqa.data.wordings import FRAMES, NUMBERS, all_wordings, expand

SCENES = 200


def _reworded(index: int):
    return make_example("train", index, reworded_share=1.0)


def test_frames_expand_into_every_combination_of_their_alternatives():
    assert expand("[what|which] colour is it[| here]?") == ("what colour is it?", "what colour is it here?",
                                                            "which colour is it?", "which colour is it here?")
    assert expand("how many {p}?") == ("how many {p}?",)
    assert len(all_wordings()) >= 10 * len(FRAMES)


def test_reworded_questions_keep_the_answer_and_the_kind_of_answer_their_family_asks_for():
    changed = 0
    for index in range(SCENES):
        plain, reworded = make_example("train", index), _reworded(index)
        for before, after in zip(plain.questions, reworded.questions, strict=True):
            assert after.family == before.family
            assert answer_kind(after.answer) == FAMILY_ANSWER_KIND[after.family], (after.text, after.answer)
            if not re.search(r"\b(?:%s|\d+)\b" % "|".join(NUMBERS), after.text) or after.family != "exist":
                assert after.answer == before.answer, (before.text, after.text)
            changed += after.text != before.text
    assert changed > SCENES * 4  # most questions are worded otherwise


def test_counting_checks_are_answered_by_recounting_the_scene():
    """"are there two red circles?" is yes exactly when the scene has two red circles, counted here."""
    number = {word: n for n, word in enumerate(NUMBERS)}
    answers = []
    for index in range(SCENES):
        example = _reworded(index)
        for question in example.questions:
            claim = re.search(r"(?<!at least )\b(?:exactly |only )?(%s|\d+) ((?:\w+ )?\w+?)(?: in the \w+)?\?$" % "|".join(NUMBERS), question.text)
            if question.family != "exist" or claim is None:
                continue
            words = claim.group(2).split()
            colour = next((w for w in words if w in COLOR_NAMES), None)
            shape = next((s for s in SHAPES if words[-1] in (s, s + "s")), None)
            present = sum(1 for o in example.scene.objects if (colour is None or o.color == colour) and (shape is None or o.shape == shape))
            claimed = number.get(claim.group(1))
            claimed = int(claim.group(1)) if claimed is None else claimed
            assert question.answer == ("yes" if present == claimed else "no"), (question.text, question.answer, present)
            answers.append(question.answer)
    assert len(answers) >= 30
    assert 0.3 <= answers.count("yes") / len(answers) <= 0.7  # a check is not answered by its form alone


def test_the_words_that_name_objects_are_in_the_reworded_question():
    """Grounding aligns the phrase's words with the objects it names, so the phrase must be in the text."""
    for index in range(SCENES):
        for question in _reworded(index).questions:
            if question.phrase:
                assert question.phrase in question.text, (question.phrase, question.text)
            else:
                assert question.phrase_objects == ()


def test_scenes_of_one_object_are_sometimes_asked_without_naming_it():
    nameless = [q.text for index in range(SCENES) for q in _reworded(index).questions
                if q.phrase is None and q.family in ("color", "shape", "size")]
    assert nameless and all(not any(c in text.split() for c in COLOR_NAMES) for text in nameless)


def test_augmentations_off_give_the_generators_own_example():
    for index in range(20):
        plain, off = make_example("train", index), make_example("train", index, reworded_share=0.0, restyled_share=0.0)
        assert [q.text for q in plain.questions] == [q.text for q in off.questions]
        assert np.array_equal(np.asarray(plain.image), np.asarray(off.image))


def test_restyled_pictures_keep_shapes_places_and_colour_names_and_change_the_look():
    looks = set()
    turned = []  # degrees each shape was turned by
    for index in range(60):
        example = make_example("train", index)
        styled = vary_style(example.scene, np.random.default_rng(index))
        assert [(o.shape, o.size, o.x, o.y) for o in styled.objects] == [(o.shape, o.size, o.x, o.y) for o in example.scene.objects]
        assert all(colour_name(o.rgb) == o.color for o in styled.objects)
        # turned, every shape keeps its area (its size) and stays whole on the page
        before, after = render_object_map(example.scene, 192), render_object_map(styled, 192)
        for k, obj in enumerate(styled.objects, start=1):
            assert abs((after == k).sum() / (before == k).sum() - 1) < 0.12, (index, obj.shape)
            turned.append(abs((obj.rotation - example.scene.objects[k - 1].rotation + 180) % 360 - 180))
        edges = np.concatenate([after[0], after[-1], after[:, 0], after[:, -1]])
        assert not edges.any()
        picture = np.asarray(render(styled, 96), dtype=float)
        assert np.abs(picture - np.asarray(example.image, dtype=float)).mean() > 1.0
        corner = tuple(picture[0, 0].astype(int))
        assert corner == styled.background  # a plain page: no tint noise
        looks.add((styled.outline, styled.smooth, styled.background == (255, 255, 255)))
    assert len(looks) >= 8  # every edge, with and without anti-aliasing, white and pale pages
    assert np.mean(np.asarray(turned) > 30) > 0.5  # most shapes stand at angles the generator never draws


def test_a_share_of_the_training_pictures_is_restyled():
    restyled = sum(
        not np.array_equal(np.asarray(make_example("train", i).image), np.asarray(make_example("train", i, restyled_share=0.5).image))
        for i in range(60)
    )
    assert 15 <= restyled <= 45


def test_a_restyled_example_carries_the_scene_as_drawn_so_its_targets_match_its_picture():
    """Grounding and patch targets are drawn from `example.scene`: for a turned shape they must be the turned one."""
    for index in range(20):
        example = make_example("train", index, restyled_share=1.0)
        assert np.array_equal(np.asarray(render(example.scene, 96)), np.asarray(example.image))
