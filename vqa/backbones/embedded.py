"""The project's own model (weights/shapes-vlp) behind the common `Backbone` interface."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import torch

from vqa.backbones.base import Backbone
from vqa.backbones.image_cache import ImageEncodingCache, image_key
from vqa.errors import ModelLoadError, UnsupportedError
from vqa.model import ShapesVLPConfig, ShapesVLPForVQA
from vqa.model.processing import ShapesVLPProcessor
from vqa.quantization import SCHEME_LABELS, bnb_config, dynamic_int8, model_bytes, normalise_scheme, require_available
from vqa.results import Answer, AttentionMaps, Caption, ModelInfo

# Output layers whose width (answer vocabulary, 2-way ITM, token vocabulary) is tiny or
# odd: quantizing them saves nothing and costs accuracy, so they stay in full precision.
FULL_PRECISION_MODULES = ["vqa_head", "itm_head", "lm_head"]
NF4_BLOCK_SIZE = 64
# Sampling seeds the global torch generator; one sampler at a time keeps results reproducible under concurrency.
_SAMPLING_LOCK = threading.Lock()


def nf4_incompatible_modules(config: ShapesVLPConfig) -> list[str]:
    """Linear layers whose input width is not a multiple of the nf4 block size (64): bitsandbytes' CPU kernel rejects them."""
    with torch.device("meta"):
        model = ShapesVLPForVQA(config)
    return [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear) and module.in_features % NF4_BLOCK_SIZE]


def load_embedded_model(path: Path, quantize: str | None) -> ShapesVLPForVQA:
    """Load weights (stored in fp16) as fp32, then apply the quantization scheme."""
    if not (path / "model.safetensors").exists():
        raise ModelLoadError(f"{path} has no model.safetensors (only safetensors weights are loaded).")
    if quantize in ("bnb-int8", "bnb-nf4"):
        skip = list(FULL_PRECISION_MODULES)
        if quantize == "bnb-nf4":
            skip += nf4_incompatible_modules(ShapesVLPConfig.from_pretrained(path))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*inputs will be cast.*")
            model = ShapesVLPForVQA.from_pretrained(path, dtype=torch.float32, use_safetensors=True, quantization_config=bnb_config(quantize, skip))
    else:
        model = ShapesVLPForVQA.from_pretrained(path, dtype=torch.float32, use_safetensors=True)
    model.eval()
    if quantize == "int8":
        dynamic_int8(model)
    return model


class EmbeddedBackbone(Backbone):
    family = "embedded"
    capabilities = frozenset({"classifier", "generative", "caption", "explain", "itm"})

    def __init__(self, path: str | Path, quantize: str | None = None):
        quantize = normalise_scheme(quantize)
        require_available(quantize)
        path = Path(path)
        super().__init__(name=path.name, quantization=quantize)
        self.path = path
        self.config = ShapesVLPConfig.from_pretrained(path)
        self.model = load_embedded_model(path, quantize)
        self.processor = ShapesVLPProcessor.from_pretrained(path, self.config)
        self.encodings = ImageEncodingCache(max_entries=16)
        self.labels = [self.config.id2label[i] for i in range(len(self.config.id2label))]

    # ----- shared steps ---------------------------------------------------------------
    @torch.inference_mode()
    def encode_image(self, image) -> torch.Tensor:
        """(1, 1+N, H) image embeddings, computed once per distinct image."""
        return self.encodings.get_or_compute(
            image_key(image, self.quantization), lambda: self.model.encode_image(self.processor.images([image]))[0]
        )

    @torch.inference_mode()
    def _fuse(self, image, question: str, output_attentions: bool = False):
        image_embeds = self.encode_image(image)
        q = self.processor.text([question])
        out = self.model(input_ids=q["input_ids"], attention_mask=q["attention_mask"], image_embeds=image_embeds, output_attentions=output_attentions)
        return out, q

    @torch.inference_mode()
    def sequence_probabilities(self, sequences: torch.Tensor, encoder_states: torch.Tensor, encoder_mask: torch.Tensor | None) -> list[float]:
        """Model probability of each generated sequence (start token excluded, [SEP] included),
        rescored with one teacher-forced pass so greedy, beam and sampled outputs are comparable."""
        decoder = self.model.text_decoder
        pad, sep = self.config.pad_token_id, self.config.sep_token_id
        mask = (sequences != pad).long()  # (K, T)
        B = sequences.shape[0]
        logits = decoder(
            input_ids=sequences, attention_mask=mask,
            encoder_hidden_states=encoder_states.expand(B, -1, -1),
            encoder_attention_mask=None if encoder_mask is None else encoder_mask.expand(B, -1),
        ).logits  # (K, T, vocab)
        log_probs = logits[:, :-1].log_softmax(-1).gather(-1, sequences[:, 1:, None]).squeeze(-1)  # (K, T-1)
        # count tokens up to and including the first [SEP]
        after_sep = (sequences[:, 1:] == sep).long().cumsum(1) - (sequences[:, 1:] == sep).long()
        keep = (after_sep == 0) & (sequences[:, 1:] != pad)
        return (log_probs * keep).sum(1).exp().tolist()

    @torch.inference_mode()
    def _generate(self, start: torch.Tensor, encoder_states, encoder_mask, decoding: str, num_beams: int, top_p: float,
                  temperature: float, max_new_tokens: int, num_return: int, seed: int | None) -> list[tuple[str, float]]:
        kwargs = dict(
            input_ids=start, encoder_hidden_states=encoder_states, encoder_attention_mask=encoder_mask,
            max_new_tokens=max_new_tokens, eos_token_id=self.config.sep_token_id, pad_token_id=self.config.pad_token_id,
        )
        if decoding == "greedy":
            sequences = self.model.text_decoder.generate(**kwargs, do_sample=False, num_beams=1)
        elif decoding == "beam":
            beams = max(num_beams, num_return)
            sequences = self.model.text_decoder.generate(**kwargs, do_sample=False, num_beams=beams, num_return_sequences=min(num_return, beams))
        else:
            with _SAMPLING_LOCK:
                if seed is not None:
                    torch.manual_seed(seed)
                sequences = self.model.text_decoder.generate(
                    **kwargs, do_sample=True, top_p=top_p, temperature=max(temperature, 1e-3), top_k=0, num_return_sequences=num_return
                )
        texts = self.processor.decode(sequences)
        probabilities = self.sequence_probabilities(sequences, encoder_states, encoder_mask)
        best: dict[str, float] = {}
        for text, probability in zip(texts, probabilities):
            best[text] = max(probability, best.get(text, 0.0))
        return sorted(best.items(), key=lambda kv: -kv[1])

    # ----- Backbone -------------------------------------------------------------------
    def _classify(self, image, question, top_k, candidates):
        out, _ = self._fuse(image, question)
        probs = out.answer_logits[0].float().softmax(-1)  # (num_answers,)
        ranked = [(self.labels[i], float(probs[i])) for i in probs.argsort(descending=True).tolist()]
        if candidates:
            allowed = {c.strip().lower() for c in candidates}
            unknown = allowed - set(self.labels)
            if unknown:
                raise UnsupportedError(f"Not in this model's answer vocabulary: {', '.join(sorted(unknown))}.")
            ranked = [(a, p) for a, p in ranked if a in allowed]
            total = sum(p for _, p in ranked) or 1.0
            ranked = [(a, p / total) for a, p in ranked]
        ranked = ranked[:top_k]
        return Answer(answer=ranked[0][0], score=ranked[0][1], candidates=ranked, head="classifier")

    def _generate_answer(self, image, question, decoding, num_beams, top_p, temperature, max_new_tokens, top_k, seed):
        out, q = self._fuse(image, question)
        start = torch.tensor([[self.config.answer_start_token_id]])
        num_return = 1 if decoding == "greedy" else min(top_k, num_beams) if decoding == "beam" else top_k
        ranked = self._generate(start, out.question_embeds, q["attention_mask"], decoding, num_beams, top_p, temperature, max_new_tokens, num_return, seed)
        return Answer(answer=ranked[0][0], score=ranked[0][1], candidates=ranked[:top_k], head="generative")

    def _caption(self, image, decoding, num_captions, num_beams, top_p, temperature, max_new_tokens, prompt, seed):
        image_embeds = self.encode_image(image)
        start_ids = [self.config.caption_start_token_id]
        if prompt:
            start_ids += self.processor.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        start = torch.tensor([start_ids])
        max_new_tokens = min(max_new_tokens, self.config.max_text_length - len(start_ids))
        num_return = 1 if decoding == "greedy" else num_captions
        ranked = self._generate(start, image_embeds, None, decoding, num_beams, top_p, temperature, max_new_tokens, num_return, seed)
        return Caption(text=ranked[0][0], score=ranked[0][1], candidates=ranked[:num_captions])

    @torch.inference_mode()
    def _explain(self, image, question, answer=None):
        out, q = self._fuse(image, question, output_attentions=True)
        grid = self.config.grid_size
        cross = torch.stack(out.cross_attentions)[:, 0]  # (fused layers, heads, T, 1+N)
        patches = cross[..., 1:]  # drop the image [CLS] column: it has no place on the image
        patches = patches / patches.sum(-1, keepdim=True).clamp_min(1e-9)  # rows sum to 1 over the grid again
        maps = patches.reshape(*patches.shape[:-1], grid, grid)  # (L, heads, T, grid, grid)
        fused = self.config.fused_layers
        text_self = torch.stack([out.text_attentions[i] for i in fused])[:, 0]  # (L, heads, T, T)
        tokens = self.processor.tokenizer.convert_ids_to_tokens(q["input_ids"][0].tolist())
        probs = out.answer_logits[0].softmax(-1)
        predicted = self.labels[int(probs.argmax())]
        return AttentionMaps(
            cross=maps.float().numpy(),
            tokens=tokens,
            layers=fused,
            image_size=image.size,
            kind="cross-attention",
            note=(
                f"Cross-attention of the text encoder's fusion layers ({', '.join(map(str, fused))}) from each question token "
                f"onto the {grid}×{grid} image patches; the image [CLS] column is left out and rows renormalised."
            ),
            text_self=text_self.float().numpy(),
            answer=answer or predicted,
            extra={"cls_cross_with_image_cls": cross[..., 0].float().numpy()},
        )

    # ----- facts --------------------------------------------------------------------
    def memory_bytes(self) -> int:
        if self.quantization in ("bnb-int8", "bnb-nf4"):
            return int(self.model.get_memory_footprint())
        return model_bytes(self.model)

    def info(self) -> ModelInfo:
        c = self.config
        params = sum(p.numel() for p in self.model.parameters())
        disk = sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())
        facts = {
            "Architecture": "BLIP-style mixture of encoder-decoder: a vision transformer, a text encoder fused with the image by cross-attention, and a text decoder",
            "Image input": f"{c.image_size}×{c.image_size} pixels, cut into a {c.grid_size}×{c.grid_size} grid of {c.patch_size}×{c.patch_size} patches by a convolutional stem",
            "Vision encoder": f"{c.vision_layers} transformer layers",
            "Text encoder": f"{c.text_layers} layers; layers {c.fusion_layer}–{c.text_layers - 1} look at the image (cross-attention), layers below read the question alone",
            "Fusion layer": f"{c.fusion_layer} ({'early' if c.fusion_layer == 0 else 'mid'} fusion)",
            "Text decoder": f"{c.decoder_layers} causal layers that write answers and captions",
            "Hidden size / heads": f"{c.hidden_size} / {c.num_attention_heads} attention heads",
            "Answer vocabulary (classifier head)": f"{len(self.labels)} answers",
            "Parameters": f"{params / 1e6:.1f} million",
            "Size on disk": f"{disk / 1e6:.1f} MB",
            "Quantization": SCHEME_LABELS[self.quantization],
        }
        return ModelInfo(
            name=self.name, family=self.family,
            description="The project's own small vision-language model, trained on generated 'shapes world' pictures. It runs on any CPU with no download.",
            facts=facts, capabilities=sorted(self.capabilities), quantization=self.quantization,
            notes=[f"Kept in full precision when quantized: {', '.join(FULL_PRECISION_MODULES)}."] if self.quantization else [],
        )
