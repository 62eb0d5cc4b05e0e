"""The building blocks every tower and fusion kind is made of: attention, MLP, one transformer layer."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vqa.model.configuration import ShapesVLPConfig


class Attention(nn.Module):
    """Multi-head attention; self-attention when `context` is None, cross-attention otherwise.

    Uses the fused SDPA kernel unless the weights are asked for: only then are the
    (B, heads, T, S) probabilities materialised.
    """

    def __init__(self, config: ShapesVLPConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.hidden_size)
        # Scaled cosine attention (Swin V2): queries and keys are unit vectors and a learned
        # per-head scale sets how peaked attention may be. Starting at scale 10 lets a word
        # single out a few of the image's patches early in training instead of averaging them all.
        self.log_scale = nn.Parameter(torch.full((self.num_heads, 1, 1), math.log(10.0)))
        self.fused = None  # see fuse_projections

    def fuse_projections(self, cross_attention: bool) -> None:
        """Merge the projections that read the same input into one linear layer: query, key and value
        in self-attention, key and value in cross-attention. The results are the same; there are fewer,
        larger matrix multiplies. This pays under dynamic int8, where every linear call first quantizes
        its input (the model card has the timing). Applied when quantizing; the trained weights keep the
        separate layers."""
        names = ("key", "value") if cross_attention else ("query", "key", "value")
        parts = [getattr(self, name) for name in names]
        fused = nn.Linear(parts[0].in_features, sum(part.out_features for part in parts), device=parts[0].weight.device)
        with torch.no_grad():
            fused.weight.copy_(torch.cat([part.weight for part in parts]))  # (len(names) * H, H)
            fused.bias.copy_(torch.cat([part.bias for part in parts]))
        for name in names:
            delattr(self, name)
        self.fused = fused

    def project(self, x, context):
        """Queries from x, keys and values from context: each (B, T or S, H)."""
        if self.fused is None:
            return self.query(x), self.key(context), self.value(context)
        if hasattr(self, "query"):  # cross-attention: only keys and values share an input
            return (self.query(x), *self.fused(context).chunk(2, dim=-1))
        return self.fused(x).chunk(3, dim=-1)

    def forward(self, x, context=None, key_mask=None, causal=False, output_attentions=False, context_index=None, pair_mask=None):
        # x: (B, T, H); context: (B_ctx, S, H) or None; key_mask: (B_ctx, S) bool, True = may be attended to.
        # pair_mask: (T, S) bool, True where query t may attend to key s (the same for every row), or None.
        # context_index: (B,) the context row each row of x attends to, or None when B_ctx == B. Several
        # questions about one image then share its key/value projections instead of each projecting a copy.
        context = x if context is None else context
        B, T, _ = x.shape
        B_ctx, S, _ = context.shape
        q, k, v = self.project(x, context)
        q = q.reshape(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, heads, T, D)
        k = k.reshape(B_ctx, S, self.num_heads, self.head_dim).transpose(1, 2)  # (B_ctx, heads, S, D)
        v = v.reshape(B_ctx, S, self.num_heads, self.head_dim).transpose(1, 2)  # (B_ctx, heads, S, D)
        q = F.normalize(q, dim=-1) * self.log_scale.clamp(max=math.log(100.0)).exp()  # (B, heads, T, D), scale folded into q
        k = F.normalize(k, dim=-1)
        if context_index is not None:
            k, v = k[context_index], v[context_index]  # (B, heads, S, D)
            key_mask = None if key_mask is None else key_mask[context_index]  # (B, S)
        mask = None
        if key_mask is not None:
            mask = key_mask[:, None, None, :].bool()  # (B, 1, 1, S)
        if causal:
            pair_mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril()  # (T, S)
        if pair_mask is not None:
            mask = pair_mask if mask is None else mask & pair_mask
        weights = None
        if output_attentions:
            scores = q @ k.transpose(-1, -2)  # (B, heads, T, S)
            if mask is not None:
                scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            weights = scores.softmax(dim=-1)
            y = weights @ v  # (B, heads, T, D)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)
        y = y.transpose(1, 2).reshape(B, T, -1)  # (B, T, H)
        return self.out(y), weights


class MLP(nn.Module):
    def __init__(self, config: ShapesVLPConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class TransformerLayer(nn.Module):
    """Pre-norm transformer layer: self-attention, optional cross-attention, MLP.

    The same layer serves every tower: the vision tower (no cross-attention), the text encoder
    (cross-attention from the fusion layer up), the single stream (self-attention over text and
    image together), both streams of co-attention, and the decoder (causal, cross-attention).
    """

    def __init__(self, config: ShapesVLPConfig, cross_attention: bool):
        super().__init__()
        self.norm_self = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attention = Attention(config)
        self.norm_cross = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if cross_attention else None
        self.cross_attention = Attention(config) if cross_attention else None
        self.norm_mlp = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, mask=None, context=None, context_mask=None, causal=False, output_attentions=False, context_index=None, pair_mask=None):
        # x: (B, T, H); context: (B_ctx, S, H) or None; context_index, pair_mask (of the self-attention): see Attention
        attended, self_weights = self.self_attention(
            self.norm_self(x), key_mask=mask, causal=causal, output_attentions=output_attentions, pair_mask=pair_mask,
        )
        x = x + attended
        cross_weights = None
        if self.cross_attention is not None and context is not None:
            attended, cross_weights = self.cross_attention(
                self.norm_cross(x), context=context, key_mask=context_mask, output_attentions=output_attentions,
                context_index=context_index,
            )
            x = x + attended
        x = x + self.mlp(self.norm_mlp(x))
        return x, self_weights, cross_weights
