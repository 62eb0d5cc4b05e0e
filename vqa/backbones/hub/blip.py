"""BLIP (Salesforce): a ViT image encoder, and a BERT-style text transformer whose layers
cross-attend to the image patches ("mixture of encoder-decoder").

Three task checkpoints share that design:
- `BlipForQuestionAnswering`: the question is encoded *with* the image (cross-attention in
  every text layer); an answer decoder then reads the question encoding. Answers are
  generated (greedy / beam / nucleus) or ranked: each candidate answer is scored by its
  decoder log-likelihood and a softmax runs over the candidates, like BLIP's "rank" inference.
- `BlipForConditionalGeneration`: a decoder that cross-attends to the image writes captions.
- `BlipForImageTextRetrieval`: image-text matching (ITM, through the cross-attending text
  encoder) and contrastive similarity (ITC, the two unimodal [CLS] embeddings).

The image encoder's self-attention runs through PyTorch's fused `scaled_dot_product_attention`
(`BlipVisionSdpaAttention`): transformers 5.23's BLIP computes it with separate matmuls.

The image encoding (`vision_model`'s last hidden state) is computed once per image and reused:
`BlipForQuestionAnswering.generate` would recompute it on every call, so the generation
recipe is spelled out here around the cached encoding (same calls, same order).

So are the keys and values that every cross-attention layer of the text encoder projects
from that encoding: they depend on the image alone, and for BLIP-base they are most of the
text encoder's work on a question (577 image tokens against ~10 question tokens). They go
into a transformers `EncoderDecoderCache` whose cross-attention part is already filled, the
way generation reuses cross-attention keys and values between decoding steps.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from transformers import BlipForConditionalGeneration, BlipForImageTextRetrieval, BlipForQuestionAnswering
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.models.blip.modeling_blip import BlipAttention

from vqa.backbones.hub.common import (
    DEFAULT_CANDIDATES_NOTE,
    HubBackbone,
    candidate_list,
    clean_texts,
    generated_log_likelihood,
    generation_kwargs,
    patch_grid,
    patches_to_grid,
    ranked,
    scored_positions,
    seeded,
    sequence_log_likelihood,
    softmax_ranking,
    stack_layers,
)
from vqa.backbones.image_cache import ImageEncodingCache, image_key
from vqa.results import Answer, AttentionMaps, Caption

# Images whose text-encoder cross-attention keys and values are kept (see BlipBackbone.__init__).
CROSS_CACHE_ENTRIES = 4


class BlipVisionSdpaAttention(BlipAttention):
    """BLIP's image-encoder attention, computed by PyTorch's fused `scaled_dot_product_attention`.

    Same weights and result as `BlipAttention` (which has no SDPA path in transformers 5.23) but
    without materialising the (heads, 577, 577) score and probability tensors of BLIP-base in
    separate steps; bench/bench_hub_blip.py measures the difference. It returns no attention
    weights: the app's maps are the text encoder's cross-attention, not the image encoder's.
    """

    def forward(self, hidden_states: torch.Tensor, **kwargs) -> tuple[torch.Tensor, None]:
        batch, length, embed_dim = hidden_states.shape
        qkv = self.qkv(hidden_states).reshape(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (3, B, heads, T, head_dim)
        context = F.scaled_dot_product_attention(
            qkv[0], qkv[1], qkv[2], dropout_p=self.dropout.p if self.training else 0.0, scale=self.scale,
        )  # (B, heads, T, head_dim)
        return self.projection(context.transpose(1, 2).reshape(batch, length, embed_dim)), None


def use_sdpa_vision_attention(vision_model: torch.nn.Module) -> None:
    """Switch every `BlipAttention` of the image encoder to `BlipVisionSdpaAttention` in place (weights untouched)."""
    for module in vision_model.modules():
        if type(module) is BlipAttention:
            module.__class__ = BlipVisionSdpaAttention


class BlipBackbone(HubBackbone):
    """What the three BLIP heads share: the cached image encoding and the cross-attention maps."""

    family = "blip"
    fusion = "mixture of encoder-decoder with cross-attention (BLIP)"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        use_sdpa_vision_attention(self.model.vision_model)
        # Per image: 2 × layers × (1+N) × hidden floats, about 42 MB at BLIP-base size, so fewer entries
        # than the image-encoding cache (the encoding itself is 1/24 of that).
        self.cross_keys_values = ImageEncodingCache(max_entries=CROSS_CACHE_ENTRIES)

    def clear_caches(self) -> None:
        super().clear_caches()
        self.cross_keys_values.clear()

    @property
    def grid(self) -> tuple[int, int]:
        vision = self.config.vision_config
        return patch_grid(vision.image_size, vision.patch_size)

    @property
    def max_text_length(self) -> int:
        return self.config.text_config.max_position_embeddings

    @torch.inference_mode()
    def _encode_image(self, image):
        return self.model.vision_model(pixel_values=self.pixel_values(image)).last_hidden_state  # (1, 1+gh*gw, D)

    @torch.inference_mode()
    def _cross_keys_values(self, image_embeds: torch.Tensor) -> DynamicCache:
        """Every text-encoder cross-attention layer's keys and values over the image, (1, heads, 1+N, head_dim) each."""
        cache = DynamicCache()
        for index, layer in enumerate(self.model.text_encoder.encoder.layer):
            attention = layer.crossattention.self
            shape = (*image_embeds.shape[:-1], -1, attention.attention_head_size)  # (1, 1+N, heads, head_dim)
            keys = attention.key(image_embeds).view(shape).transpose(1, 2)
            values = attention.value(image_embeds).view(shape).transpose(1, 2)
            cache.update(keys, values, index)
        return cache

    def image_cache_for_text(self, image) -> tuple[torch.Tensor, EncoderDecoderCache]:
        """The image encoding and a fresh text-encoder cache whose cross-attention part holds this
        image's keys and values (computed once per image; the self-attention part starts empty)."""
        key = image_key(image, self.quantization)  # hashed once for both caches
        image_embeds = self.encode_image(image, key)
        cross = self.cross_keys_values.get_or_compute(key, lambda: self._cross_keys_values(image_embeds))
        return image_embeds, EncoderDecoderCache(DynamicCache(), cross)

    def _grounded_text(self, image, text: str, output_attentions: bool = False):
        """The text encoder reading `text` while cross-attending to the image (BLIP's image-grounded encoder)."""
        image_embeds, cache = self.image_cache_for_text(image)
        enc = self.tokenize(text, self.max_text_length)
        out = self.model.text_encoder(
            input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], encoder_hidden_states=image_embeds,
            encoder_attention_mask=torch.ones(image_embeds.shape[:-1], dtype=torch.long),
            past_key_values=cache, output_attentions=output_attentions,
        )
        return enc, out

    def _decoder_inputs(self, texts: list[str] | str) -> torch.Tensor:
        """Tokenized text with [CLS] replaced by the decoder's start token ([DEC]), as BLIP trains it."""
        ids = self.tokenize(texts, self.max_text_length)["input_ids"].clone()
        ids[:, 0] = self.config.text_config.bos_token_id
        return ids

    def _generate(self, encoder_states: torch.Tensor, prompt: torch.Tensor, decoding: dict, seed):
        """The text decoder's `generate`, cross-attending to `encoder_states` (question or image)."""
        text = self.config.text_config
        with seeded(seed if decoding.get("do_sample") else None):
            return self.model.text_decoder.generate(
                input_ids=prompt, eos_token_id=text.sep_token_id, pad_token_id=text.pad_token_id,
                encoder_hidden_states=encoder_states,
                encoder_attention_mask=torch.ones(encoder_states.shape[:-1], dtype=torch.long), **decoding,
            )

    def _decode(self, sequences: torch.Tensor) -> list[str]:
        return [t.strip() for t in self.tokenizer.batch_decode(sequences, skip_special_tokens=True)]

    def _text_encoder_maps(self, image, text: str, answer: str | None, note: str) -> AttentionMaps:
        enc, out = self._grounded_text(image, text, output_attentions=True)
        cross = stack_layers(out.cross_attentions)[:, :, :, 1:]  # (layers, heads, tokens, gh*gw): vision CLS dropped
        return self.attention_maps(
            patches_to_grid(cross, self.grid), self.token_strings(enc["input_ids"][0]), image, "cross-attention",
            note, text_self=stack_layers(out.attentions).float().numpy(), answer=answer,
        )

    def facts(self) -> dict[str, str]:
        vision, text = self.config.vision_config, self.config.text_config
        gh, gw = self.grid
        return {
            "vision encoder": f"ViT, {vision.num_hidden_layers} layers, hidden {vision.hidden_size}, "
                              f"{vision.num_attention_heads} heads",
            "text transformer": f"{text.num_hidden_layers} layers, hidden {text.hidden_size}, "
                                f"{text.num_attention_heads} heads, cross-attention to the image in every layer",
            "patch grid": f"{gh} × {gw} patches of {vision.patch_size} px ({vision.image_size} px image)",
            "vocabulary": f"{text.vocab_size} WordPiece tokens",
        }


class BlipVqaBackbone(BlipBackbone):
    """`BlipForQuestionAnswering`: generative answers, or ranking of candidate answers."""

    capabilities = frozenset({"classifier", "generative", "explain"})
    model_class = BlipForQuestionAnswering
    description = ("BLIP VQA: the question is encoded while cross-attending to the image patches, then an "
                   "answer decoder writes the answer word by word.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.notes.append(DEFAULT_CANDIDATES_NOTE)
        self.notes.append("Classifier head = BLIP's rank inference: each candidate answer is scored by the "
                          "decoder's log-likelihood and a softmax runs over the candidates.")

    def _question_states(self, image, question: str) -> torch.Tensor:
        return self._grounded_text(image, question)[1].last_hidden_state  # (1, T, D)

    def _answer_log_likelihood(self, question_states: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
        """log p(answer tokens up to [SEP] | question), one per row of `answers` ([DEC] first), in one pass."""
        n = answers.shape[0]
        states = question_states.expand(n, -1, -1)
        logits = self.model.text_decoder(
            input_ids=answers, attention_mask=(answers != self.config.text_config.pad_token_id).long(),
            encoder_hidden_states=states, encoder_attention_mask=torch.ones(states.shape[:-1], dtype=torch.long),
        ).logits  # (n, T, V)
        mask = scored_positions(answers, 1, self.config.text_config.sep_token_id)
        return sequence_log_likelihood(logits, answers, mask)

    @torch.inference_mode()
    def _classify(self, image, question, top_k, candidates) -> Answer:
        answers = candidate_list(candidates)
        states = self._question_states(image, question)
        scores = self._answer_log_likelihood(states, self._decoder_inputs(answers))
        return softmax_ranking(answers, scores, top_k)

    @torch.inference_mode()
    def _generate_answer(self, image, question, decoding, num_beams, top_p, temperature, max_new_tokens, top_k,
                         seed) -> Answer:
        states = self._question_states(image, question)
        start = torch.full((1, 1), self.config.text_config.bos_token_id, dtype=torch.long)
        num_return = 1 if decoding == "greedy" else top_k
        out = self._generate(states, start,
                             generation_kwargs(decoding, num_beams, top_p, temperature, max_new_tokens, num_return),
                             seed)
        scores = generated_log_likelihood(out, 1, self.config.text_config.sep_token_id)
        candidates = ranked(self._decode(out.sequences), scores, top_k)
        return Answer(answer=candidates[0][0], score=candidates[0][1], candidates=candidates, head="generative")

    @torch.inference_mode()
    def _explain(self, image, question, answer) -> AttentionMaps:
        return self._text_encoder_maps(
            image, question, answer,
            "Cross-attention of each question token onto the image patches in BLIP's image-grounded question "
            "encoder. The answer decoder reads the image only through these question tokens.",
        )


class BlipCaptionBackbone(BlipBackbone):
    """`BlipForConditionalGeneration`: captions, optionally continuing a text prompt."""

    capabilities = frozenset({"caption", "explain"})
    model_class = BlipForConditionalGeneration
    description = "BLIP captioning: a text decoder that cross-attends to the image patches writes a caption."

    def _prompt_ids(self, prompt: str | None) -> torch.Tensor:
        if not prompt:
            return torch.full((1, 1), self.config.text_config.bos_token_id, dtype=torch.long)
        return self._decoder_inputs(prompt)[:, :-1]  # drop [SEP]: the decoder continues the prompt

    @torch.inference_mode()
    def _caption(self, image, decoding, num_captions, num_beams, top_p, temperature, max_new_tokens, prompt,
                 seed):
        image_embeds = self.encode_image(image)
        prompt_ids = self._prompt_ids(prompt)
        num_return = 1 if decoding == "greedy" else num_captions
        out = self._generate(image_embeds, prompt_ids,
                             generation_kwargs(decoding, num_beams, top_p, temperature, max_new_tokens, num_return),
                             seed)
        scores = generated_log_likelihood(out, prompt_ids.shape[1], self.config.text_config.sep_token_id)
        candidates = ranked(self._decode(out.sequences), scores, num_captions)
        return Caption(text=candidates[0][0], score=candidates[0][1], candidates=candidates)

    @torch.inference_mode()
    def _explain(self, image, question, answer) -> AttentionMaps:
        """Decoder cross-attention for each token of the caption (`answer`, or the greedy caption)."""
        image_embeds = self.encode_image(image)
        if answer:
            sequence = self._decoder_inputs(answer)
        else:
            sequence = self._generate(image_embeds, self._prompt_ids(None),
                                      generation_kwargs("greedy", 1, 1.0, 1.0, 30, 1), None).sequences
        out = self.model.text_decoder(input_ids=sequence, encoder_hidden_states=image_embeds,
                                      encoder_attention_mask=torch.ones(image_embeds.shape[:-1], dtype=torch.long),
                                      output_attentions=True)
        # Row t is the attention while the decoder chose token t + 1: pair it with that token.
        cross = stack_layers(out.cross_attentions)[:, :, :-1, 1:]
        caption = self._decode(sequence)[0]
        return self.attention_maps(
            patches_to_grid(cross, self.grid), self.token_strings(sequence[0, 1:]), image, "cross-attention",
            "Cross-attention of BLIP's caption decoder onto the image patches while it wrote each caption token "
            "(a captioning model does not read the question).", answer=caption,
        )


class BlipRetrievalBackbone(BlipBackbone):
    """`BlipForImageTextRetrieval`: image-text matching, usable to rank candidate answers or captions."""

    capabilities = frozenset({"classifier", "explain", "itm"})
    model_class = BlipForImageTextRetrieval
    description = ("BLIP image-text matching: a text encoder that cross-attends to the image decides whether "
                   "a text matches the image (ITM); the unimodal embeddings give a contrastive similarity (ITC).")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.notes.append(DEFAULT_CANDIDATES_NOTE)
        self.notes.append("Classifier head: each candidate is appended to the question and scored by the ITM "
                          "head's match-vs-no-match logit; a softmax over the candidates gives the probabilities.")

    def _itm_logits(self, image, texts: list[str]) -> torch.Tensor:
        """(n, 2) ITM logits [no match, match] for each text against the image. The image's cross-attention keys
        and values are computed once per image (and cached) and shared by every text as broadcast views, so
        re-ranking many candidate texts does not project the image again for each."""
        image_embeds, cache = self.image_cache_for_text(image)
        count = len(texts)
        shared = DynamicCache()
        for index, layer in enumerate(cache.cross_attention_cache.layers):
            shared.update(layer.keys.expand(count, -1, -1, -1), layer.values.expand(count, -1, -1, -1), index)  # (n, heads, 1+N, head_dim)
        enc = self.tokenize(texts, self.max_text_length)
        states = image_embeds.expand(count, -1, -1)  # (n, 1+N, D)
        out = self.model.text_encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                      encoder_hidden_states=states, encoder_attention_mask=torch.ones(states.shape[:-1], dtype=torch.long),
                                      past_key_values=EncoderDecoderCache(DynamicCache(), shared))
        return self.model.itm_head(out.last_hidden_state[:, 0, :]).float()

    def _itc_similarity(self, image_embeds: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """(n,) cosine similarity of the projected image and text [CLS] embeddings (no cross-attention)."""
        enc = self.tokenize(texts, self.max_text_length)
        text_states = self.model.text_encoder(input_ids=enc["input_ids"],
                                              attention_mask=enc["attention_mask"]).last_hidden_state
        image_feat = torch.nn.functional.normalize(self.model.vision_proj(image_embeds[:, 0, :]).float(), dim=-1)
        text_feat = torch.nn.functional.normalize(self.model.text_proj(text_states[:, 0, :]).float(), dim=-1)
        return (text_feat @ image_feat.T).squeeze(-1)

    @torch.inference_mode()
    def _match(self, images: list, texts: list[str]) -> np.ndarray:
        """(len(images), len(texts)) ITM match probabilities, each image encoded once (cached) for all texts."""
        rows = [torch.softmax(self._itm_logits(image, texts), dim=-1)[:, 1].float() for image in images]  # (T,) each
        return torch.stack(rows).numpy()

    @torch.inference_mode()
    def score_texts(self, image, texts: list[str]) -> list[dict]:
        """For each text: ITM match probability and ITC cosine similarity with the image."""
        from vqa.image_io import load_image

        pil = load_image(image)
        texts = clean_texts(texts)
        itm = torch.softmax(self._itm_logits(pil, texts), dim=-1)[:, 1]
        itc = self._itc_similarity(self.encode_image(pil), texts)
        return [{"text": t, "itm_probability": float(p), "itc_similarity": float(s)}
                for t, p, s in zip(texts, itm.tolist(), itc.tolist())]

    @torch.inference_mode()
    def _classify(self, image, question, top_k, candidates) -> Answer:
        answers = candidate_list(candidates)
        logits = self._itm_logits(image, [f"{question} {a}" for a in answers])
        return softmax_ranking(answers, logits[:, 1] - logits[:, 0], top_k)

    @torch.inference_mode()
    def _explain(self, image, question, answer) -> AttentionMaps:
        text = f"{question} {answer}" if answer else question
        return self._text_encoder_maps(
            image, text, answer,
            "Cross-attention of each text token onto the image patches in BLIP's image-grounded text encoder "
            "(the one the image-text matching head reads).",
        )
