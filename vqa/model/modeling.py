"""The embedded model: a small BLIP-style multimodal mixture of encoder-decoder.

Read top to bottom: attention, one transformer layer (used by all three towers),
the vision tower, the text encoder, the text decoder, then the model with its heads.

    image ─ conv stem ─ ViT layers ──────────────► image_embeds (B, 1+N, H)
                                                     │ cross-attention (layers >= fusion_layer)
    question ─ text layers 0 .. fusion_layer-1 ─ text layers fusion_layer .. ─► fused [CLS] ─► classifier head (answer vocabulary)
                                                                                 │          └► ITM head
                                                                                 ▼
                                           [ANS] ─ causal decoder (cross-attends to the fused question) ─► answer tokens
    image_embeds ──────────────────────► [CAP] ─ the same decoder (cross-attends to the image) ─► caption tokens
    image [CLS] / text-only [CLS] ─ projections ─► ITC similarity
    image patches ─ patch head ─► colour / shape / size of the object under each patch (training objective)

B = batch, N = patches = (image_size // patch_size)², T = text tokens, H = hidden size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithCrossAttentions
from transformers.models.vit_mae.modeling_vit_mae import build_2d_sinusoidal_position_embedding
from transformers.utils import ModelOutput

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
        its input: measured 12.8 -> 12.1 ms per classifier answer (fp32 unchanged, 18.0 / 18.2 ms).
        Applied when quantizing; the trained weights keep the separate layers."""
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

    def forward(self, x, context=None, key_mask=None, causal=False, output_attentions=False, context_index=None):
        # x: (B, T, H); context: (B_ctx, S, H) or None; key_mask: (B_ctx, S) bool, True = may be attended to.
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
            causal_mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril()  # (T, S)
            mask = causal_mask if mask is None else mask & causal_mask
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

    The same layer serves the vision tower (no cross-attention), the text encoder
    (cross-attention from the fusion layer up) and the decoder (causal, cross-attention).
    """

    def __init__(self, config: ShapesVLPConfig, cross_attention: bool):
        super().__init__()
        self.norm_self = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attention = Attention(config)
        self.norm_cross = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if cross_attention else None
        self.cross_attention = Attention(config) if cross_attention else None
        self.norm_mlp = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, mask=None, context=None, context_mask=None, causal=False, output_attentions=False, context_index=None):
        # x: (B, T, H); context: (B_ctx, S, H) or None; context_index: see Attention
        attended, self_weights = self.self_attention(self.norm_self(x), key_mask=mask, causal=causal, output_attentions=output_attentions)
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


class ConvStem(nn.Module):
    """Convolutions down to the patch grid ("Early convolutions help transformers see
    better", Xiao et al. 2021): a ViT learns far faster from these local features than
    from raw linear patch projections, which matters on a CPU.

    Each stage halves the image (3×3, stride 2) and refines it (3×3, stride 1); channels
    grow by two per stage and end at the hidden size. The stride-1 convolutions widen the
    receptive field of one grid cell from 15 to 43 pixels, enough to cover a large object:
    measured on the patch-attribute objective alone (vision tower only, 32 scenes a step),
    patch shape accuracy after 200 steps was 0.51 with one convolution per stage, 0.81 with two.
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


class VisionTransformer(nn.Module):
    def __init__(self, config: ShapesVLPConfig):
        super().__init__()
        self.config = config
        self.stem = ConvStem(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.position_embeddings = nn.Parameter(torch.zeros(1, 1 + config.num_patches, config.hidden_size))
        self.layers = nn.ModuleList(TransformerLayer(config, cross_attention=False) for _ in range(config.vision_layers))
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        # Why position is added again at the output (as DETR adds it to the image keys of every
        # cross-attention): the objectives that train this tower (colour, shape and size of the object
        # under each patch) never need a patch's position, so the tower loses it. Measured on a model
        # trained without this encoding: a linear probe read an object's x from its patches' output
        # with R² 0.72 (mean error 9% of the image width, more than the 6% minimum gap between two
        # objects), and "the shape left of the square" stayed at 0.3 with five objects in the scene.
        # Fixed sines, not learned, so that no objective can wash them out; zero for the [CLS] slot.
        if config.output_position_encoding:
            self.register_buffer("output_position_encoding", patch_position_encoding(config), persistent=False)  # (1, 1+N, H)
        else:
            self.output_position_encoding = None

    def forward(self, pixel_values, output_attentions=False):
        expected = self.config.image_size
        if pixel_values.shape[-2:] != (expected, expected):
            raise ValueError(f"pixel_values must be {expected}×{expected} (use the image processor), got {tuple(pixel_values.shape[-2:])}")
        patches = self.stem(pixel_values)  # (B, N, H)
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


class TextEmbeddings(nn.Module):
    def __init__(self, config: ShapesVLPConfig):
        super().__init__()
        self.words = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.positions = nn.Embedding(config.max_text_length, config.hidden_size)

    def forward(self, input_ids):
        # input_ids: (B, T) -> (B, T, H)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self.words(input_ids) + self.positions(positions)[None]


@dataclass
class TextEncoderOutput(ModelOutput):
    last_hidden_state: torch.FloatTensor | None = None  # (B, T, H)
    attentions: tuple | None = None  # per layer (B, heads, T, T)
    cross_attentions: tuple | None = None  # per fused layer (B, heads, T, 1+N)


class TextEncoder(nn.Module):
    """Bidirectional text encoder. Layers below `fusion_layer` see text only; layers
    from `fusion_layer` up also cross-attend to the image when `image_embeds` is given.
    Without image_embeds it is the unimodal text encoder used for ITC."""

    def __init__(self, config: ShapesVLPConfig):
        super().__init__()
        self.config = config
        self.embeddings = TextEmbeddings(config)
        self.layers = nn.ModuleList(
            TransformerLayer(config, cross_attention=i >= config.fusion_layer) for i in range(config.text_layers)
        )
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids, attention_mask, image_embeds=None, image_mask=None, output_attentions=False, image_index=None):
        # input_ids: (B, T); image_embeds: (B_img, 1+N, H); image_index: (B,) each text's image, None when B_img == B
        # image_mask: (B_img, 1+N) True = may be attended to; every image token when None
        if image_embeds is not None and image_mask is None:
            image_mask = torch.ones(image_embeds.shape[:2], dtype=torch.bool, device=image_embeds.device)  # (B_img, 1+N)
        x = self.embeddings(input_ids)  # (B, T, H)
        self_attentions, cross_attentions = [], []
        for layer in self.layers:
            x, self_weights, cross_weights = layer(
                x, mask=attention_mask, context=image_embeds, context_mask=image_mask, output_attentions=output_attentions,
                context_index=image_index,
            )
            self_attentions.append(self_weights)
            if layer.cross_attention is not None:
                cross_attentions.append(cross_weights)
        if not output_attentions:
            return TextEncoderOutput(last_hidden_state=self.norm(x))
        return TextEncoderOutput(
            last_hidden_state=self.norm(x),
            attentions=tuple(self_attentions),
            cross_attentions=tuple(cross_attentions) if image_embeds is not None else None,
        )


class ShapesVLPPreTrainedModel(PreTrainedModel):
    config_class = ShapesVLPConfig
    base_model_prefix = "shapes_vlp"
    main_input_name = "pixel_values"

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, VisionTransformer):
            nn.init.trunc_normal_(module.position_embeddings, std=std)
            nn.init.trunc_normal_(module.cls_token, std=std)
            if module.output_position_encoding is not None:  # a non-persistent buffer: from_pretrained rebuilds it here
                module.output_position_encoding.copy_(patch_position_encoding(self.config))


class ShapesVLPTextDecoder(ShapesVLPPreTrainedModel, GenerationMixin):
    """Causal text decoder with cross-attention in every layer: writes answers (attending
    to the fused question) and captions (attending to the image). A transformers
    `GenerationMixin` model, so greedy, beam search and nucleus sampling come from
    `generate(input_ids=start_tokens, encoder_hidden_states=..., encoder_attention_mask=...)`.
    """

    main_input_name = "input_ids"

    def __init__(self, config: ShapesVLPConfig):
        super().__init__(config)
        self.embeddings = TextEmbeddings(config)
        self.layers = nn.ModuleList(TransformerLayer(config, cross_attention=True) for _ in range(config.decoder_layers))
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()
        self.generation_config.use_cache = False  # see prepare_inputs_for_generation

    def forward(
        self,
        input_ids,
        attention_mask=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        labels=None,
        output_attentions=False,
        return_dict=True,
        **kwargs,  # generation passes bookkeeping such as use_cache / cache_position, which a cache-less decoder ignores
    ):
        # input_ids: (B, T); encoder_hidden_states: (B, S, H)
        if input_ids.shape[1] > self.config.max_text_length:
            input_ids = input_ids[:, -self.config.max_text_length :]
            attention_mask = attention_mask[:, -self.config.max_text_length :] if attention_mask is not None else None
        x = self.embeddings(input_ids)  # (B, T, H)
        self_attentions, cross_attentions = [], []
        for layer in self.layers:
            x, self_weights, cross_weights = layer(
                x, mask=attention_mask, context=encoder_hidden_states, context_mask=encoder_attention_mask,
                causal=True, output_attentions=output_attentions,
            )
            self_attentions.append(self_weights)
            cross_attentions.append(cross_weights)
        logits = self.lm_head(self.norm(x))  # (B, T, vocab)
        loss = None
        if labels is not None:
            # position t predicts token t+1; label -100 marks padding
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)
        return CausalLMOutputWithCrossAttentions(
            loss=loss,
            logits=logits,
            attentions=tuple(self_attentions) if output_attentions else None,
            cross_attentions=tuple(cross_attentions) if output_attentions else None,
        )

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None, **kwargs):
        # No key/value cache: answers are a few tokens and captions a few dozen, so
        # re-running the tiny decoder over the prefix costs less than the cache bookkeeping.
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "encoder_hidden_states": encoder_hidden_states,
            "encoder_attention_mask": encoder_attention_mask,
        }


@dataclass
class ShapesVLPOutput(ModelOutput):
    answer_logits: torch.FloatTensor | None = None  # (B, num_answers)
    itm_logits: torch.FloatTensor | None = None  # (B, 2): [no match, match]
    question_embeds: torch.FloatTensor | None = None  # (B, T, H) fused question states
    image_embeds: torch.FloatTensor | None = None  # (B_img, 1+N, H)
    vision_attentions: tuple | None = None  # per vision layer (B, heads, 1+N, 1+N)
    text_attentions: tuple | None = None  # per text layer (B, heads, T, T)
    cross_attentions: tuple | None = None  # per fused text layer (B, heads, T, 1+N)


class ShapesVLPForVQA(ShapesVLPPreTrainedModel):
    """The backbone with all its heads: VQA classifier, generative answers, captions, ITM, ITC."""

    def __init__(self, config: ShapesVLPConfig):
        super().__init__(config)
        hidden = config.hidden_size
        self.vision_model = VisionTransformer(config)
        self.text_encoder = TextEncoder(config)
        self.text_decoder = ShapesVLPTextDecoder(config)
        num_answers = len(config.id2label)
        self.vqa_head = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.LayerNorm(2 * hidden), nn.Linear(2 * hidden, num_answers))
        self.itm_head = nn.Linear(hidden, 2)
        # one extra class per attribute for "no object under this patch"
        self.patch_head = nn.Linear(hidden, sum(n + 1 for n in config.patch_attributes.values()))
        self.vision_proj = nn.Linear(hidden, config.itc_dim)
        self.text_proj = nn.Linear(hidden, config.itc_dim)
        # CLIP's learnable temperature, stored as log(1/0.07)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.post_init()

    def encode_image(self, pixel_values, output_attentions=False):
        """(B, C, S, S) pixels -> (B, 1+N, H) patch embeddings with [CLS] first."""
        return self.vision_model(pixel_values, output_attentions=output_attentions)

    def encode_question(self, input_ids, attention_mask, image_embeds, output_attentions=False, image_index=None) -> TextEncoderOutput:
        """Question tokens fused with the image through the cross-attention layers.
        image_embeds: (B_img, 1+N, H); image_index: (B,) which image each question is about, so that
        several questions about one image share its projections (None: one image per question)."""
        return self.text_encoder(input_ids, attention_mask, image_embeds=image_embeds, output_attentions=output_attentions, image_index=image_index)

    def forward(self, pixel_values=None, input_ids=None, attention_mask=None, image_embeds=None, output_attentions=False, return_dict=True, image_index=None):
        # image_index: (B,) the image (row of pixel_values / image_embeds) each question is about; None: row i for question i
        vision_attentions = None
        if image_embeds is None:
            image_embeds, vision_attentions = self.encode_image(pixel_values, output_attentions=output_attentions)
        fused = self.encode_question(input_ids, attention_mask, image_embeds, output_attentions=output_attentions, image_index=image_index)
        cls = fused.last_hidden_state[:, 0]  # (B, H) fused [CLS]
        return ShapesVLPOutput(
            answer_logits=self.vqa_head(cls),
            itm_logits=self.itm_head(cls),
            question_embeds=fused.last_hidden_state,
            image_embeds=image_embeds,
            vision_attentions=vision_attentions,
            text_attentions=fused.attentions,
            cross_attentions=fused.cross_attentions,
        )

    def patch_attribute_logits(self, image_embeds) -> dict[str, torch.Tensor]:
        """Per patch, logits over each attribute's values plus "none": {attribute: (B, N, values+1)}."""
        logits = self.patch_head(image_embeds[:, 1:])  # (B, N, sum(values+1))
        sizes = [n + 1 for n in self.config.patch_attributes.values()]
        return dict(zip(self.config.patch_attributes, logits.split(sizes, dim=-1)))

    def image_text_similarity(self, image_embeds, input_ids, attention_mask):
        """ITC: cosine similarity × learned scale between image [CLS] and unimodal text [CLS]. (B_img, B_txt)"""
        text = self.text_encoder(input_ids, attention_mask).last_hidden_state[:, 0]  # (B_txt, H)
        image_vec = F.normalize(self.vision_proj(image_embeds[:, 0]), dim=-1)  # (B_img, itc_dim)
        text_vec = F.normalize(self.text_proj(text), dim=-1)  # (B_txt, itc_dim)
        return self.logit_scale.exp().clamp(max=100) * image_vec @ text_vec.T
