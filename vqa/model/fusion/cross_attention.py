"""Cross-attention fusion (ALBEF, BLIP): a text encoder whose layers from `fusion_layer` up cross-attend
to the image encoder's output. The image side is not changed by the text.

    question ─ text layers 0 .. fusion_layer-1 ─ text layers fusion_layer .. (self, cross → image, MLP) ─► text states
"""

from __future__ import annotations

import torch
from torch import nn

from vqa.model.configuration import ShapesVLPConfig
from vqa.model.layers import TransformerLayer
from vqa.model.outputs import FusionOutput
from vqa.model.text_embeddings import text_tower_embeddings


class TextEncoder(nn.Module):
    """Bidirectional text encoder. Layers from `cross_attention_from` up also cross-attend to the image
    when one is given; without an image it is the unimodal text encoder (ITC). The dual encoder uses
    it with no cross-attention at all (`cross_attention_from = text_layers`)."""

    attention_kind = "cross-attention"

    def __init__(self, config: ShapesVLPConfig, cross_attention_from: int | None = None):
        super().__init__()
        self.config = config
        self.cross_attention_from = config.fusion_layer if cross_attention_from is None else cross_attention_from
        self.embeddings = text_tower_embeddings(config)
        self.layers = nn.ModuleList(
            TransformerLayer(config, cross_attention=i >= self.cross_attention_from) for i in range(config.text_layers)
        )
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def encode_text(self, input_ids, attention_mask) -> torch.Tensor:
        """(B, T, H) the text alone."""
        return self(input_ids, attention_mask).text_states

    def forward(self, input_ids, attention_mask, image_embeds=None, image_index=None, output_attentions=False,
                text_embeds=None) -> FusionOutput:
        # input_ids: (B, T); image_embeds: (B_img, 1+N, H); image_index: (B,) each text's image, None when B_img == B;
        # text_embeds: (B, T, H) `self.embeddings(input_ids)` when the caller has computed it (the traced answer path)
        x = self.embeddings(input_ids) if text_embeds is None else text_embeds  # (B, T, H)
        self_attentions, cross_attentions = [], []
        for i, layer in enumerate(self.layers):
            # each image's keys/values are projected once and shared by the texts about it (image_index)
            x, self_weights, cross_weights = layer(
                x, mask=attention_mask, context=image_embeds, output_attentions=output_attentions, context_index=image_index,
            )
            if i >= self.cross_attention_from:
                self_attentions.append(self_weights)
                cross_attentions.append(cross_weights)
        text_states = self.norm(x)  # (B, T, H)
        image_states = None
        if image_embeds is not None:
            image_states = image_embeds if image_index is None else image_embeds[image_index]  # (B, 1+N, H)
        return FusionOutput(
            text_states=text_states,
            image_states=image_states,
            pooled=text_states[:, 0] if image_embeds is not None else None,
            text_to_image=tuple(cross_attentions) if output_attentions and image_embeds is not None else None,
            text_self_attentions=tuple(self_attentions) if output_attentions and image_embeds is not None else None,
        )
