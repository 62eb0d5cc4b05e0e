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
ELLIPSE_POINTS = 72  # an ellipse is drawn as a polygon so it can be turned; 72 sides look smooth at 4x
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
        """(x0, y0, x1, y1) as fractions of a square page: the ground truth for grounding."""
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
    # Width over height of the page. Positions are fractions of each side and radii fractions of the shorter
    # one, so an elongated page keeps every answer; only training's restyled pictures use one.
    aspect: float = 1.0
    meta: dict = field(default_factory=dict)

    def page_box(self, index: int) -> tuple[float, float, float, float]:
        """Object `index`'s box (x0, y0, x1, y1) as fractions of this scene's page, elongated or not: its
        reach is in units of the shorter side."""
        obj = self.objects[index]
        rx, ry = _extent(obj.shape, obj.radius)
        rx, ry = (rx / self.aspect, ry) if self.aspect >= 1 else (rx, ry * self.aspect)
        return (obj.x - rx, obj.y - ry, obj.x + rx, obj.y + ry)

    def to_dict(self) -> dict:
        return {
            "objects": [dict(asdict(o), box=[round(v, 4) for v in self.page_box(i)]) for i, o in enumerate(self.objects)],
            "background": list(self.background),
            "noise": self.noise,
            "seed": self.seed,
        }


# The generator tilts these shapes a little and draws the others upright; training's restyled pictures
# (vqa.data.style_augmentation) turn every shape to any angle.
TILTED = ("triangle", "pentagon", "hexagon", "star")
# How far each shape reaches from its centre at any angle, in radii: the corners of a square (drawn
# 0.9 radius from the centre to a side) and a rectangle, and the triangle's shifted, enlarged outline.
REACH = {"circle": 1.0, "ellipse": 1.0, "square": 0.9 * math.sqrt(2), "rectangle": math.hypot(1.0, 0.55),
         "triangle": 1.25, "pentagon": 1.0, "hexagon": 1.0, "star": 1.1}


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
            rgb, tilt = _jitter(rng, COLORS[color]), float(rng.uniform(-12, 12))
            return SceneObject(shape, color, size, x, y, radius, rgb, tilt if shape in TILTED else 0.0)
    return None


def _apart(x: float, y: float, radius: float, other: SceneObject) -> bool:
    no_overlap = math.hypot(x - other.x, y - other.y) > radius + other.radius + 0.03
    return no_overlap and abs(x - other.x) > MIN_DX


def _jitter(rng, rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """Brightness and per-channel jitter: enough variety to generalise, never enough to change the colour name."""
    brightness = rng.uniform(-18, 18)
    return tuple(int(np.clip(c + brightness + rng.normal(0, 7), 0, 255)) for c in rgb)


def page_size(scene: Scene, size: int) -> tuple[int, int]:
    """(width, height) of the scene's picture: its longer side is `size`."""
    if scene.aspect >= 1:
        return size, max(1, round(size / scene.aspect))
    return max(1, round(size * scene.aspect)), size


def render(scene: Scene, size: int = 96) -> Image.Image:
    """Draw the scene as an RGB image `size` px on its longer side, size×size unless the scene's page is
    elongated (background tint, optional noise, outlined shapes)."""
    width, height = page_size(scene, size)
    scale = SUPERSAMPLE if scene.smooth else 1
    canvas = Image.new("RGB", (width * scale, height * scale), scene.background)
    draw = ImageDraw.Draw(canvas)
    for obj in scene.objects:
        # a darker outline keeps white and yellow shapes visible on pale backgrounds
        outline = {"darker": tuple(int(c * 0.55) for c in obj.rgb), "black": (0, 0, 0), "none": None}[scene.outline]
        _draw_shape(draw, obj, width * scale, height * scale, outline)
    image = canvas.resize((width, height), Image.Resampling.LANCZOS) if scene.smooth else canvas
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


def _turned(cx: float, cy: float, points: list[tuple[float, float]], rotation: float) -> list[tuple[float, float]]:
    """`points` (offsets from the centre) turned by `rotation` degrees and moved to (cx, cy)."""
    a = math.radians(rotation)
    return [(cx + px * math.cos(a) - py * math.sin(a), cy + px * math.sin(a) + py * math.cos(a)) for px, py in points]


def render_object_map(scene: Scene, size: int) -> np.ndarray:
    """(size, size) int array: 0 for background, i+1 where object i is drawn (the ground-truth mask), in the
    model's size×size input: an elongated page lies letterboxed in it, as the processor places its picture."""
    from vqa.image_fit import content_box

    width, height = page_size(scene, size)
    page = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(page)
    for index, obj in enumerate(scene.objects):
        _draw_shape(draw, obj, width, height, outline=index + 1, fill=index + 1)
    if (width, height) == (size, size):
        return np.asarray(page)
    left, top, _, _ = content_box((width, height), size, "letterbox")
    canvas = Image.new("L", (size, size), 0)
    canvas.paste(page, (left, top))
    return np.asarray(canvas)


def _draw_shape(draw: ImageDraw.ImageDraw, obj: SceneObject, width: int, height: int, outline, fill=None) -> None:
    unit = min(width, height)  # radii are fractions of the shorter side
    cx, cy, r = obj.x * width, obj.y * height, obj.radius * unit
    style = {"fill": obj.rgb if fill is None else fill, "outline": outline, "width": max(1, int(unit * 0.006))}
    rx, ry = (v * unit for v in _extent(obj.shape, obj.radius))
    if obj.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), **style)
    elif obj.shape == "ellipse":
        rim = [(rx * math.cos(t), ry * math.sin(t)) for t in np.linspace(0, 2 * math.pi, ELLIPSE_POINTS, endpoint=False)]
        draw.polygon(_turned(cx, cy, rim, obj.rotation), **style)
    elif obj.shape == "square":
        s = r * 0.9  # a square of the same radius looks bigger than a circle; shrink so sizes read alike
        draw.polygon(_turned(cx, cy, [(-s, -s), (s, -s), (s, s), (-s, s)], obj.rotation), **style)
    elif obj.shape == "rectangle":
        draw.polygon(_turned(cx, cy, [(-rx, -ry), (rx, -ry), (rx, ry), (-rx, ry)], obj.rotation), **style)
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
