"""Word and position embeddings of a text sequence, for the text towers and the decoder."""

from __future__ import annotations

import torch
from torch import nn

from vqa.model.configuration import ShapesVLPConfig


class TextEmbeddings(nn.Module):
    def __init__(self, config: ShapesVLPConfig):
        super().__init__()
        self.words = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.positions = nn.Embedding(config.max_text_length, config.hidden_size)

    def forward(self, input_ids, position_ids=None):
        # input_ids: (B, T) -> (B, T, H); position_ids: (B, T), or None for 0 .. T-1 in every row
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)[None]  # (1, T)
        return self.words(input_ids) + self.positions(position_ids)


def text_tower_embeddings(config: ShapesVLPConfig) -> nn.Module:
    """The first stage of a text tower: the frozen pretrained encoder `config.text_encoder` names, or the tower's
    own word and position embeddings."""
    if config.text_encoder is None:
        return TextEmbeddings(config)
    from vqa.model.pretrained_text import PretrainedTextEmbeddings

    return PretrainedTextEmbeddings(config)
