"""Where vision and language meet: one module per fusion kind, each returning `FusionOutput`.

| kind | stands for | module |
|---|---|---|
| `cross_attention` | ALBEF, BLIP | `cross_attention.TextEncoder` |
| `merged` | VisualBERT, UNITER, VL-BERT, ViLT, MLIM | `merged.MergedEncoder` |
| `co_attention` | ViLBERT, LXMERT | `co_attention.CoAttentionEncoder` |
| `none` | CLIP | `dual_encoder.text_tower` (towers meet only in the contrastive projections) |
| `decoder` | VisionEncoderDecoder | `decoder.decoder_fusion` (the text decoder does the fusing) |

A new pattern is one more module here with `forward(input_ids, attention_mask, image_embeds, image_index,
output_attentions, text_embeds) -> FusionOutput` (`text_embeds`, when given, replaces `self.embeddings(input_ids)`), `encode_text(input_ids, attention_mask)` and `attention_kind`, and
one entry in `build_fusion`.
"""

from __future__ import annotations

from torch import nn

from vqa.model.configuration import ShapesVLPConfig
from vqa.model.fusion.co_attention import CoAttentionEncoder
from vqa.model.fusion.cross_attention import TextEncoder
from vqa.model.fusion.decoder import ATTENTION_KIND as DECODER_ATTENTION_KIND
from vqa.model.fusion.dual_encoder import SIMILARITY_KIND, similarity_map, text_tower
from vqa.model.fusion.merged import MergedEncoder

ATTENTION_KINDS = {
    "cross_attention": TextEncoder.attention_kind,
    "merged": MergedEncoder.attention_kind,
    "co_attention": CoAttentionEncoder.attention_kind,
    "none": SIMILARITY_KIND,
    "decoder": DECODER_ATTENTION_KIND,
}


def build_fusion(config: ShapesVLPConfig) -> nn.Module | None:
    """The fusion module of `config.fusion`; None for "decoder", where the text decoder fuses."""
    if config.fusion == "cross_attention":
        return TextEncoder(config)
    if config.fusion == "merged":
        return MergedEncoder(config)
    if config.fusion == "co_attention":
        return CoAttentionEncoder(config)
    if config.fusion == "none":
        return text_tower(config)
    return None


__all__ = ["ATTENTION_KINDS", "build_fusion", "similarity_map"]
