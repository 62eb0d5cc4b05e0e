"""Scenes: sampling objects (with ground-truth boxes) and rendering them with Pillow.

A scene is pure data (`Scene`, a list of `SceneObject`), rendered on demand, so
questions, captions and grounding all read the same ground truth. Everything is
drawn from one `numpy.random.Generator`, so a seed fixes the scene exactly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from vqa.data.vocabulary import COLOR_NAMES, COLORS, HELD_OUT_PAIRS, MAX_OBJECTS, SHAPES, SIZES

# Radii as a fraction of the image side. Small and large do not overlap, so "size"
# always has a clear answer; both stay visible at the 64–128 px the model sees.
RADIUS_RANGE = {"small": (0.075, 0.095), "large": (0.14, 0.17)}
# Minimum horizontal gap between object centres (fraction of the side) so that
# "left of" / "right of" are never ambiguous to a human looking at the picture.
MIN_DX = 0.06
SUPERSAMPLE = 4  # draw 4x larger and downsample: anti-aliased edges keep small shapes recognisable


@dataclass
class SceneObject:
    shape: str
    color: str
    size: str
    x: float  # centre, fraction of image width (0 = left)
    y: float  # centre, fraction of image height (0 = top)
    radius: float  # fraction of the image side
    rgb: tuple[int, int, int]  # the jittered colour actually drawn
    rotation: float  # degrees

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) as fractions of the image: the ground truth for grounding."""
        rx, ry = _extent(self.shape, self.radius)
        return (self.x - rx, self.y - ry, self.x + rx, self.y + ry)

    def describe(self, with_size: bool = True) -> str:
        return f"{self.size} {self.color} {self.shape}" if with_size else f"{self.color} {self.shape}"


@dataclass
class Scene:
    objects: list[SceneObject]
    background: tuple[int, int, int]
    noise: float  # std of the per-pixel background noise, 0 = plain tint
    seed: int = 0
    outline: str = "darker"  # each shape's edge: "darker" (its own colour, darkened), "black" or "none"
    smooth: bool = True  # anti-aliased edges (drawn larger and shrunk); False draws hard pixel edges
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "objects": [dict(asdict(o), box=[round(v, 4) for v in o.box]) for o in self.objects],
            "background": list(self.background),
            "noise": self.noise,
            "seed": self.seed,
        }


def _extent(shape: str, radius: float) -> tuple[float, float]:
    """Half-width and half-height of a shape's box (rectangles and ellipses are wide)."""
    if shape in ("rectangle", "ellipse"):
        return radius, radius * 0.55
    return radius, radius


def sample_scene(
    rng: np.random.Generator,
    num_objects: int | None = None,
    max_objects: int = MAX_OBJECTS,
    allow_pairs: str = "train",
    max_tries: int = 200,
) -> Scene:
    """Sample a scene of 1..MAX_OBJECTS non-overlapping objects.

    allow_pairs: "train" never uses a held-out colour–shape pair; "compositional"
    makes at least one object a held-out pair (the CoGenT-style test split).
    """
    if num_objects is None:
        num_objects = int(rng.integers(1, max_objects + 1))
    held_out = sorted(HELD_OUT_PAIRS)
    for _ in range(max_tries):
        objects: list[SceneObject] = []
        for i in range(num_objects):
            obj = _place_object(rng, objects, force_pair=held_out[rng.integers(len(held_out))] if (allow_pairs == "compositional" and i == 0) else None)
            if obj is None:
                break
            objects.append(obj)
        if len(objects) == num_objects:
            rng.shuffle(objects)
            tint = rng.uniform(185, 240)
            background = tuple(int(np.clip(tint + rng.normal(0, 12), 150, 250)) for _ in range(3))
            noise = float(rng.choice([0.0, 0.0, 4.0, 8.0]))
            return Scene(objects=objects, background=background, noise=noise)
    raise RuntimeError("could not place the objects; lower num_objects")  # never seen with MAX_OBJECTS=5


def _place_object(rng, placed: list[SceneObject], force_pair=None) -> SceneObject | None:
    if force_pair is not None:
        color, shape = force_pair
    else:
        while True:
            color = COLOR_NAMES[rng.integers(len(COLOR_NAMES))]
            shape = SHAPES[rng.integers(len(SHAPES))]
            if (color, shape) not in HELD_OUT_PAIRS:
                break
    size = SIZES[rng.integers(len(SIZES))]
    radius = float(rng.uniform(*RADIUS_RANGE[size]))
    rx, ry = _extent(shape, radius)
    for _ in range(50):
        x = float(rng.uniform(rx + 0.02, 1 - rx - 0.02))
        y = float(rng.uniform(ry + 0.02, 1 - ry - 0.02))
        if all(_apart(x, y, radius, o) for o in placed):
            return SceneObject(shape, color, size, x, y, radius, _jitter(rng, COLORS[color]), float(rng.uniform(-12, 12)))
    return None


def _apart(x: float, y: float, radius: float, other: SceneObject) -> bool:
    no_overlap = math.hypot(x - other.x, y - other.y) > radius + other.radius + 0.03
    return no_overlap and abs(x - other.x) > MIN_DX


def _jitter(rng, rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """Brightness and per-channel jitter: enough variety to generalise, never enough to change the colour name."""
    brightness = rng.uniform(-18, 18)
    return tuple(int(np.clip(c + brightness + rng.normal(0, 7), 0, 255)) for c in rgb)


def render(scene: Scene, size: int = 96) -> Image.Image:
    """Draw the scene as a size×size RGB image (background tint, optional noise, outlined shapes)."""
    big = size * SUPERSAMPLE if scene.smooth else size
    canvas = Image.new("RGB", (big, big), scene.background)
    draw = ImageDraw.Draw(canvas)
    for obj in scene.objects:
        # a darker outline keeps white and yellow shapes visible on pale backgrounds
        outline = {"darker": tuple(int(c * 0.55) for c in obj.rgb), "black": (0, 0, 0), "none": None}[scene.outline]
        _draw_shape(draw, obj, big, outline)
    image = canvas.resize((size, size), Image.Resampling.LANCZOS) if scene.smooth else canvas
    if scene.noise > 0:
        noise_rng = np.random.default_rng(scene.seed + 7919)
        pixels = np.asarray(image, dtype=np.float32)
        pixels += noise_rng.normal(0, scene.noise, pixels.shape)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image


def _polygon(cx: float, cy: float, r: float, sides: int, rotation: float, star: bool = False) -> list[tuple[float, float]]:
    points = []
    count = sides * 2 if star else sides
    for k in range(count):
        angle = math.radians(rotation - 90 + 360 * k / count)
        rk = r * (0.45 if star and k % 2 else 1.0)
        points.append((cx + rk * math.cos(angle), cy + rk * math.sin(angle)))
    return points


def render_object_map(scene: Scene, size: int) -> np.ndarray:
    """(size, size) int array: 0 for background, i+1 where object i is drawn (the ground-truth mask)."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for index, obj in enumerate(scene.objects):
        _draw_shape(draw, obj, size, outline=index + 1, fill=index + 1)
    return np.asarray(canvas)


def _draw_shape(draw: ImageDraw.ImageDraw, obj: SceneObject, side: int, outline, fill=None) -> None:
    cx, cy, r = obj.x * side, obj.y * side, obj.radius * side
    width = max(1, int(side * 0.006))
    style = {"fill": obj.rgb if fill is None else fill, "outline": outline, "width": width}
    rx, ry = (v * side for v in _extent(obj.shape, obj.radius))
    if obj.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), **style)
    elif obj.shape == "ellipse":
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), **style)
    elif obj.shape == "square":
        s = r * 0.9  # a square of the same radius looks bigger than a circle; shrink so sizes read alike
        draw.rectangle((cx - s, cy - s, cx + s, cy + s), **style)
    elif obj.shape == "rectangle":
        draw.rectangle((cx - rx, cy - ry, cx + rx, cy + ry), **style)
    elif obj.shape == "triangle":
        draw.polygon(_polygon(cx, cy + r * 0.15, r * 1.1, 3, obj.rotation), **style)
    elif obj.shape == "pentagon":
        draw.polygon(_polygon(cx, cy, r, 5, obj.rotation), **style)
    elif obj.shape == "hexagon":
        draw.polygon(_polygon(cx, cy, r, 6, obj.rotation + 30), **style)
    elif obj.shape == "star":
        draw.polygon(_polygon(cx, cy, r * 1.1, 5, obj.rotation, star=True), **style)
    else:
        raise ValueError(obj.shape)
