"""How a picture of any shape becomes a model's square input, and where in that square it lies.

"squash" resizes the picture to the square, as BLIP's processor does. "letterbox" keeps the
picture's proportions: its long side fills the square and the rest is filled with the normalisation mean
(zero input). Squashed, an elongated picture's circles become ellipses and its squares rectangles, which a
model asked "what shape is it?" cannot undo; letterboxed, it sees them as drawn, and learns from the filled
bands how long the picture's short side is (the rule sizes are named by, docs/vocabulary.md).

The processor (inputs), the renderer of training scenes (where each object lies in the model's input) and
the attention maps (drawn over the picture alone) all use these same numbers.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

FITS = ("squash", "letterbox")
# Each patch of an attention map is cut into this many cells per side before the filled bands are dropped,
# so that a band edge inside a patch is kept to a quarter of a patch.
MAP_CELLS_PER_PATCH = 4


def content_box(size: tuple[int, int], side: int, fit: str) -> tuple[int, int, int, int]:
    """(left, top, width, height) in pixels of the side × side input where a picture of `size` (width, height) lies."""
    if fit not in FITS:
        raise ValueError(f"image fit must be one of {', '.join(FITS)}, got {fit!r}")
    width, height = size
    if fit == "squash" or width == height:
        return 0, 0, side, side
    scale = side / max(width, height)
    inner_w, inner_h = max(1, round(width * scale)), max(1, round(height * scale))
    return (side - inner_w) // 2, (side - inner_h) // 2, inner_w, inner_h


def fit_picture(image: Image.Image, side: int, fit: str, fill: tuple[int, int, int]) -> Image.Image:
    """`image` as the side × side picture the model reads."""
    left, top, width, height = content_box(image.size, side, fit)
    resized = image if image.size == (width, height) else image.resize((width, height), Image.Resampling.BICUBIC, reducing_gap=2.0)
    if (width, height) == (side, side):
        return resized
    page = Image.new("RGB", (side, side), fill)
    page.paste(resized, (left, top))
    return page


def crop_to_picture(maps: np.ndarray, size: tuple[int, int], side: int, fit: str) -> np.ndarray:
    """(..., g, g) maps over the model's square input -> (..., gh, gw) over the picture alone: each patch cut
    into MAP_CELLS_PER_PATCH² cells and the cells of the filled bands dropped. A squashed or square picture
    fills the input: its maps are returned as they are."""
    left, top, width, height = content_box(size, side, fit)
    if (width, height) == (side, side):
        return maps
    cells = MAP_CELLS_PER_PATCH
    fine = maps.repeat(cells, axis=-2).repeat(cells, axis=-1)  # (..., g * cells, g * cells)
    per_cell = side / fine.shape[-1]  # pixels per cell
    rows = slice(round(top / per_cell), max(round(top / per_cell) + 1, round((top + height) / per_cell)))
    cols = slice(round(left / per_cell), max(round(left / per_cell) + 1, round((left + width) / per_cell)))
    return fine[..., rows, cols]


def picture_patches(size: tuple[int, int], side: int, fit: str, patch_size: int) -> np.ndarray:
    """(g * g,) bool, row by row: the patches of the square input whose centre lies on the picture, not on a
    filled band (every patch for a squashed or square picture)."""
    left, top, width, height = content_box(size, side, fit)
    centres = np.arange(side // patch_size) * patch_size + patch_size / 2  # (g,) pixels
    rows = (centres >= top) & (centres < top + height)  # (g,)
    cols = (centres >= left) & (centres < left + width)  # (g,)
    return (rows[:, None] & cols[None, :]).reshape(-1)
