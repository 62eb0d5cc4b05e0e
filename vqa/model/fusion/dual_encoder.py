"""No fusion, the dual encoder (CLIP): a text tower and an image tower that never attend to each other.
They meet only at the end, as the cosine similarity of their projected [CLS] states (late fusion), so the
model can score how well a text fits an image but not read one in the light of the other.

It has no text-to-image attention. What stands in for it on the attention maps is a similarity map:
each text token's projected state against each projected image token, softmaxed over the image with the
contrastive temperature. It says which patches resemble a word in the shared space, not where a layer looked.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vqa.model.fusion.cross_attention import TextEncoder

SIMILARITY_KIND = "similarity map (a dual encoder has no attention between its towers)"


def text_tower(config) -> TextEncoder:
    """The text encoder with no cross-attention in any layer."""
    return TextEncoder(config, cross_attention_from=config.text_layers)


def similarity_map(text_states, image_states, text_proj, vision_proj, logit_scale) -> torch.Tensor:
    """(B, 1, T, 1+N): per text token, a softmax over the image tokens of the scaled cosine similarity in
    the contrastive space. text_states: (B, T, H); image_states: (B, 1+N, H)."""
    text = F.normalize(text_proj(text_states), dim=-1)  # (B, T, itc_dim)
    image = F.normalize(vision_proj(image_states), dim=-1)  # (B, 1+N, itc_dim)
    scores = logit_scale.exp().clamp(max=100) * text @ image.transpose(1, 2)  # (B, T, 1+N)
    return scores.softmax(-1)[:, None]  # one "layer", one "head"
