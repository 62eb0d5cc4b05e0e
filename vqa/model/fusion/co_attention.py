"""Co-attention fusion, the dual stream (ViLBERT, LXMERT): a text stream and an image stream, each with
its own layers, that exchange cross-attention in connection layers from `fusion_layer` up.

    question ─ text layers 0 .. fusion_layer-1 ─ text layer (self, cross → image stream, MLP) ─ … ─► text states ─┐
                                                   ⇅ both read the other stream's previous states                  ├ [CLS] ⊙ image [CLS] ─► fused summary
    image states ──────────────────────────────── image layer (self, cross → text stream, MLP) ─ … ─► image states ┘

Both streams of a connection layer read the other's states from before the layer (LXMERT's cross-modality
layer); the fused summary is the element-wise product of the two [CLS] states (ViLBERT's pooling).
"""

from __future__ import annotations

import torch
from torch import nn

from vqa.model.configuration import ShapesVLPConfig
from vqa.model.layers import TransformerLayer
from vqa.model.outputs import FusionOutput
from vqa.model.text_embeddings import text_tower_embeddings


class CoAttentionEncoder(nn.Module):
    attention_kind = "co-attention (text stream onto image stream)"

    def __init__(self, config: ShapesVLPConfig):
        super().__init__()
        self.config = config
        self.embeddings = text_tower_embeddings(config)
        self.text_layers = nn.ModuleList(
            TransformerLayer(config, cross_attention=i >= config.fusion_layer) for i in range(config.text_layers)
        )
        self.image_layers = nn.ModuleList(TransformerLayer(config, cross_attention=True) for _ in config.fused_layers)
        self.text_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.image_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def encode_text(self, input_ids, attention_mask) -> torch.Tensor:
        """(B, T, H) the text stream alone (its connection layers skip the cross-attention)."""
        x = self.embeddings(input_ids)  # (B, T, H)
        for layer in self.text_layers:
            x, _, _ = layer(x, mask=attention_mask)
        return self.text_norm(x)

    def forward(self, input_ids, attention_mask, image_embeds, image_index=None, output_attentions=False,
                text_embeds=None) -> FusionOutput:
        # input_ids: (B, T); image_embeds: (B_img, 1+N, H); image_index: (B,) each text's image, None when B_img == B;
        # text_embeds: (B, T, H) `self.embeddings(input_ids)` when the caller has computed it (the traced answer path)
        y = image_embeds if image_index is None else image_embeds[image_index]  # (B, 1+N, H) image stream
        x = self.embeddings(input_ids) if text_embeds is None else text_embeds  # (B, T, H) text stream
        text_to_image, text_self = [], []
        for i, text_layer in enumerate(self.text_layers):
            if i < self.config.fusion_layer:
                x, _, _ = text_layer(x, mask=attention_mask)
                continue
            image_layer = self.image_layers[i - self.config.fusion_layer]
            new_x, self_weights, cross_weights = text_layer(x, mask=attention_mask, context=y, output_attentions=output_attentions)
            y, _, _ = image_layer(y, context=x, context_mask=attention_mask.bool())
            x = new_x
            if output_attentions:
                text_to_image.append(cross_weights)  # (B, heads, T, 1+N)
                text_self.append(self_weights)  # (B, heads, T, T)
        text_states, image_states = self.text_norm(x), self.image_norm(y)
        return FusionOutput(
            text_states=text_states,
            image_states=image_states,
            pooled=text_states[:, 0] * image_states[:, 0],  # (B, H)
            text_to_image=tuple(text_to_image) if output_attentions else None,
            text_self_attentions=tuple(text_self) if output_attentions else None,
        )
