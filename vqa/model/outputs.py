"""The output types every architecture returns: what heads, attention maps, quantization, the traced
fast path and the training objectives read, so that none of them needs a model's submodules."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput


@dataclass
class FusionOutput(ModelOutput):
    """What every fusion kind returns for a batch of B texts, each about one image.

    `text_to_image` is the contract's window on where the text looks: for each layer where text meets
    the image (`config.fused_layers`), how each text token's attention is spread over the image's
    tokens, the image [CLS] first and then the patches row by row, renormalised to sum to 1 over the
    image. A kind whose towers never meet fills it with a labelled substitute (the dual encoder's
    similarity map); `attention_kind` on the fusion module names what it is.
    """

    text_states: torch.FloatTensor | None = None  # (B, T, H) text tokens after fusion
    image_states: torch.FloatTensor | None = None  # (B, 1+N, H) each text's image after fusion ([CLS] first)
    pooled: torch.FloatTensor | None = None  # (B, H) fused summary for the classifier and ITM heads; None if the kind has none
    text_to_image: tuple | None = None  # per fused layer (B, heads, T, 1+N), only with output_attentions
    text_self_attentions: tuple | None = None  # per fused layer (B, heads, T, T) text-to-text mixing, for rollout


def patch_attention_grids(to_image: torch.Tensor, grid: int) -> torch.Tensor:
    """(..., grid, grid) from (..., 1+N) rows of `text_to_image`: attention over the patches alone, the image
    [CLS] column left out (it has no place on the image) and each row renormalised to sum to 1 over the grid."""
    patches = to_image[..., 1:]  # (..., N)
    patches = patches / patches.sum(-1, keepdim=True).clamp_min(1e-9)
    return patches.reshape(*patches.shape[:-1], grid, grid)


@dataclass
class ShapesVLPOutput(ModelOutput):
    answer_logits: torch.FloatTensor | None = None  # (B, num_answers), with the classifier head
    itm_logits: torch.FloatTensor | None = None  # (B, 2): [no match, match], with the ITM head
    text_states: torch.FloatTensor | None = None  # (B, T, H) fused text states
    image_states: torch.FloatTensor | None = None  # (B, 1+N, H) fused image states, one row per text
    pooled: torch.FloatTensor | None = None  # (B, H)
    image_embeds: torch.FloatTensor | None = None  # (B_img, 1+N, H) the image encoder's output
    vision_attentions: tuple | None = None  # per vision layer (B_img, heads, 1+N, 1+N)
    text_to_image: tuple | None = None  # see FusionOutput
    text_self_attentions: tuple | None = None  # see FusionOutput
