"""The project's own model (weights/shapes-vlp) behind the common `Backbone` interface."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vqa.backbones.base import Backbone
from vqa.backbones import frozen_graphs
from vqa.backbones.decoding import generated_log_likelihood, generation_kwargs, ranked, seeded
from vqa.backbones.image_cache import ImageEncodingCache, image_key
from vqa.data.splits import make_example
from vqa.domain import DomainCalibration
from vqa.errors import ModelLoadError, UnsupportedError
from vqa.model import ShapesVLPConfig, ShapesVLPForVQA
from vqa.model.modeling import ShapesVLPOutput, TransformerLayer
from vqa.model.processing import ShapesVLPProcessor
from vqa.quantization import (
    SCHEME_LABELS,
    bnb_config,
    dynamic_int8,
    model_bytes,
    normalise_scheme,
    require_available,
    static_int8_convolutions,
)
from vqa.results import Answer, AttentionMaps, Caption, ModelInfo

# The layers that write the final scores (answer vocabulary, ITM, token vocabulary): the
# bitsandbytes schemes keep them in full precision so that their rounding error does not
# land directly on the answer probabilities. (PyTorch dynamic int8 quantizes them too.)
FULL_PRECISION_MODULES = ["vqa_head", "itm_head", "lm_head"]
NF4_BLOCK_SIZE = 64
# Generated scenes that calibrate the int8 convolutions' activation ranges.
CALIBRATION_IMAGES = 16


def model_skeleton(config: ShapesVLPConfig) -> ShapesVLPForVQA:
    """The model's modules with shapes only (no memory): what a quantization scheme plans from."""
    with torch.device("meta"):
        return ShapesVLPForVQA(config)


def nf4_incompatible_modules(config: ShapesVLPConfig) -> list[str]:
    """Linear layers whose input width is not a multiple of the nf4 block size (64): bitsandbytes' CPU kernel rejects them."""
    model = model_skeleton(config)
    return [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear) and module.in_features % NF4_BLOCK_SIZE]


def load_embedded_model(path: Path, quantize: str | None) -> ShapesVLPForVQA:
    """Load weights (stored in fp16) as fp32, then apply the quantization scheme."""
    if not (path / "model.safetensors").exists():
        raise ModelLoadError(f"{path} has no model.safetensors (only safetensors weights are loaded).")
    if quantize in ("bnb-int8", "bnb-nf4"):
        skip = list(FULL_PRECISION_MODULES)
        if quantize == "bnb-nf4":
            skip += nf4_incompatible_modules(ShapesVLPConfig.from_pretrained(path))
        model = ShapesVLPForVQA.from_pretrained(path, dtype=torch.float32, use_safetensors=True, quantization_config=bnb_config(quantize, skip))
    else:
        model = ShapesVLPForVQA.from_pretrained(path, dtype=torch.float32, use_safetensors=True)
    model.eval()
    return model


def quantize_int8(model: ShapesVLPForVQA, processor: ShapesVLPProcessor) -> None:
    """The "int8" scheme for this model, in place: dynamic int8 for every linear layer, and static
    int8 for the convolutional stem, which dynamic quantization leaves in fp32 although it is about
    half the work of encoding an image. Its activation ranges are calibrated on generated training
    scenes (the data the model was trained on), the same ones every time. Before quantizing, each
    attention layer's projections that read the same input are merged into one linear layer."""
    images = [make_example("train", index, image_size=model.config.image_size).image for index in range(CALIBRATION_IMAGES)]
    batches = [processor.images(images[i : i + 8]) for i in range(0, len(images), 8)]  # (8, C, S, S) each
    stem = model.vision_model.stem
    stem.layers = static_int8_convolutions(stem.layers, batches)
    for layer in model.modules():
        if isinstance(layer, TransformerLayer):  # fewer, larger int8 matrix multiplies
            layer.self_attention.fuse_projections(cross_attention=False)
            if layer.cross_attention is not None:
                layer.cross_attention.fuse_projections(cross_attention=True)
    dynamic_int8(model)


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
        # Counted before quantizing: packed int8 / 4-bit weights are no longer plain parameters.
        self.num_parameters = sum(p.numel() for p in model_skeleton(self.config).parameters())
        self.model = load_embedded_model(path, quantize)
        self.processor = ShapesVLPProcessor.from_pretrained(path, self.config)
        if quantize == "int8":
            quantize_int8(self.model, self.processor)
        # The hot paths as TorchScript graphs (frozen_graphs says why); bitsandbytes layers are not traceable.
        self.graphs = frozen_graphs.build(self.model, self.processor) if quantize in (None, "int8") else None
        self.encodings = ImageEncodingCache(max_entries=16)
        # The fused question states serve both answer heads (the classifier reads their [CLS],
        # the decoder cross-attends to them): /ask asks both about one (image, question).
        self.fusions = ImageEncodingCache(max_entries=32)
        self.labels = [self.config.id2label[i] for i in range(len(self.config.id2label))]
        # What the model learned, measured on its training data (vqa.domain); None for a folder without one.
        self.domain = DomainCalibration.load(path)

    # ----- shared steps ---------------------------------------------------------------
    @torch.inference_mode()
    def encode_image(self, image, key: str | None = None) -> torch.Tensor:
        """(1, 1+N, H) image embeddings, computed once per distinct image. `key`: the image's
        `image_key` when the caller already hashed it."""
        encode = self.graphs.encode_image if self.graphs else (lambda pixels: self.model.encode_image(pixels)[0])
        return self.encodings.get_or_compute(key or image_key(image, self.quantization), lambda: encode(self.processor.images([image])))

    @torch.inference_mode()
    def _fuse(self, image, question: str, output_attentions: bool = False):
        """The text encoder's pass over the question with the image: (model output, tokenized question).
        Without attention weights the result is cached per (image, question)."""
        key = image_key(image, self.quantization)  # hashed once for both caches

        def fuse():
            image_embeds = self.encode_image(image, key)
            q = self.processor.text([question])
            if self.graphs and not output_attentions:
                answer_logits, question_embeds = self.graphs.fuse(q["input_ids"], q["attention_mask"], image_embeds)
                return ShapesVLPOutput(answer_logits=answer_logits, question_embeds=question_embeds, image_embeds=image_embeds), q
            out = self.model(input_ids=q["input_ids"], attention_mask=q["attention_mask"], image_embeds=image_embeds, output_attentions=output_attentions)
            return out, q

        if output_attentions:
            return fuse()
        return self.fusions.get_or_compute(f"{key}:{question}", fuse)

    @torch.inference_mode()
    def _generate(self, start: torch.Tensor, encoder_states, encoder_mask, decoding: str, num_beams: int, top_p: float,
                  temperature: float, max_new_tokens: int, num_return: int, seed: int | None) -> list[tuple[str, float]]:
        """Decode from `start` (1, P) and return [(text, probability)], best first. The probability of a
        sequence (start tokens excluded, [SEP] included) is read off generate's raw logits."""
        settings = generation_kwargs(decoding, num_beams, top_p, temperature, max_new_tokens, num_return)
        with seeded(seed if decoding == "nucleus" else None):
            out = self.model.text_decoder.generate(
                input_ids=start, encoder_hidden_states=encoder_states, encoder_attention_mask=encoder_mask,
                eos_token_id=self.config.sep_token_id, pad_token_id=self.config.pad_token_id, **settings,
            )
        log_likelihoods = generated_log_likelihood(out, start.shape[1], self.config.sep_token_id)  # (K,)
        return ranked(self.processor.decode(out.sequences), log_likelihoods)

    def patch_states(self, image) -> np.ndarray:
        """(N, H) the image encoder's patch states for one picture (its [CLS] left out), from the cache."""
        return self.encode_image(image)[0, 1:].float().numpy()

    # ----- Backbone -------------------------------------------------------------------
    def _domain(self, image, question):
        if self.domain is None:
            return True, None
        return self.domain.check(self.patch_states(image), question)

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

    def quantization_notes(self) -> list[str]:
        if not self.quantization:
            return []
        if self.quantization == "int8":
            return [
                "int8: every linear layer uses dynamic int8 (each attention layer's query/key/value projections merged "
                "into one); the convolutional stem uses static int8 calibrated on "
                f"{CALIBRATION_IMAGES} generated training scenes (its GELUs and the layer norms stay in fp32)."
            ]
        return [f"Kept in full precision by bitsandbytes: {', '.join(FULL_PRECISION_MODULES)}."]

    def clear_caches(self) -> None:
        self.encodings.clear()
        self.fusions.clear()

    # ----- facts --------------------------------------------------------------------
    def memory_bytes(self) -> int:
        if self.quantization in ("bnb-int8", "bnb-nf4"):
            return int(self.model.get_memory_footprint())
        return model_bytes(self.model)

    def info(self) -> ModelInfo:
        c = self.config
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
            "Parameters": f"{self.num_parameters / 1e6:.1f} million",
            "Size on disk": f"{disk / 1e6:.1f} MB",
            "Quantization": SCHEME_LABELS[self.quantization],
        }
        return ModelInfo(
            name=self.name, family=self.family,
            description="The project's own small vision-language model, trained on generated 'shapes world' pictures. It runs on any CPU with no download.",
            facts=facts, capabilities=sorted(self.capabilities), quantization=self.quantization,
            notes=self.quantization_notes(),
        )
