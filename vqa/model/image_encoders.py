"""From pixels to image states: the patch embedders (a convolutional stem, MLIM's shallow CNN) and the
vision tower that reads their patches."""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers.models.vit_mae.modeling_vit_mae import build_2d_sinusoidal_position_embedding

from vqa.model.configuration import ShapesVLPConfig
from vqa.model.layers import TransformerLayer


class ConvStem(nn.Module):
    """Convolutions down to the patch grid ("Early convolutions help transformers see
    better", Xiao et al. 2021): a ViT learns far faster from these local features than
    from raw linear patch projections, which matters on a CPU.

    Each stage halves the image (3×3, stride 2) and refines it (3×3, stride 1); channels
    grow by two per stage and end at the hidden size. The stride-1 convolutions widen the
    receptive field of one grid cell from 15 to 43 pixels, enough to cover a large object
    (the model card has the measurement).
    """

    def __init__(self, config: ShapesVLPConfig):
        super().__init__()
        stages = int(math.log2(config.patch_size))
        channels = [config.num_channels] + [config.hidden_size // 2 ** (stages - 1 - i) for i in range(stages)]
        layers = []
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.GELU()]
            layers += [nn.Conv2d(c_out, c_out, kernel_size=3, stride=1, padding=1), nn.BatchNorm2d(c_out), nn.GELU()]
        layers.append(nn.Conv2d(channels[-1], config.hidden_size, kernel_size=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, pixel_values):
        # pixel_values: (B, C, image_size, image_size) -> (B, N, H)
        features = self.layers(pixel_values)  # (B, H, grid, grid)
        return features.flatten(2).transpose(1, 2)


def patch_position_encoding(config: ShapesVLPConfig) -> torch.Tensor:
    """(1, 1+N, H) fixed 2D sine-cosine encoding of each patch's row and column, zero for [CLS]."""
    encoding = build_2d_sinusoidal_position_embedding(config.grid_size, config.grid_size, config.hidden_size, cls_token=True)  # (1+N, H)
    return encoding[None].float()


class ShallowCNN(nn.Module):
    """MLIM's image embedder: 2×2 convolutions of stride 2, one per halving, so every pixel feeds exactly
    one output cell. Masking a patch embedding then erases that region of the image and nothing else,
    which is what lets a reconstruction loss ask for the hidden pixels back."""

    def __init__(self, config: ShapesVLPConfig):
        super().__init__()
        stages = int(math.log2(config.patch_size))
        channels = [config.num_channels] + [config.hidden_size // 2 ** (stages - 1 - i) for i in range(stages)]
        layers = []
        for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:])):
            layers.append(nn.Conv2d(c_in, c_out, kernel_size=2, stride=2))
            if i < stages - 1:
                layers.append(nn.GELU())
        self.layers = nn.Sequential(*layers)

    def forward(self, pixel_values):
        # pixel_values: (B, C, image_size, image_size) -> (B, N, H)
        return self.layers(pixel_values).flatten(2).transpose(1, 2)


IMAGE_EMBEDDERS = {"conv_stem": ConvStem, "shallow_cnn": ShallowCNN}


class VisionTransformer(nn.Module):
    """The image encoder: an embedder (`config.image_embedder`) down to the patch grid, an image [CLS],
    learned positions, then `vision_layers` transformer layers (none for a single stream that does all its
    work in the merged layers)."""

    def __init__(self, config: ShapesVLPConfig):
        super().__init__()
        self.config = config
        self.stem = IMAGE_EMBEDDERS[config.image_embedder](config)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size)) if config.image_mask_token else None
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.position_embeddings = nn.Parameter(torch.zeros(1, 1 + config.num_patches, config.hidden_size))
        self.layers = nn.ModuleList(TransformerLayer(config, cross_attention=False) for _ in range(config.vision_layers))
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        # Why position is added again at the output (as DETR adds it to the image keys of every
        # cross-attention): the objectives that train this tower (colour, shape and size of the object
        # under each patch) never need a patch's position, so the tower loses it, and the spatial
        # questions with it (the model card has the probe). Fixed sines, not learned, so that no
        # objective can wash them out; zero for the [CLS] slot.
        if config.output_position_encoding:
            self.register_buffer("output_position_encoding", patch_position_encoding(config), persistent=False)  # (1, 1+N, H)
        else:
            self.output_position_encoding = None

    def forward(self, pixel_values, output_attentions=False, patch_mask=None):
        # patch_mask: (B, N) bool, True = this patch is hidden behind the learned mask embedding
        expected = self.config.image_size
        if pixel_values.shape[-2:] != (expected, expected):
            raise ValueError(f"pixel_values must be {expected}×{expected} (use the image processor), got {tuple(pixel_values.shape[-2:])}")
        patches = self.stem(pixel_values)  # (B, N, H)
        if patch_mask is not None:
            if self.mask_token is None:
                raise ValueError("this model has no image mask embedding (config.image_mask_token)")
            patches = torch.where(patch_mask[..., None], self.mask_token.to(patches.dtype), patches)  # (B, N, H)
        cls = self.cls_token.expand(patches.shape[0], -1, -1)  # (B, 1, H)
        x = torch.cat([cls, patches], dim=1) + self.position_embeddings  # (B, 1+N, H)
        attentions = []
        for layer in self.layers:
            x, weights, _ = layer(x, output_attentions=output_attentions)
            attentions.append(weights)
        x = self.norm(x)  # (B, 1+N, H)
        if self.output_position_encoding is not None:
            x = x + self.output_position_encoding
        return x, tuple(attentions) if output_attentions else None
