"""The embedded models: one class for every architecture of the family, its parts chosen by the config.

    image ─ image encoder (conv stem or shallow CNN, ViT layers) ─► image_embeds (B_img, 1+N, H)
                                                                    │
    question ─────────────── fusion (config.fusion, vqa/model/fusion/) ─► FusionOutput: text states, image states,
                                                                    │    fused summary, text→image attention
                              fused summary ─► classifier head (answer vocabulary), ITM head
                              fused text states ─► [ANS] causal decoder ─► answer tokens; MLM head
    image_embeds ─► [CAP] the same decoder ─► caption tokens
    image [CLS] / unimodal text [CLS] ─ projections ─► ITC similarity
    image patches ─ patch head ─► colour / shape / size of the object under each patch
    fused image states ─ deconvolution decoder ─► the whole image again (MLIM's reconstruction)

Which heads exist is `config.heads`. Everything outside `vqa/model/` reads the model through its methods
and output types (`encode_image`, `fuse`, `forward`, `answer_decoder_inputs`, `ShapesVLPOutput`), never
through its submodules.

B = batch, N = patches = (image_size // patch_size)², T = text tokens, H = hidden size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithCrossAttentions

from vqa.model.configuration import ShapesVLPConfig
from vqa.model.fusion import ATTENTION_KINDS, build_fusion, similarity_map
from vqa.model.fusion.decoder import decoder_fusion
from vqa.model.image_encoders import VisionTransformer, patch_position_encoding
from vqa.model.layers import TransformerLayer
from vqa.model.outputs import FusionOutput, ShapesVLPOutput
from vqa.model.text_embeddings import TextEmbeddings


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
            if module.mask_token is not None:
                nn.init.trunc_normal_(module.mask_token, std=std)
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
        output_hidden_states=False,
        prefix_length=0,
        return_dict=True,
        **kwargs,  # generation passes bookkeeping such as use_cache / cache_position, which a cache-less decoder ignores
    ):
        # input_ids: (B, T); encoder_hidden_states: (B, S, H)
        if input_ids.shape[1] > self.config.max_text_length:
            input_ids = input_ids[:, -self.config.max_text_length :]
            attention_mask = attention_mask[:, -self.config.max_text_length :] if attention_mask is not None else None
        # prefix_length: the first tokens see each other both ways (PrefixLM), the rest only what came before
        # each token's position counts the real tokens before it: the encoder-decoder writes its answer after the
        # question's padding, and the answer's positions then do not depend on how long the batch's longest question is
        position_ids = None if attention_mask is None else (attention_mask.long().cumsum(1) - 1).clamp(min=0)  # (B, T)
        x = self.embeddings(input_ids, position_ids)  # (B, T, H)
        pair_mask = None
        if prefix_length:
            T = input_ids.shape[1]
            causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()  # (T, T)
            in_prefix = torch.arange(T, device=x.device) < prefix_length  # (T,)
            pair_mask = causal | (in_prefix[:, None] & in_prefix[None, :])
        self_attentions, cross_attentions = [], []
        for layer in self.layers:
            x, self_weights, cross_weights = layer(
                x, mask=attention_mask, context=encoder_hidden_states, context_mask=encoder_attention_mask,
                causal=pair_mask is None, output_attentions=output_attentions, pair_mask=pair_mask,
            )
            self_attentions.append(self_weights)
            cross_attentions.append(cross_weights)
        states = self.norm(x)  # (B, T, H)
        logits = self.lm_head(states)  # (B, T, vocab)
        loss = None
        if labels is not None:
            # position t predicts token t+1; label -100 marks padding
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)
        return CausalLMOutputWithCrossAttentions(
            loss=loss,
            logits=logits,
            hidden_states=(states,) if output_hidden_states else None,
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


class ReconstructionDecoder(nn.Module):
    """MLIM's RECON head: the fused patch states, laid out on their grid, are upsampled back to the full
    image by transposed convolutions (one per halving the embedder did), ending in a sigmoid so that each
    output is a pixel intensity in [0, 1]."""

    def __init__(self, config: ShapesVLPConfig):
        super().__init__()
        self.config = config
        stages = int(math.log2(config.patch_size))
        channels = [config.hidden_size // 2**i for i in range(stages)] + [config.num_channels]
        layers = []
        for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:])):
            layers.append(nn.ConvTranspose2d(c_in, c_out, kernel_size=2, stride=2))
            if i < stages - 1:
                layers.append(nn.GELU())
        self.layers = nn.Sequential(*layers)

    def forward(self, image_states):
        # image_states: (B, 1+N, H) -> (B, C, image_size, image_size) in [0, 1]
        grid = self.config.grid_size
        patches = image_states[:, 1:].transpose(1, 2).reshape(image_states.shape[0], -1, grid, grid)  # (B, H, grid, grid)
        return torch.sigmoid(self.layers(patches))


class ShapesVLPForVQA(ShapesVLPPreTrainedModel):
    """An image encoder, a fusion module of `config.fusion`, an optional text decoder, and the heads in
    `config.heads`."""

    def __init__(self, config: ShapesVLPConfig):
        super().__init__(config)
        hidden = config.hidden_size
        heads = set(config.heads)
        self.vision_model = VisionTransformer(config)
        self.fusion = build_fusion(config)
        self.text_decoder = ShapesVLPTextDecoder(config) if "lm" in heads else None
        if "classifier" in heads:
            num_answers = len(config.id2label)
            self.vqa_head = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.LayerNorm(2 * hidden), nn.Linear(2 * hidden, num_answers))
        if "itm" in heads:
            self.itm_head = nn.Linear(hidden, 2)
        if "patch" in heads:
            # one extra class per attribute for "no object under this patch"
            self.patch_head = nn.Linear(hidden, sum(n + 1 for n in config.patch_attributes.values()))
        if "itc" in heads:
            self.vision_proj = nn.Linear(hidden, config.itc_dim)
            self.text_proj = nn.Linear(hidden, config.itc_dim)
            # CLIP's learnable temperature, stored as log(1/0.07)
            self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        if "mlm" in heads:  # MLIM's two-layer MLP head over the word vocabulary
            self.mlm_head = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden), nn.Linear(hidden, config.vocab_size))
        if "recon" in heads:
            self.recon_head = ReconstructionDecoder(config)
        self.post_init()

    # ----- what the model can do -------------------------------------------------------
    def has_head(self, name: str) -> bool:
        return name in self.config.heads

    @property
    def attention_kind(self) -> str:
        """What `text_to_image` holds for this architecture, in words for a label."""
        return ATTENTION_KINDS[self.config.fusion]

    @classmethod
    def full_precision_modules(cls, config: ShapesVLPConfig) -> list[str]:
        """The layers that write final scores (answer vocabulary, ITM, token vocabulary): quantization schemes
        that can leave layers out keep these in full precision, so that rounding does not land on the scores."""
        names = {"classifier": "vqa_head", "itm": "itm_head", "lm": "lm_head", "mlm": "mlm_head"}
        return [module for head, module in names.items() if head in config.heads]

    # ----- the passes ------------------------------------------------------------------
    def encode_image(self, pixel_values, output_attentions=False, patch_mask=None):
        """(B, C, S, S) pixels -> ((B, 1+N, H) image embeddings with [CLS] first, vision attentions).
        patch_mask: (B, N) True for patches hidden behind the mask embedding (config.image_mask_token)."""
        return self.vision_model(pixel_values, output_attentions=output_attentions, patch_mask=patch_mask)

    def fuse(self, input_ids, attention_mask, image_embeds, image_index=None, output_attentions=False) -> FusionOutput:
        """Texts read together with their images. image_embeds: (B_img, 1+N, H); image_index: (B,) which
        image each text is about, so that several texts about one image share its encoding (None: row i
        for text i)."""
        if self.config.fusion == "decoder":
            return decoder_fusion(self.text_decoder, input_ids, attention_mask, image_embeds, image_index, output_attentions)
        fused = self.fusion(input_ids, attention_mask, image_embeds, image_index=image_index, output_attentions=output_attentions)
        if self.config.fusion == "none" and output_attentions:
            maps = similarity_map(fused.text_states, fused.image_states, self.text_proj, self.vision_proj, self.logit_scale)
            fused.text_to_image, fused.text_self_attentions = (maps,), None
        return fused

    def forward(self, pixel_values=None, input_ids=None, attention_mask=None, image_embeds=None, output_attentions=False,
                return_dict=True, image_index=None, patch_mask=None) -> ShapesVLPOutput:
        # image_index: (B,) the image (row of pixel_values / image_embeds) each question is about; None: row i for question i
        vision_attentions = None
        if image_embeds is None:
            image_embeds, vision_attentions = self.encode_image(pixel_values, output_attentions=output_attentions, patch_mask=patch_mask)
        fused = self.fuse(input_ids, attention_mask, image_embeds, image_index=image_index, output_attentions=output_attentions)
        return ShapesVLPOutput(
            answer_logits=self.vqa_head(fused.pooled) if self.has_head("classifier") else None,
            itm_logits=self.itm_head(fused.pooled) if self.has_head("itm") else None,
            text_states=fused.text_states,
            image_states=fused.image_states,
            pooled=fused.pooled,
            image_embeds=image_embeds,
            vision_attentions=vision_attentions,
            text_to_image=fused.text_to_image,
            text_self_attentions=fused.text_self_attentions,
        )

    def answer_decoder_inputs(self, question_ids, question_mask, text_states, image_states, answer=None) -> dict:
        """The text decoder's inputs for writing answers: BLIP's decoder starts at [ANS] and cross-attends to the
        fused question states; an encoder-decoder reads "[CLS] question [SEP] [ANS]" itself and cross-attends to
        the image. `answer`: `processor.decoder_targets` of the answers, to train on (labels set on them only);
        None: the prompt to generate from. question_ids: (B, T); text_states: (B, T, H); image_states: (B, 1+N, H)."""
        B = question_ids.shape[0]
        if answer is None:
            start = torch.full((B, 1), self.config.answer_start_token_id, dtype=question_ids.dtype, device=question_ids.device)
            answer = {"input_ids": start, "attention_mask": torch.ones_like(start)}
        if self.config.fusion != "decoder":
            return {**answer, "encoder_hidden_states": text_states, "encoder_attention_mask": question_mask}
        inputs = {
            "input_ids": torch.cat([question_ids, answer["input_ids"]], dim=1),  # (B, T + A)
            "attention_mask": torch.cat([question_mask, answer["attention_mask"]], dim=1),
            "encoder_hidden_states": image_states,
        }
        if "labels" in answer:
            labels = answer["labels"].clone()
            labels[:, 0] = -100  # [ANS] is given, not predicted
            inputs["labels"] = torch.cat([torch.full_like(question_ids, -100), labels], dim=1)
        return inputs

    # ----- heads ------------------------------------------------------------------------
    def generate_text(self, **prompt_and_settings):
        """The text decoder writes from a prompt (`answer_decoder_inputs`, or [CAP] with `encoder_hidden_states`
        set to the image embeddings), with any of transformers' `generate` settings."""
        return self.text_decoder.generate(**prompt_and_settings)

    def text_decoder_loss(self, **inputs) -> torch.Tensor:
        """The decoder's next-token cross-entropy on `inputs` (ids, mask, labels, what it cross-attends to)."""
        return self.text_decoder(**inputs).loss

    def patch_attribute_logits(self, image_states) -> dict[str, torch.Tensor]:
        """Per patch, logits over each attribute's values plus "none": {attribute: (B, N, values+1)}."""
        logits = self.patch_head(image_states[:, 1:])  # (B, N, sum(values+1))
        sizes = [n + 1 for n in self.config.patch_attributes.values()]
        return dict(zip(self.config.patch_attributes, logits.split(sizes, dim=-1)))

    def text_embedding(self, input_ids, attention_mask) -> torch.Tensor:
        """(B, itc_dim) unit vectors of the unimodal text [CLS] in the contrastive space."""
        text = self.fusion.encode_text(input_ids, attention_mask)[:, 0]  # (B, H)
        return F.normalize(self.text_proj(text), dim=-1)

    def image_embedding(self, image_embeds) -> torch.Tensor:
        """(B, itc_dim) unit vectors of the image [CLS] in the contrastive space."""
        return F.normalize(self.vision_proj(image_embeds[:, 0]), dim=-1)

    def contrastive_scores(self, image_vectors, text_vectors) -> torch.Tensor:
        """(B_img, B_txt) cosine similarities × the learned temperature, from `image_embedding` / `text_embedding`."""
        return self.logit_scale.exp().clamp(max=100) * image_vectors @ text_vectors.T

    def image_text_similarity(self, image_embeds, input_ids, attention_mask):
        """ITC: cosine similarity × learned scale between image [CLS] and unimodal text [CLS]. (B_img, B_txt)"""
        return self.contrastive_scores(self.image_embedding(image_embeds), self.text_embedding(input_ids, attention_mask))

    def match_logits(self, input_ids, attention_mask, image_embeds, image_index=None) -> torch.Tensor:
        """ITM: (B, 2) logits [no match, match] of each text read together with its image. input_ids: (B, T);
        image_embeds: (B_img, 1+N, H); image_index: (B,) which image each text is paired with, as in `fuse`."""
        pooled = self.fuse(input_ids, attention_mask, image_embeds, image_index=image_index).pooled  # (B, H)
        return self.itm_head(pooled)

    def mlm_logits(self, text_states) -> torch.Tensor:
        """(B, T, vocab) the word at each position, from fused text states."""
        return self.mlm_head(text_states)

    def reconstruct(self, image_states) -> torch.Tensor:
        """(B, C, S, S) in [0, 1]: the image back from fused image states (B, 1+N, H)."""
        return self.recon_head(image_states)

    # ----- deployment -------------------------------------------------------------------
    def quantize_int8_(self, calibration_pixels: list[torch.Tensor]) -> None:
        """The "int8" scheme, in place: static int8 for the image embedder's convolutions (dynamic quantization
        leaves them in fp32, though they are about half the work of encoding an image), calibrated on
        `calibration_pixels` (a list of (B, C, S, S) batches that look like real inputs); each attention's
        projections that read one input merged into one linear layer; then dynamic int8 for every linear layer."""
        from vqa.quantization import dynamic_int8, static_int8_convolutions

        stem = self.vision_model.stem
        stem.layers = static_int8_convolutions(stem.layers, calibration_pixels)
        for layer in self.modules():
            if isinstance(layer, TransformerLayer):  # fewer, larger int8 matrix multiplies
                layer.self_attention.fuse_projections(cross_attention=False)
                if layer.cross_attention is not None:
                    layer.cross_attention.fuse_projections(cross_attention=True)
        dynamic_int8(self)

    def embed_text(self, input_ids) -> torch.Tensor:
        """(B, T) ids -> (B, T, H): the first stage of the text tower, the input of the traced "answer" path."""
        return self.fusion.embeddings(input_ids)

    def traceable_paths(self) -> dict[str, nn.Module]:
        """The hot paths as small modules to trace: "encode_image" (pixels -> image embeddings) and, with a
        classifier, "answer" ((`embed_text(input_ids)`, attention_mask, image_embeds) -> (answer logits, fused text
        states)). The text embedding stays outside the trace: a pretrained text encoder cannot be traced here."""
        paths = {"encode_image": _ImageEncodingPath(self.vision_model)}
        if self.has_head("classifier"):
            paths["answer"] = _AnswerPath(self.fusion, self.vqa_head)
        return paths


# The paths hold only the submodules they run: tracing inspects every attribute of every submodule,
# and the text decoder's PreTrainedModel properties would log deprecation notices.
class _ImageEncodingPath(nn.Module):
    def __init__(self, vision_model: VisionTransformer):
        super().__init__()
        self.vision_model = vision_model

    def forward(self, pixel_values):
        return self.vision_model(pixel_values)[0]  # (B, 1+N, H)


class _AnswerPath(nn.Module):
    def __init__(self, fusion: nn.Module, vqa_head: nn.Module):
        super().__init__()
        self.fusion = fusion
        self.vqa_head = vqa_head

    def forward(self, text_embeds, attention_mask, image_embeds):
        fused = self.fusion(None, attention_mask, image_embeds, text_embeds=text_embeds)
        return self.vqa_head(fused.pooled), fused.text_states  # (B, answers), (B, T, H)
