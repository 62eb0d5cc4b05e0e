"""From attention weights to pictures a person can read.

Works on any backbone's `AttentionMaps` (cross: (layers, heads, tokens, grid_h, grid_w)):
- `select_map`: one layer/head (or the mean over heads) for one token (or the mean over tokens);
- `rollout`: attention rollout through the fused layers (Abnar & Zuidema 2020, in the
  cross-modal form of Chefer et al. 2021): text-to-text mixing carried through each
  layer before its cross-attention is added;
- `pointing_map`: the map used to measure grounding (peak = where the model looked);
- `overlay`, `layer_grid`, `colorbar`: heatmaps over the image with matplotlib colormaps.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from vqa.results import AttentionMaps

COLORMAP = "inferno"
SKIP_TOKENS = {"[CLS]", "[SEP]", "[PAD]", "?", ".", "<|endoftext|>", "<s>", "</s>"}


def token_indices(maps: AttentionMaps, token: int | str | None) -> list[int]:
    """Rows to average: one token (by index or text), or every content token when None."""
    if token is None or token == "all":
        content = [i for i, t in enumerate(maps.tokens) if t not in SKIP_TOKENS]
        return content or list(range(len(maps.tokens)))
    if isinstance(token, str):
        if token not in maps.tokens:
            raise ValueError(f"token {token!r} is not in the question's tokens {maps.tokens}")
        return [maps.tokens.index(token)]
    if not 0 <= token < len(maps.tokens):
        raise ValueError(f"token index {token} is out of range (0..{len(maps.tokens) - 1})")
    return [int(token)]


def select_map(maps: AttentionMaps, layer: int | None = -1, head: int | None = None, token: int | str | None = None) -> np.ndarray:
    """(grid_h, grid_w) map: `layer` indexes maps.layers' axis (-1 = last fused layer, None = mean over
    layers); `head` None = mean over heads; `token` None = mean over content tokens."""
    cross = maps.cross  # (L, heads, T, gh, gw)
    cross = cross.mean(0) if layer is None else cross[layer]  # (heads, T, gh, gw)
    cross = cross.mean(0) if head is None else cross[head]  # (T, gh, gw)
    return cross[token_indices(maps, token)].mean(0)


def rollout(maps: AttentionMaps, token: int | str | None = None) -> np.ndarray:
    """Text→image relevance accumulated over the fused layers, heads averaged. (grid_h, grid_w)"""
    if maps.text_self is None:
        return select_map(maps, layer=None, token=token)
    L, _, T, gh, gw = maps.cross.shape
    text_relevance = np.eye(T)  # (T, T): how much each token's state carries of each other token
    image_relevance = np.zeros((T, gh * gw))  # (T, N)
    for layer in range(L):
        self_attention = maps.text_self[layer].mean(0)  # (T, T)
        text_relevance = text_relevance + self_attention @ text_relevance
        text_relevance = text_relevance / text_relevance.sum(-1, keepdims=True)
        cross = maps.cross[layer].mean(0).reshape(T, gh * gw)  # (T, N)
        image_relevance = image_relevance + text_relevance @ cross
    relevance = image_relevance[token_indices(maps, token)].mean(0)
    return (relevance / max(relevance.sum(), 1e-12)).reshape(gh, gw)


def pointing_map(maps: AttentionMaps) -> np.ndarray:
    """The map whose peak says where the answer came from: the fused layers' attention from the
    text's first token ([CLS]), the summary token whose fused state the classifier head reads,
    heads and layers averaged, since every fused layer adds to that state and models ground in
    different layers. The content words would point at the object a question names, which for
    "what colour is the shape left of the square?" is not the object the answer is about."""
    return select_map(maps, layer=None, head=None, token=0)


def peak_location(grid_map: np.ndarray) -> tuple[float, float]:
    """Centre of the hottest patch as (x, y) fractions of the image."""
    gh, gw = grid_map.shape
    row, col = np.unravel_index(int(np.argmax(grid_map)), grid_map.shape)
    return (col + 0.5) / gw, (row + 0.5) / gh


def peak_inside(grid_map: np.ndarray, box) -> bool:
    """Whether the hottest patch's centre falls inside `box` (x0, y0, x1, y1 as fractions of the
    image): one pointing hit, as `pointing_accuracy` counts them."""
    x, y = peak_location(grid_map)
    return bool(box[0] <= x <= box[2] and box[1] <= y <= box[3])


def _normalise(grid_map: np.ndarray) -> np.ndarray:
    lo, hi = float(grid_map.min()), float(grid_map.max())
    return (grid_map - lo) / (hi - lo) if hi > lo else np.zeros_like(grid_map)


def heat_image(grid_map: np.ndarray, size: tuple[int, int], colormap: str = COLORMAP) -> Image.Image:
    """Colour a grid map (min..max of the map) and upsample it to `size` (width, height)."""
    from matplotlib import colormaps

    rgba = colormaps[colormap](_normalise(grid_map))  # (gh, gw, 4) floats
    small = Image.fromarray((rgba[..., :3] * 255).astype(np.uint8))
    # bilinear upsampling: blocky patches would look like real object edges
    return small.resize(size, Image.Resampling.BILINEAR)


def overlay(image: Image.Image, grid_map: np.ndarray, alpha: float = 0.55, colormap: str = COLORMAP, display_size: int = 384) -> Image.Image:
    """The heatmap blended over the image, shown at `display_size` px on the long side."""
    scale = display_size / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    base = image.convert("RGB").resize(size, Image.Resampling.BICUBIC)
    return Image.blend(base, heat_image(grid_map, size, colormap), alpha)


def layer_grid(image: Image.Image, maps: AttentionMaps, token: int | str | None = None, colormap: str = COLORMAP) -> Image.Image:
    """Every fused layer (rows) × every head plus the head mean (columns), as one picture with titles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    L, H = maps.cross.shape[:2]
    fig, axes = plt.subplots(L, H + 1, figsize=(1.9 * (H + 1), 1.9 * L + 0.4), squeeze=False)
    for row in range(L):
        for col in range(H + 1):
            head = None if col == H else col
            grid_map = select_map(maps, layer=row, head=head, token=token)
            ax = axes[row][col]
            ax.imshow(overlay(image, grid_map, colormap=colormap, display_size=160))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"layer {maps.layers[row]} · {'mean' if head is None else f'head {head}'}", fontsize=8)
    fig.tight_layout()
    return _figure_to_image(fig)


def colorbar(colormap: str = COLORMAP, label: str = "attention (low → high, scaled per map)") -> Image.Image:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import cm, colors

    fig, ax = plt.subplots(figsize=(4.2, 1.0))
    fig.subplots_adjust(left=0.05, right=0.95, top=0.62, bottom=0.38)  # room for the title above and the labels below
    fig.colorbar(cm.ScalarMappable(norm=colors.Normalize(0, 1), cmap=colormap), cax=ax, orientation="horizontal", ticks=[0, 0.5, 1])
    ax.set_xticklabels(["low", "", "high"])
    ax.set_title(label, fontsize=8)
    return _figure_to_image(fig)


def _figure_to_image(fig) -> Image.Image:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")
