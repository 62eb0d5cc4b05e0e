"""The words of shapes world: colours, shapes, sizes, and the compositional hold-out.

Colours are the 11 basic colour terms of English (Berlin & Kay) plus teal, each
with a base RGB value; the renderer jitters around it so a model must learn a
colour category, not one exact pixel value. docs/vocabulary.md says what each name covers.
"""

from __future__ import annotations

import numpy as np

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "orange": (245, 135, 20),
    "yellow": (240, 215, 35),
    "green": (45, 155, 55),
    "blue": (35, 75, 215),
    "purple": (125, 50, 175),
    "pink": (245, 140, 190),
    "brown": (120, 75, 35),
    "black": (25, 25, 25),
    "white": (250, 250, 250),
    "gray": (130, 130, 130),
    "teal": (0, 125, 125),
}
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)


def cielab(rgb) -> np.ndarray:
    """sRGB (0-255, shape (..., 3)) to CIELAB (D65): distances there follow how different two colours look."""
    c = np.asarray(rgb, dtype=float) / 255
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = c @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T / np.array([0.9505, 1.0, 1.089])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


BASE_LAB = cielab([COLORS[name] for name in COLOR_NAMES])  # (colours, 3)


def colour_name(rgb) -> str:
    """The name of a shade: the colour whose base value it looks closest to (docs/vocabulary.md's rule)."""
    return COLOR_NAMES[int(np.argmin(np.linalg.norm(BASE_LAB - cielab(rgb), axis=-1)))]

SHAPES: tuple[str, ...] = ("circle", "square", "rectangle", "triangle", "ellipse", "star", "pentagon", "hexagon")
SHAPE_PLURALS = {s: s + "s" for s in SHAPES}
SIZES: tuple[str, ...] = ("small", "large")
COUNTS: tuple[str, ...] = ("0", "1", "2", "3", "4", "5")
MAX_OBJECTS = 5


def compositional_holdout() -> frozenset[tuple[str, str]]:
    """Colour–shape pairs never shown in train/val/test (CLEVR-CoGenT style).

    Two colours per shape (stepping through the colour list), so every shape keeps
    ten colours in training and each held-out colour is still seen on six other
    shapes: 16 of the 96 pairs.
    """
    pairs = set()
    n = len(COLOR_NAMES)
    for i, shape in enumerate(SHAPES):
        pairs.add((COLOR_NAMES[(3 * i) % n], shape))
        pairs.add((COLOR_NAMES[(3 * i + 7) % n], shape))
    return frozenset(pairs)


HELD_OUT_PAIRS = compositional_holdout()


def answer_vocabulary() -> list[str]:
    """Every answer the generator can produce: the classifier head's fixed vocabulary."""
    return ["yes", "no", *COLOR_NAMES, *SHAPES, *SIZES, *COUNTS]


# What each image patch can be taught about the object under it (attribute -> its values).
PATCH_ATTRIBUTE_VALUES = {"color": COLOR_NAMES, "shape": SHAPES, "size": SIZES}


# The kind of answer each question family asks for: an answer of another kind ("yes" to "what shape…?")
# is wrong in a way a person notices at once, and evaluation counts it apart.
ANSWER_KINDS = {"yes/no": ("yes", "no"), "colour": COLOR_NAMES, "shape": SHAPES, "size": SIZES, "number": COUNTS}
FAMILY_ANSWER_KIND = {"exist": "yes/no", "not_exist": "yes/no", "color": "colour", "spatial_color": "colour",
                      "shape": "shape", "spatial_shape": "shape", "size": "size", "count": "number"}


def answer_kind(answer: str) -> str | None:
    """"yes/no", "colour", "shape", "size" or "number" for an answer of the vocabulary, else None."""
    text = " ".join(answer.lower().split())
    text = ANSWER_SYNONYMS.get(text, text)
    return next((kind for kind, words in ANSWER_KINDS.items() if text in words), None)


# Other words a person uses for an answer of the vocabulary, accepted as that answer when evaluating
# (docs/vocabulary.md gives the rules behind every name).
ANSWER_SYNONYMS = {"grey": "gray", "big": "large", "little": "small", "violet": "purple", "cyan": "teal",
                   "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5"}
