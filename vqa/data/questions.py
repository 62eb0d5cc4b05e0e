"""Question families, each with paraphrase templates, and their ground-truth answers.

Every family returns a `Question` (text, answer, family, referent). `referent`
is the index of the one object the question is about, when there is one: that is
what pointing accuracy checks the model's attention against.
Yes/no families are sampled 50/50 by construction (choose the answer first,
then build a question that has it).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from vqa.data.scenes import Scene
from vqa.data.vocabulary import COLOR_NAMES, HELD_OUT_PAIRS, MAX_OBJECTS, SHAPE_PLURALS, SHAPES


@dataclass
class Question:
    text: str
    answer: str
    family: str
    referent: int | None = None  # index into scene.objects
    phrase: str | None = None  # the words in `text` that name an object ("red circle", "square")
    # Every object that phrase names: the referent, a spatial question's anchor, all the objects an
    # existence or counting question describes. Empty when the phrase names nothing in the scene
    # ("is there a star?" with no star): grounding then teaches its words to find no region.
    phrase_objects: tuple[int, ...] = ()
    relation: str | None = None  # a spatial question's side word ("left", "right"): it points from the anchor to the referent


TEMPLATES: dict[str, list[str]] = {
    "exist": [
        "is there {a}?",
        "does the image contain {a}?",
        "can you see {a}?",
        "is {a} present?",
        "do you see {a} in the picture?",
        "is there any {d} in the image?",
    ],
    "not_exist": [
        "is there no {d}?",
        "does the image not contain {a}?",
        "is it true that there is no {d}?",
        "is the picture without {a}?",
        "is there not a single {d}?",
        "is the {d} missing from the image?",
    ],
    "color": [
        "what color is the {r}?",
        "what is the color of the {r}?",
        "which color does the {r} have?",
        "the {r} is what color?",
        "tell me the color of the {r}.",
        "what colour is the {r}?",
    ],
    "shape": [
        "what shape is the {r}?",
        "what is the shape of the {r}?",
        "which shape is the {r}?",
        "the {r} has what shape?",
        "what kind of shape is the {r}?",
        "tell me the shape of the {r}.",
    ],
    "count": [
        "how many {p} are there?",
        "how many {p} can you see?",
        "what is the number of {p}?",
        "count the {p}.",
        "how many {p} does the image show?",
        "how many {p} are in the picture?",
    ],
    "spatial_color": [
        "what color is the shape {side} of the {r}?",
        "what is the color of the object {side} of the {r}?",
        "the thing {side} of the {r} is what color?",
        "which color is the shape to the {side} of the {r}?",
        "tell me the color of the object to the {side} of the {r}.",
    ],
    "spatial_shape": [
        "what shape is {side} of the {r}?",
        "what is the shape of the object {side} of the {r}?",
        "which shape is to the {side} of the {r}?",
        "the thing {side} of the {r} has what shape?",
        "tell me the shape of the object to the {side} of the {r}.",
    ],
    "size": [
        "what size is the {r}?",
        "is the {r} large or small?",
        "how big is the {r}?",
        "is the {r} big or small?",
        "what is the size of the {r}?",
        "is the {r} small or large?",
    ],
}
FAMILIES = tuple(TEMPLATES)
# Families whose answer is about one object: the ones pointing accuracy is measured on.
SINGLE_REFERENT_FAMILIES = ("color", "shape", "size", "spatial_color", "spatial_shape")


def _choice(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _unique_reference(scene: Scene, index: int, rng, exclude: str) -> str | None:
    """The shortest phrase that names object `index` and nothing else in the scene.

    `exclude` is the attribute the question asks about ("color", "shape" or "size"),
    which the reference must not give away.
    """
    target = scene.objects[index]
    options = {
        "shape": [("shape",), ("size", "shape"), ("color", "shape"), ("size", "color", "shape")],
        "color": [("color",), ("size", "color")],
        "size": [("shape",), ("color", "shape"), ("color",)],
    }
    if exclude == "shape":
        options = options["color"]  # name it by colour (and size): "the red object"
    elif exclude == "color":
        options = [o for o in options["shape"] if "color" not in o]
    else:
        options = options["size"]
    for attrs in options:
        matches = [o for o in scene.objects if all(getattr(o, a) == getattr(target, a) for a in attrs)]
        if len(matches) == 1:
            words = [getattr(target, a) for a in attrs]
            if "shape" not in attrs:
                # "the red shape" reads oddly in "what shape is the red shape?"
                nouns = ["object", "thing"] if exclude == "shape" else ["object", "shape", "thing"]
                words.append(_choice(rng, nouns))
            return " ".join(words)
    return None


def _describe(color: str | None, shape: str | None) -> str:
    if shape is None:
        return f"{color} shape"
    return f"{color} {shape}" if color else shape


def plural(phrase: str) -> str:
    """"red circle" -> "red circles", "small object" -> "small objects"."""
    *words, noun = phrase.split()
    return " ".join([*words, SHAPE_PLURALS.get(noun, noun + "s")])


def with_article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def ask_exist(scene: Scene, rng, negated: bool = False) -> Question | None:
    want_present = bool(rng.integers(2))
    kind = _choice(rng, ["color_shape", "color_shape", "shape", "color"])
    obj = _choice(rng, scene.objects)
    if want_present:
        color, shape = obj.color, obj.shape
    else:
        for _ in range(100):
            color, shape = _choice(rng, COLOR_NAMES), _choice(rng, SHAPES)
            if (color, shape) not in HELD_OUT_PAIRS and not _matching(scene, *_named(kind, color, shape)):
                break
        else:
            return None
    desc = _describe(*_named(kind, color, shape))
    family = "not_exist" if negated else "exist"
    exists = want_present
    answer = ("no" if exists else "yes") if negated else ("yes" if exists else "no")
    referent = scene.objects.index(obj) if (want_present and kind == "color_shape") else None
    text = _choice(rng, TEMPLATES[family]).format(d=desc, a=with_article(desc))
    return Question(text, answer, family, referent, desc, _matching(scene, *_named(kind, color, shape)))


def ask_attribute(scene: Scene, rng, family: str) -> Question | None:
    """'color', 'shape' or 'size' of one uniquely referenced object."""
    order = rng.permutation(len(scene.objects))
    for index in order:
        ref = _unique_reference(scene, int(index), rng, exclude=family)
        if ref is not None:
            answer = getattr(scene.objects[index], family)
            return Question(_choice(rng, TEMPLATES[family]).format(r=ref), answer, family, int(index), ref, (int(index),))
    return None


def ask_count(scene: Scene, rng) -> Question | None:
    # Most colour or shape counts in a scene of ≤5 objects are 1; resample those
    # often so a model can't score well by always answering "1".
    for _ in range(4):
        question = _ask_count_once(scene, rng)
        if question is None or question.answer != "1" or rng.random() < 0.35:
            return question
    return question


def _ask_count_once(scene: Scene, rng) -> Question | None:
    kind = _choice(rng, ["color", "shape", "color_shape", "all"])
    # Pick a target count first so that answers 0..5 are not dominated by 0 and 1.
    obj = _choice(rng, scene.objects)
    if kind == "all":
        template = _choice(rng, TEMPLATES["count"])
        phrase = _choice(rng, ["shapes", "objects"])
        return Question(template.format(p=phrase), str(len(scene.objects)), "count", phrase=phrase, phrase_objects=tuple(range(len(scene.objects))))
    if rng.random() < 0.2:  # a count of zero: name something absent
        for _ in range(50):
            color, shape = _choice(rng, COLOR_NAMES), _choice(rng, SHAPES)
            if not _matching(scene, *_named(kind, color, shape)) and (color, shape) not in HELD_OUT_PAIRS:
                break
        else:
            return None
    else:
        color, shape = obj.color, obj.shape
    color, shape = _named(kind, color, shape)
    phrase = f"{color} {SHAPE_PLURALS[shape]}" if (color and shape) else (SHAPE_PLURALS[shape] if shape else f"{color} {_choice(rng, ['shapes', 'objects', 'things'])}")
    named = _matching(scene, color, shape)
    return Question(_choice(rng, TEMPLATES["count"]).format(p=phrase), str(len(named)), "count", phrase=phrase, phrase_objects=named)


def _named(kind: str, color: str, shape: str) -> tuple[str | None, str | None]:
    """The colour and shape a question of this kind names ("color_shape", "color" or "shape"), None for the other."""
    return (color if kind != "shape" else None), (shape if kind != "color" else None)


def _matching(scene: Scene, color: str | None, shape: str | None) -> tuple[int, ...]:
    """Indices of the objects of this colour and shape (None: any)."""
    return tuple(i for i, o in enumerate(scene.objects) if (color is None or o.color == color) and (shape is None or o.shape == shape))


def ask_spatial(scene: Scene, rng, family: str) -> Question | None:
    """Colour or shape of the one object on the left (right) of a referenced object."""
    if len(scene.objects) < 2:
        return None
    by_x = sorted(range(len(scene.objects)), key=lambda i: scene.objects[i].x)
    options = []
    # "left of X" has one answer only when exactly one object is left of X: X is second from the left.
    options.append(("left", by_x[1], by_x[0]))
    options.append(("right", by_x[-2], by_x[-1]))
    side, anchor, target = options[int(rng.integers(len(options)))]
    attribute = "color" if family == "spatial_color" else "shape"
    ref = _unique_reference(scene, anchor, rng, exclude="size")  # any attribute may name the anchor
    if ref is None:
        return None
    answer = getattr(scene.objects[target], attribute)
    return Question(_choice(rng, TEMPLATES[family]).format(side=side, r=ref), answer, family, target, ref, (anchor,), relation=side)


def ask(scene: Scene, rng, family: str) -> Question | None:
    """One question of `family` about `scene`, or None if the scene can't support it."""
    if family in ("exist", "not_exist"):
        return ask_exist(scene, rng, negated=family == "not_exist")
    if family in ("color", "shape", "size"):
        return ask_attribute(scene, rng, family)
    if family == "count":
        return ask_count(scene, rng)
    if family in ("spatial_color", "spatial_shape"):
        return ask_spatial(scene, rng, family)
    raise ValueError(f"unknown family {family!r}")


def answer_balance(questions: list[Question]) -> Counter:
    return Counter(q.answer for q in questions)


assert MAX_OBJECTS <= 5, "COUNTS in vocabulary.py lists answers 0..5"
