"""The `unseen_style` split: the generator's scenes and questions, drawn by a second routine that makes other
choices than `vqa.data.scenes.render`, as another paint program would.

What differs from training pictures: a plain white or coloured background (never the generator's grey tints or
noise); other shades of each named colour, still ones a person gives that name (`SHADES`), with no jitter or
a stronger change of lightness; a black outline or none (training draws a darker outline of the shape's own colour);
anti-aliasing on or off; a canvas from nearly square to elongated, 48 to 256 px; objects pushed towards the
border. Positions keep their left-to-right order and sizes their class, so the generator's answers stay true.
Never used for training or model selection.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from PIL import Image, ImageDraw

from vqa.data.scenes import Scene, SceneObject

# Other shades per colour name: each one a person would still call by that name.
SHADES: dict[str, list[tuple[int, int, int]]] = {
    "red": [(190, 20, 40), (235, 50, 30), (200, 0, 0)],
    "orange": [(240, 130, 0), (235, 125, 15), (250, 125, 50)],
    "yellow": [(255, 230, 0), (250, 215, 20), (240, 225, 70)],
    "green": [(30, 130, 40), (60, 180, 60), (20, 150, 80)],
    "blue": [(20, 60, 190), (50, 100, 230), (10, 40, 160)],
    "purple": [(110, 40, 160), (140, 60, 190), (120, 40, 165)],
    "pink": [(250, 160, 200), (240, 120, 170), (255, 150, 210)],
    "brown": [(130, 80, 30), (135, 85, 35), (115, 70, 40)],
    "black": [(0, 0, 0), (30, 30, 30), (20, 25, 35)],
    "white": [(255, 255, 255), (240, 240, 235), (248, 248, 255)],
    "gray": [(110, 110, 110), (150, 150, 150), (128, 128, 135)],
    "teal": [(0, 128, 128), (20, 110, 120), (0, 140, 130)],
}
# The largest change of lightness of the "stronger jitter" pictures: more than training's ±18, and never
# enough to move a shade nearer another colour name (a test checks every shade).
STRONGER_LIGHTNESS = 24.0
BACKGROUNDS = ((255, 255, 255), (250, 250, 250), (255, 250, 230), (230, 240, 255), (235, 250, 235), (250, 235, 240))


def render_other_style(scene: Scene, rng: np.random.Generator) -> tuple[Image.Image, Scene]:
    """`scene` drawn by this module's choices, all drawn from `rng`, and the scene as drawn: its objects where
    they were put on a page of the picture's proportions (what pointing is checked against)."""
    width = int(rng.integers(48, 257))
    height = max(48, int(width * rng.uniform(0.55, 1.0)))
    if rng.random() < 0.5:
        width, height = height, width
    background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    smooth = rng.random() < 0.5
    scale = 4 if smooth else 1
    canvas = Image.new("RGB", (width * scale, height * scale), background)
    draw = ImageDraw.Draw(canvas)
    outline = (0, 0, 0) if rng.random() < 0.5 else None
    lightness_jitter = float(rng.choice([0.0, 0.0, STRONGER_LIGHTNESS]))
    spread = _spread(scene, rng)
    placed = []
    for obj in scene.objects:
        shade = SHADES[obj.color][int(rng.integers(len(SHADES[obj.color])))]
        shift = rng.uniform(-lightness_jitter, lightness_jitter)
        fill = tuple(int(np.clip(c + shift, 0, 255)) for c in shade)
        edge = outline
        if obj.color == "white" and min(background) >= 230:
            edge = (0, 0, 0)  # white on a near-white page without an outline is no shape a person can see
        elif obj.color == "black" and outline is not None:
            edge = (90, 90, 90)
        x, y = spread(obj)
        _draw(draw, obj, x * width * scale, y * height * scale, obj.radius * min(width, height) * scale, fill, edge, max(1, scale * width // 96))
        placed.append(replace(obj, x=x, y=y, rgb=fill))
    image = canvas.resize((width, height), Image.Resampling.LANCZOS) if smooth else canvas
    return image, replace(scene, objects=placed, background=background, noise=0.0, aspect=width / height,
                          outline="black" if outline else "none", smooth=smooth)


def _spread(scene: Scene, rng: np.random.Generator):
    """A map from an object to its drawn centre: now and then the scene is stretched towards the border, which
    keeps the left-to-right order (the spatial answers) and never pushes a shape off the canvas."""
    if rng.random() < 0.6:
        return lambda obj: (obj.x, obj.y)
    xs = [o.x for o in scene.objects]
    low, high = min(xs), max(xs)

    def stretched(obj: SceneObject) -> tuple[float, float]:
        if high - low < 1e-6:
            return obj.x, obj.y
        margin = obj.radius
        x = margin + (obj.x - low) / (high - low) * (1 - 2 * margin) if len(scene.objects) > 1 else obj.x
        return x, obj.y

    return stretched


def _draw(draw: ImageDraw.ImageDraw, obj: SceneObject, cx: float, cy: float, r: float, fill, outline, width: int) -> None:
    style = {"fill": fill, "outline": outline, "width": width if outline else 0}
    angle = math.radians(obj.rotation)
    if obj.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), **style)
    elif obj.shape == "ellipse":
        draw.ellipse((cx - r, cy - 0.5 * r, cx + r, cy + 0.5 * r), **style)
    elif obj.shape in ("square", "rectangle"):
        half_w, half_h = (0.85 * r, 0.85 * r) if obj.shape == "square" else (r, 0.5 * r)
        corners = [(-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h)]
        draw.polygon([(cx + px * math.cos(angle) - py * math.sin(angle), cy + px * math.sin(angle) + py * math.cos(angle)) for px, py in corners], **style)
    elif obj.shape == "star":
        draw.polygon(_regular(cx, cy, r, 10, angle, inner=0.42), **style)
    else:
        sides = {"triangle": 3, "pentagon": 5, "hexagon": 6}[obj.shape]
        draw.polygon(_regular(cx, cy, r, sides, angle), **style)


def _regular(cx: float, cy: float, r: float, corners: int, angle: float, inner: float | None = None) -> list[tuple[float, float]]:
    """A regular polygon (every other corner pulled in to `inner` × r for a star), first corner at the top."""
    points = []
    for k in range(corners):
        a = angle - math.pi / 2 + 2 * math.pi * k / corners
        radius = r * (inner if inner is not None and k % 2 else 1.0)
        points.append((cx + radius * math.cos(a), cy + radius * math.sin(a)))
    return points
