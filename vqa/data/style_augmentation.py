"""Training pictures in other looks: the same scene on a plain page, in other shades, with other edges.

The generator draws every scene the same way (a grey tint, sometimes noise, anti-aliased shapes with a darker
edge of their own colour, shades within a small jitter of one base colour). A model trained on that alone reads
the drawing style as part of the colour or the shape: a brown drawn in another program's shade is called red.
`vary_style` keeps what the answers depend on (shapes, sizes, positions, colour names) and changes the rest:
a white or pale plain background, no noise, a black edge or none, hard pixel edges, shapes turned to any angle
(the generator tilts them by at most 12 degrees, so a hexagon standing on a corner would be new), and another
shade that is still clearly of the same name: near its base colour and much nearer it than any other (CIELAB,
the rule of docs/vocabulary.md), and, for a model that letterboxes its pictures (vqa/image_fit.py), an
elongated page. Only training uses it
(`TrainConfig.restyled_share`); the `unseen_style` split is drawn by its own routine, never by this one.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from vqa.data.scenes import REACH, Scene, SceneObject
from vqa.data.vocabulary import BASE_LAB, COLOR_NAMES, cielab

# How far a shade may move from the object's drawn colour: lightness, then each channel on its own.
LIGHTNESS_SHIFT = 40.0
CHANNEL_SHIFT = 18.0
SHADE_TRIES = 8
# A new shade is kept when it lies within this CIELAB distance of its name's base colour and at most this
# fraction of the distance to any other name's: about as far as the held-out style's hand-picked shades go.
MAX_DISTANCE = 25.0
MAX_RATIO = 0.6
OUTLINES = ("darker", "black", "none")
SHORTEST_SIDE = 0.5  # an elongated page's short side, at the least, as a fraction of its long side


def vary_style(scene: Scene, rng: np.random.Generator, elongated_share: float = 0.0) -> Scene:
    """A copy of `scene` in another look, every choice drawn from `rng`; `elongated_share` of them on a page
    from nearly square to twice as long as high (or high as long), for a model that letterboxes its pictures."""
    if rng.random() < 0.4:
        background = (255, 255, 255)
    else:
        background = tuple(int(v) for v in rng.integers(205, 256, size=3))
    objects = [replace(obj, rgb=_other_shade(obj.rgb, obj.color, rng), rotation=_any_angle(obj, rng)) for obj in scene.objects]
    outline = OUTLINES[int(rng.integers(len(OUTLINES)))]
    if outline == "none" and any(obj.color == "white" for obj in objects):
        outline = "black"  # a white shape without an edge on a pale page is not there for a person either
    aspect = 1.0
    if elongated_share and rng.random() < elongated_share:
        aspect = float(rng.uniform(SHORTEST_SIDE, 1.0))
        aspect = aspect if rng.random() < 0.5 else 1 / aspect
    return replace(scene, objects=objects, background=background, noise=0.0, outline=outline, smooth=bool(rng.random() < 0.5),
                   aspect=aspect)


def _any_angle(obj: SceneObject, rng: np.random.Generator) -> float:
    """A new angle for `obj`, or its own where a turned shape could reach past the edge of the page."""
    angle = float(rng.uniform(0.0, 360.0))
    reach = REACH[obj.shape] * obj.radius
    return angle if reach <= min(obj.x, obj.y, 1 - obj.x, 1 - obj.y) else obj.rotation


def _other_shade(rgb: tuple[int, int, int], name: str, rng: np.random.Generator) -> tuple[int, int, int]:
    """A shade near `rgb` that is clearly `name` (the drawn colour itself if none is found)."""
    for _ in range(SHADE_TRIES):
        shifted = np.asarray(rgb, dtype=float) + rng.uniform(-LIGHTNESS_SHIFT, LIGHTNESS_SHIFT) + rng.normal(0, CHANNEL_SHIFT, 3)
        shade = tuple(int(v) for v in np.clip(shifted, 0, 255))
        if _clearly(shade, name):
            return shade
    return rgb


def _clearly(shade: tuple[int, int, int], name: str) -> bool:
    distances = np.linalg.norm(BASE_LAB - cielab(shade), axis=-1)  # (colours,)
    index = COLOR_NAMES.index(name)
    own = distances[index]
    return bool(own <= MAX_DISTANCE and own <= MAX_RATIO * np.delete(distances, index).min())
