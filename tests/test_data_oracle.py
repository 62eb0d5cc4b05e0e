"""Every generated answer, re-derived from the scene by an independent oracle that reads the question's words.

The oracle shares no code with the generator: it finds the colour, shape and size words in the
question, decides negation from the words "no", "not", "without" and "missing", and answers from
the scene's ground-truth objects. A generator that mislabels any family (a negated question
labelled as the plain one, a count off by one, the wrong side in a spatial question) fails here.
"""

from __future__ import annotations

import re

import pytest

from vqa.data.splits import make_example
from vqa.data.vocabulary import COLOR_NAMES, SHAPES, SIZES

NEGATIONS = {"no", "not", "without", "missing"}
PLURALS = {shape + "s": shape for shape in SHAPES}


def oracle(scene, text: str, family: str) -> str:
    """The answer to `text` about `scene`, from the question's words and the objects alone."""
    words = re.findall(r"[a-z]+", text.lower())
    colors = [w for w in words if w in COLOR_NAMES]
    shapes = [PLURALS.get(w, w) for w in words if PLURALS.get(w, w) in SHAPES]
    sizes = [w for w in words if w in SIZES] if family != "size" else []  # "large or small?" is the size template's own
    assert len(colors) <= 1 and len(shapes) <= 1 and len(sizes) <= 1, text

    def named(obj) -> bool:
        return all(getattr(obj, attribute) == value[0] for attribute, value in (("color", colors), ("shape", shapes), ("size", sizes)) if value)

    matching = [obj for obj in scene.objects if named(obj)]
    if family in ("exist", "not_exist"):
        negated = bool(NEGATIONS & set(words))
        return "yes" if bool(matching) != negated else "no"
    if family == "count":
        return str(len(matching))
    assert len(matching) == 1, f"{text!r} names {len(matching)} objects"
    (obj,) = matching
    if family in ("color", "shape", "size"):
        return getattr(obj, family)
    side = "left" if "left" in words else "right"
    beside = [o for o in scene.objects if (o.x < obj.x if side == "left" else o.x > obj.x)]
    assert len(beside) == 1, f"{text!r}: {len(beside)} objects {side} of the anchor"
    return getattr(beside[0], "color" if family == "spatial_color" else "shape")


@pytest.mark.parametrize("split", ["train", "val", "test", "compositional"])
def test_every_answer_of_every_family_agrees_with_the_oracle(split):
    checked = {}
    for index in range(200):
        example = make_example(split, index, image_size=32)
        for question in example.questions:
            assert oracle(example.scene, question.text, question.family) == question.answer, (split, index, question)
            checked[question.family] = checked.get(question.family, 0) + 1
    assert set(checked) == {"exist", "not_exist", "color", "shape", "size", "count", "spatial_color", "spatial_shape"}
    assert min(checked.values()) >= 30, checked


def test_the_oracle_reads_negation_and_sides():
    """The oracle itself, on a scene whose answers are known."""
    example = make_example("test", 0, image_size=32)
    first = example.scene.objects[0]
    assert oracle(example.scene, f"is there a {first.color} {first.shape}?", "exist") == "yes"
    assert oracle(example.scene, f"is there no {first.color} {first.shape}?", "not_exist") == "no"
    absent = next(s for s in SHAPES if all(o.shape != s for o in example.scene.objects))
    assert oracle(example.scene, f"is the picture without a {absent}?", "not_exist") == "yes"
    assert oracle(example.scene, "how many shapes are there?", "count") == str(len(example.scene.objects))
