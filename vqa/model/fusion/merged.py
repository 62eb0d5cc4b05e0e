"""Merged fusion, the single stream (VisualBERT, UNITER, VL-BERT, ViLT): text tokens and image tokens in
one sequence, told apart by a modality-type embedding, and one stack of self-attention layers over both.

    [question tokens + type 0 ; image [CLS] and patches + type 1] ─ layers 0 .. fusion_layer-1 (each modality attends to itself)
                                                                   ─ layers fusion_layer .. (every token attends to every token) ─► text states, image states

Below `fusion_layer` a block-diagonal mask keeps the two modalities apart, so the same file also builds
single streams that start fusing later than the first layer. The text-to-image attention of a merged
layer is the block of its self-attention where text rows meet image columns.
"""

from __future__ import annotations

import torch
from torch import nn

from vqa.model.configuration import ShapesVLPConfig
from vqa.model.layers import TransformerLayer
from vqa.model.outputs import FusionOutput
from vqa.model.text_embeddings import text_tower_embeddings

TEXT, IMAGE = 0, 1  # modality-type ids


class MergedEncoder(nn.Module):
    attention_kind = "merged self-attention (text rows, image columns)"

    def __init__(self, config: ShapesVLPConfig):
        super().__init__()
        self.config = config
        self.embeddings = text_tower_embeddings(config)
        self.modality = nn.Embedding(2, config.hidden_size)
        self.layers = nn.ModuleList(TransformerLayer(config, cross_attention=False) for _ in range(config.text_layers))
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def encode_text(self, input_ids, attention_mask) -> torch.Tensor:
        """(B, T, H) the text alone through the same layers (no image tokens in the sequence)."""
        x = self.embeddings(input_ids) + self.modality.weight[TEXT]  # (B, T, H)
        for layer in self.layers:
            x, _, _ = layer(x, mask=attention_mask)
        return self.norm(x)

    def forward(self, input_ids, attention_mask, image_embeds, image_index=None, output_attentions=False,
                text_embeds=None) -> FusionOutput:
        # input_ids: (B, T); image_embeds: (B_img, 1+N, H); image_index: (B,) each text's image, None when B_img == B;
        # text_embeds: (B, T, H) `self.embeddings(input_ids)` when the caller has computed it (the traced answer path)
        image = image_embeds if image_index is None else image_embeds[image_index]  # (B, 1+N, H)
        text = (self.embeddings(input_ids) if text_embeds is None else text_embeds) + self.modality.weight[TEXT]  # (B, T, H)
        T = text.shape[1]
        x = torch.cat([text, image + self.modality.weight[IMAGE]], dim=1)  # (B, T+S, H)
        # Built from the inputs' own tensors rather than from their sizes, so that a traced graph follows
        # the question length instead of fixing the one it was traced with.
        image_keys = torch.ones_like(image[:, :, 0], dtype=torch.bool)  # (B, S)
        key_mask = torch.cat([attention_mask.bool(), image_keys], dim=1)  # (B, T+S)
        modality = torch.cat([torch.zeros_like(attention_mask[0], dtype=torch.long), image_keys[0].long()])  # (T+S,)
        separate = modality[:, None] == modality[None, :]  # (T+S, T+S) True within one modality
        text_to_image, text_self = [], []
        for i, layer in enumerate(self.layers):
            fused = i >= self.config.fusion_layer
            x, weights, _ = layer(x, mask=key_mask, output_attentions=output_attentions and fused, pair_mask=None if fused else separate)
            if output_attentions and fused:
                to_image = weights[:, :, :T, T:]  # (B, heads, T, S)
                text_to_image.append(to_image / to_image.sum(-1, keepdim=True).clamp_min(1e-9))
                text_self.append(weights[:, :, :T, :T])  # (B, heads, T, T)
        states = self.norm(x)  # (B, T+S, H)
        text_states = states[:, :T]
        return FusionOutput(
            text_states=text_states,
            image_states=states[:, T:],
            pooled=text_states[:, 0],
            text_to_image=tuple(text_to_image) if output_attentions else None,
            text_self_attentions=tuple(text_self) if output_attentions else None,
        )
