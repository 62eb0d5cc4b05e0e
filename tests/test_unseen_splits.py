"""The held-out splits beyond the generator: `unseen_phrasing` (other wordings) and `unseen_style` (another
drawing routine). Deterministic, never a wording the training generator can produce, answers by the
vocabulary's rules, and pictures that still show what the answers say."""

from __future__ import annotations

import re

import numpy as np
import pytest

from vqa.data.questions import FAMILIES, TEMPLATES
from vqa.data.splits import SPLIT_SCENES, UNSEEN_SPLITS, make_example
from vqa.data.unseen_phrasing import COUNT_CHECK_PHRASINGS, NUMBER_WORDS, ONE_CHECK_PHRASINGS, PHRASINGS, SINGLE_OBJECT_PHRASINGS
from vqa.data.unseen_style import BACKGROUNDS, SHADES, STRONGER_LIGHTNESS
from vqa.data.wordings import NUMBERS, all_wordings
from vqa.data.vocabulary import COLOR_NAMES, colour_name, FAMILY_ANSWER_KIND, SHAPES, SIZES, answer_kind, answer_vocabulary

SCENES = 150


def _phrase_pattern() -> str:
    """Any phrase the generator puts into a template: optional article, size, colour, then a noun."""
    colours, shapes, sizes = "|".join(COLOR_NAMES), "|".join(SHAPES), "|".join(SIZES)
    nouns = f"(?:{shapes}|shape|object|thing)s?"
    return rf"(?:an? )?(?:(?:{sizes}) )?(?:(?:{colours}) )?{nouns}"


def generator_patterns() -> list[re.Pattern]:
    """Every wording training can produce (the generator's templates and the re-wording grammar's), as one
    regular expression per template."""
    phrase = _phrase_pattern()
    fills = {"{a}": phrase, "{d}": phrase, "{r}": phrase, "{p}": phrase, "{side}": "(?:left|right)",
             "{n}": f"(?:{'|'.join(NUMBERS)}|\\d+)", "{o}": "(?:shape|object|thing)"}
    patterns = []
    for templates in [*TEMPLATES.values(), all_wordings()]:
        for template in templates:
            pattern = re.escape(template)
            for slot, fill in fills.items():
                pattern = pattern.replace(re.escape(slot), fill)
            patterns.append(re.compile(f"^{pattern}$"))
    return patterns


def test_the_generator_patterns_recognise_the_generators_own_questions():
    """The check below can fail: every question of the training generator matches one of the patterns."""
    patterns = generator_patterns()
    for index in range(SCENES):
        for question in make_example("test", index).questions:
            assert any(p.match(question.text) for p in patterns), question.text


def test_no_unseen_wording_is_one_the_generator_produces():
    patterns = generator_patterns()
    for index in range(SCENES):
        for question in make_example("unseen_phrasing", index).questions:
            text = " ".join(question.text.lower().split())
            assert not any(p.match(text) for p in patterns), question.text


def test_at_least_ten_new_wordings_per_family_and_everyday_forms():
    for family in FAMILIES:
        assert len(PHRASINGS[family]) >= 10, family
    asked = [q.text for index in range(300) for q in make_example("unseen_phrasing", index).questions]
    assert "what shape is present?" in asked and "shape?" in asked  # single-object scenes, nothing named
    assert any(re.match(r"^are there (two|three|four|five) ", text) for text in asked)  # counting as yes/no
    assert any(text.startswith("any ") for text in asked)


def test_splits_are_deterministic_and_held_out():
    for split in UNSEEN_SPLITS:
        first, again = make_example(split, 7), make_example(split, 7)
        assert [q.text for q in first.questions] == [q.text for q in again.questions]
        assert first.image.tobytes() == again.image.tobytes()
        assert SPLIT_SCENES[split] >= 500
    test_scenes = {str(make_example("test", i).scene.to_dict()["objects"]) for i in range(50)}
    assert not test_scenes & {str(make_example("unseen_phrasing", i).scene.to_dict()["objects"]) for i in range(50)}


@pytest.mark.parametrize("split", UNSEEN_SPLITS)
def test_answers_are_in_the_vocabulary_and_of_the_kind_the_family_asks_for(split):
    vocabulary = set(answer_vocabulary())
    for index in range(SCENES):
        for question in make_example(split, index).questions:
            assert question.answer in vocabulary
            assert answer_kind(question.answer) == FAMILY_ANSWER_KIND[question.family], (question.text, question.answer)


def test_counting_asked_as_yes_or_no_is_answered_by_recounting_the_scene():
    """"are there two red circles?" is yes exactly when the picture has two of them, counted here from the scene."""
    number = {word: n for n, word in enumerate(NUMBER_WORDS)}
    checked = 0
    for index in range(300):
        example = make_example("unseen_phrasing", index)
        for question in example.questions:
            claim = re.match(r"^(?:are there (?:exactly )?|do you see (?:exactly )?|is there exactly |just )?(zero|one|two|three|four|five|six|seven|\d+) (.+)\?$", question.text)
            if question.family != "exist" or claim is None:
                continue
            words = claim.group(2).split()
            colour = next((w for w in words if w in COLOR_NAMES), None)
            shape = next((s for s in SHAPES if words[-1] in (s, s + "s")), None)
            present = sum(1 for o in example.scene.objects if (colour is None or o.color == colour) and (shape is None or o.shape == shape))
            claimed = number.get(claim.group(1), None)
            claimed = int(claim.group(1)) if claimed is None else claimed
            assert question.answer == ("yes" if present == claimed else "no"), (question.text, question.answer, present)
            checked += 1
    assert checked >= 20
    assert all("{" in p for p in COUNT_CHECK_PHRASINGS + ONE_CHECK_PHRASINGS)
    assert set(SINGLE_OBJECT_PHRASINGS) <= set(FAMILIES)


def test_other_style_pictures_vary_size_shape_and_background():
    sizes, backgrounds = set(), set()
    for index in range(60):
        image = make_example("unseen_style", index).image
        width, height = image.size
        assert 48 <= min(width, height) and max(width, height) <= 256
        sizes.add(round(width / height, 1))
        corners = [image.getpixel(xy) for xy in ((0, 0), (width - 1, 0), (0, height - 1), (width - 1, height - 1))]
        backgrounds.add(max(set(corners), key=corners.count))
    assert len(sizes) >= 5  # elongated both ways and nearly square
    assert backgrounds <= set(BACKGROUNDS) and len(backgrounds) >= 4


def test_other_style_boxes_hold_the_shapes_where_they_were_drawn():
    """Pointing on `unseen_style` is checked against each object's box: the boxes must follow the split's own
    placing (objects pushed towards the border) and its elongated pages: every drawn pixel lies in one, and
    they are not much larger than the shapes (a box measured on a square page is too wide on a wide one)."""
    outside, drawn, boxed, elongated = 0, 0, 0, 0
    for index in range(40):
        example = make_example("unseen_style", index)
        pixels = np.asarray(example.image, dtype=np.int16)
        height, width, _ = pixels.shape
        elongated += abs(width / height - 1) > 0.2
        background = np.asarray(example.scene.background, dtype=np.int16)
        painted = np.abs(pixels - background).max(-1) > 40  # (H, W): clearly not the page
        covered = np.zeros_like(painted)
        for i in range(len(example.scene.objects)):
            x0, y0, x1, y1 = example.scene.page_box(i)
            margin = 2  # px: outlines and anti-aliasing
            covered[max(0, int(y0 * height) - margin): int(y1 * height) + margin + 1, max(0, int(x0 * width) - margin): int(x1 * width) + margin + 1] = True
        outside += int((painted & ~covered).sum())
        drawn += int(painted.sum())
        boxed += int(covered.sum())
    assert elongated >= 10
    assert outside <= 0.01 * drawn, (outside, drawn)
    assert boxed <= 2.4 * drawn, boxed / drawn  # 2.2 for these scenes; square-page boxes give 2.6


def test_every_shade_is_nearest_to_its_own_colour_name_even_lightened_or_darkened():
    """The other style's shades stay unambiguous: lighter or darker by its largest shift, each still looks
    closer (CIELAB) to the colour it is named after than to any other colour of the vocabulary."""
    assert set(SHADES) == set(COLOR_NAMES)
    for name, shades in SHADES.items():
        for shade in shades:
            for shift in (-STRONGER_LIGHTNESS, 0, STRONGER_LIGHTNESS):
                seen = colour_name(np.clip(np.array(shade, dtype=float) + shift, 0, 255))
                assert seen == name, (name, shade, shift, seen)


def test_evaluation_counts_answers_of_the_wrong_kind():
    """A model that answers "yes" to everything: its wrong answers to colour, count and shape questions are of
    the wrong kind; a wrong "yes" to a yes/no question is wrong but of the right kind."""
    from types import SimpleNamespace

    from PIL import Image

    from vqa.evaluation import evaluate_records

    class SaysYes:
        capabilities = frozenset({"classifier"})

        def answer(self, image, question, head):
            return SimpleNamespace(answer="yes", in_domain=True)

    picture = Image.new("RGB", (32, 32), "white")
    records = [{"image": picture, "question": q, "answers": [a], "family": f} for q, a, f in [
        ("is there a circle?", "no", "exist"), ("is there a square?", "yes", "exist"), ("what color is the star?", "red", "color"),
        ("how many stars are there?", "2", "count"), ("what shape is the red thing?", "star", "shape"),
    ]]
    report = evaluate_records(SaysYes(), records, heads=("classifier",), pointing=False, captions=False)
    assert report["classifier_accuracy"] == 0.2
    assert report["classifier_wrong_kind_rate"] == 0.6
    assert answer_kind(" Yes ") == "yes/no" and answer_kind("hexagon") == "shape" and answer_kind("maybe") is None


def test_a_persons_other_words_for_an_answer_are_accepted_and_keep_their_kind():
    from vqa.evaluation import answer_accuracy

    assert answer_accuracy("Grey.", ["gray"]) == 1.0 and answer_accuracy("big", ["large"]) == 1.0
    assert answer_accuracy("two", ["2"]) == 1.0 and answer_accuracy("the little one", ["small"]) == 0.0
    assert answer_accuracy("circle", ["ellipse"]) == 0.0 and answer_accuracy("rectangle", ["square"]) == 0.0
    assert answer_kind("grey") == "colour" and answer_kind("big") == "size" and answer_kind("three") == "number"
