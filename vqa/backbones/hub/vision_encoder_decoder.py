"""VisionEncoderDecoder (e.g. nlpconnect/vit-gpt2-image-captioning): a vision encoder
(ViT) and a language decoder (GPT-2), pre-trained apart and joined by cross-attention
layers added to the decoder.

It captions; it cannot answer questions: the decoder was never trained to read one, and
feeding the question as a caption prompt would only make it continue the question's text.
So `answer()` says so instead of inventing an answer.

The encoder output is computed once per image and passed to `generate` as
`encoder_outputs`. Attention maps are the decoder's cross-attentions while it wrote each
caption token.
"""

from __future__ import annotations

import torch
from transformers import VisionEncoderDecoderModel
from transformers.modeling_outputs import BaseModelOutput

from vqa.backbones.hub.common import (
    HubBackbone,
    generated_log_likelihood,
    generation_kwargs,
    patch_grid,
    patches_to_grid,
    ranked,
    seeded,
    stack_layers,
)
from vqa.errors import UnsupportedError
from vqa.results import Caption


class VisionEncoderDecoderBackbone(HubBackbone):
    family = "vision-encoder-decoder"
    fusion = "vision encoder + language decoder joined by cross-attention (VisionEncoderDecoder)"
    capabilities = frozenset({"caption", "explain"})
    model_class = VisionEncoderDecoderModel

    @property
    def description(self) -> str:
        return (f"{self.config.encoder.model_type} image encoder + {self.config.decoder.model_type} text decoder, "
                "trained apart and joined by cross-attention: it writes captions.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Every call sets its own max_new_tokens: a max_length from the checkpoint's generation settings would
        # only clash with it, and transformers warns about that clash on every call.
        self.model.generation_config.max_length = None
        self.notes.append("Captioning only: this model has no way to read a question, so answer() is not offered.")

    def answer(self, image, question, *args, **kwargs):
        raise UnsupportedError(
            f"{self.name} is a captioning model ({self.config.encoder.model_type} encoder + "
            f"{self.config.decoder.model_type} decoder): it never learned to read a question, so it cannot answer "
            "one. Use caption(), or pick a VQA model (BLIP VQA, ViLT) or CLIP to rank candidate answers.")

    @property
    def grid(self) -> tuple[int, int]:
        encoder = self.config.encoder
        return patch_grid(encoder.image_size, encoder.patch_size)

    @torch.inference_mode()
    def _encode_image(self, image) -> torch.Tensor:
        return self.model.encoder(pixel_values=self.pixel_values(image)).last_hidden_state  # (1, extra + gh*gw, D)

    def _special_ids(self) -> tuple[int, int | None]:
        config = self.model.generation_config
        start = config.decoder_start_token_id
        if start is None:
            start = self.config.decoder_start_token_id
        eos = config.eos_token_id if config.eos_token_id is not None else self.config.decoder.eos_token_id
        return start, eos[0] if isinstance(eos, list) else eos

    def _prompt_ids(self, prompt: str | None) -> torch.Tensor:
        start, _ = self._special_ids()
        ids = [start]
        if prompt:
            ids += self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        return torch.tensor([ids], dtype=torch.long)

    def _generate(self, encoded: torch.Tensor, prompt: torch.Tensor, decoding: dict, seed) -> torch.Tensor:
        start, eos = self._special_ids()
        pad = self.model.generation_config.pad_token_id
        with seeded(seed if decoding.get("do_sample") else None):
            # The prompt is never padded, but GPT-2 pads with its start token: the mask says every token counts.
            return self.model.generate(
                encoder_outputs=BaseModelOutput(last_hidden_state=encoded), decoder_input_ids=prompt,
                decoder_attention_mask=torch.ones_like(prompt), decoder_start_token_id=start, eos_token_id=eos,
                pad_token_id=eos if pad is None else pad, **decoding,
            )

    @torch.inference_mode()
    def _caption(self, image, decoding, num_captions, num_beams, top_p, temperature, max_new_tokens, prompt,
                 seed) -> Caption:
        encoded = self.encode_image(image)
        prompt_ids = self._prompt_ids(prompt)
        num_return = 1 if decoding == "greedy" else num_captions
        out = self._generate(encoded, prompt_ids, generation_kwargs(
            decoding, num_beams, top_p, temperature, max_new_tokens, num_return), seed)
        scores = generated_log_likelihood(out, prompt_ids.shape[1], self._special_ids()[1])
        texts = [t.strip() for t in self.tokenizer.batch_decode(out.sequences, skip_special_tokens=True)]
        candidates = ranked(texts, scores, num_captions)
        return Caption(text=candidates[0][0], score=candidates[0][1], candidates=candidates)

    @torch.inference_mode()
    def _explain(self, image, question, answer):
        """Cross-attention for each caption token (`answer` if given, else the greedy caption)."""
        encoded = self.encode_image(image)
        if answer:
            sequence = self._prompt_ids(answer)
        else:
            sequence = self._generate(encoded, self._prompt_ids(None), generation_kwargs("greedy", 1, 1.0, 1.0, 30, 1),
                                      None).sequences
        with self.eager_attention():
            out = self.model(encoder_outputs=(encoded,), decoder_input_ids=sequence,
                             decoder_attention_mask=torch.ones_like(sequence), output_attentions=True)
        gh, gw = self.grid
        extra = encoded.shape[1] - gh * gw  # [CLS] (and a distillation token for DeiT) come first
        # Row t is the attention while the decoder chose token t + 1: pair it with that token.
        cross = stack_layers(out.cross_attentions)[:, :, :-1, extra:]
        caption = self.tokenizer.decode(sequence[0], skip_special_tokens=True).strip()
        return self.attention_maps(
            patches_to_grid(cross, self.grid), self.token_strings(sequence[0, 1:]), image, "cross-attention",
            "Cross-attention of the caption decoder onto the image patches while it wrote each token "
            "(a captioning model does not read the question).", answer=caption,
        )

    def facts(self) -> dict[str, str]:
        enc, dec = self.config.encoder, self.config.decoder
        gh, gw = self.grid
        return {
            "vision encoder": f"{enc.model_type}, {enc.num_hidden_layers} layers, hidden {enc.hidden_size}",
            "text decoder": f"{dec.model_type}, {dec.num_hidden_layers} layers, hidden {dec.hidden_size}, "
                            "cross-attention to the image added to every layer",
            "patch grid": f"{gh} × {gw} patches of {enc.patch_size} px ({enc.image_size} px image)",
            "vocabulary": f"{dec.vocab_size} tokens",
        }
