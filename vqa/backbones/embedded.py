"""The project's own model (weights/shapes-vlp) behind the common `Backbone` interface."""

from __future__ import annotations

import hashlib
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
from vqa.image_fit import crop_to_picture, picture_patches
from vqa.model import ShapesVLPConfig, ShapesVLPForVQA, ShapesVLPOutput
from vqa.model.description import describe, describe_attention
from vqa.model.outputs import patch_attention_grids
from vqa.model.processing import ShapesVLPProcessor
from vqa.quantization import SCHEME_LABELS, bnb_config, model_bytes, normalise_scheme, require_available
from vqa.results import Answer, AttentionMaps, Caption, ModelInfo

NF4_BLOCK_SIZE = 64
# Generated scenes that calibrate the int8 convolutions' activation ranges.
CALIBRATION_IMAGES = 16
# Pictures encoded per forward pass when embedding or matching many: bounds one pass's activations.
IMAGE_BATCH = 64


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
        # The layers that write the final scores stay in full precision, so that their rounding error does
        # not land directly on the answer probabilities. (PyTorch dynamic int8 quantizes them too.)
        config = ShapesVLPConfig.from_pretrained(path)
        skip = ShapesVLPForVQA.full_precision_modules(config)
        if quantize == "bnb-nf4":
            skip += nf4_incompatible_modules(config)
        model = ShapesVLPForVQA.from_pretrained(path, dtype=torch.float32, use_safetensors=True, quantization_config=bnb_config(quantize, skip))
    else:
        model = ShapesVLPForVQA.from_pretrained(path, dtype=torch.float32, use_safetensors=True)
    model.eval()
    return model


def quantize_int8(model: ShapesVLPForVQA, processor: ShapesVLPProcessor) -> None:
    """The "int8" scheme for this model, in place (`ShapesVLPForVQA.quantize_int8_` says what it does). The
    image embedder's activation ranges are calibrated on generated training scenes (the data the model was
    trained on), the same ones every time."""
    images = [make_example("train", index, image_size=model.config.image_size).image for index in range(CALIBRATION_IMAGES)]
    batches = [processor.images(images[i : i + 8]) for i in range(0, len(images), 8)]  # (8, C, S, S) each
    model.quantize_int8_(batches)


def capabilities_of(config: ShapesVLPConfig) -> frozenset[str]:
    """What a model of this architecture can be asked, from the heads its config gives it."""
    can = {"explain"}
    if "classifier" in config.heads or config.fusion == "none":  # a dual encoder scores answers as statements
        can.add("classifier")
    if "lm" in config.heads:
        can |= {"generative", "caption"}
    if "itm" in config.heads:
        can.add("itm")
    if "itc" in config.heads:
        can.add("retrieval")
    return frozenset(can)


class EmbeddedBackbone(Backbone):
    family = "embedded"
    capabilities = frozenset({"classifier", "generative", "caption", "explain", "itm", "retrieval"})

    def __init__(self, path: str | Path, quantize: str | None = None):
        quantize = normalise_scheme(quantize)
        require_available(quantize)
        path = Path(path)
        super().__init__(name=path.name, quantization=quantize)
        self.path = path
        self.config = ShapesVLPConfig.from_pretrained(path)
        self.capabilities = capabilities_of(self.config)
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
        self._weights_digest: str | None = None  # see embedding_space

    # ----- shared steps ---------------------------------------------------------------
    @torch.inference_mode()
    def encode_image(self, image, key: str | None = None) -> torch.Tensor:
        """(1, 1+N, H) image embeddings, computed once per distinct image. `key`: the image's
        `image_key` when the caller already hashed it."""
        encode = self.graphs.encode_image if self.graphs else (lambda pixels: self.model.encode_image(pixels)[0])  # (1, 1+N, H)
        return self.encodings.get_or_compute(key or image_key(image, self.quantization), lambda: encode(self.processor.images([image])))

    @torch.inference_mode()
    def _fuse(self, image, question: str, output_attentions: bool = False) -> tuple[ShapesVLPOutput, dict]:
        """The model's pass over the question with the image: (model output, tokenized question).
        Without attention weights the result is cached per (image, question)."""
        key = image_key(image, self.quantization)  # hashed once for both caches

        def fuse():
            image_embeds = self.encode_image(image, key)
            q = self.processor.text([question])
            if self.graphs and self.graphs.answer and not output_attentions:
                answer_logits, text_states = self.graphs.answer(q["input_ids"], q["attention_mask"], image_embeds)
                return ShapesVLPOutput(answer_logits=answer_logits, text_states=text_states, image_states=image_embeds, image_embeds=image_embeds), q
            out = self.model(input_ids=q["input_ids"], attention_mask=q["attention_mask"], image_embeds=image_embeds, output_attentions=output_attentions)
            return out, q

        if output_attentions:
            return fuse()
        return self.fusions.get_or_compute(f"{key}:{question}", fuse)

    @torch.inference_mode()
    def _generate(self, prompt: dict, decoding: str, num_beams: int, top_p: float,
                  temperature: float, max_new_tokens: int, num_return: int, seed: int | None, keep_prompt: bool = False) -> list[tuple[str, float]]:
        """Decode from `prompt` (the text decoder's inputs: `input_ids` (1, P) and what it cross-attends to) and
        return [(text, probability)], best first. The probability of a sequence (prompt excluded, [SEP]
        included) is read off generate's raw logits."""
        settings = generation_kwargs(decoding, num_beams, top_p, temperature, max_new_tokens, num_return)
        with seeded(seed if decoding == "nucleus" else None):
            out = self.model.generate_text(
                **prompt, eos_token_id=self.config.sep_token_id, pad_token_id=self.config.pad_token_id, **settings,
            )
        prompt_length = prompt["input_ids"].shape[1]
        log_likelihoods = generated_log_likelihood(out, prompt_length, self.config.sep_token_id)  # (K,)
        # An answer is what was written after the prompt (an encoder-decoder's prompt holds the question); a caption
        # keeps the words it was asked to start with.
        written = out.sequences if keep_prompt else out.sequences[:, prompt_length:]
        return ranked(self.processor.decode(written), log_likelihoods)

    @torch.inference_mode()
    def encode_images(self, images: list) -> torch.Tensor:
        """(B, 1+N, H) image embeddings of several pictures, `IMAGE_BATCH` per pass; one picture goes through
        the cache, as the interactive paths ask about the same picture again."""
        if len(images) == 1:
            return self.encode_image(images[0])
        encode = self.graphs.encode_image if self.graphs else (lambda pixels: self.model.encode_image(pixels)[0])
        return torch.cat([encode(self.processor.images(images[i : i + IMAGE_BATCH])) for i in range(0, len(images), IMAGE_BATCH)])

    def patch_states(self, image) -> np.ndarray:
        """(N, H) the image encoder's states of the patches that show the picture (its [CLS] and a letterboxed
        picture's filled bands left out, which look alike for any picture), from the cache."""
        states = self.encode_image(image)[0, 1:].float().numpy()  # (grid * grid, H)
        return states[picture_patches(image.size, self.config.image_size, self.config.image_fit, self.config.patch_size)]

    # ----- Backbone -------------------------------------------------------------------
    def _domain(self, image, question):
        if self.domain is None:
            return True, None
        return self.domain.check(self.patch_states(image), question)

    @torch.inference_mode()
    def _statement_logits(self, image, question: str) -> torch.Tensor:
        """(num_answers,) for a dual encoder: the image against each answer written after the question as one
        statement ("what color is the square? red"), as contrastive similarities."""
        statements = self.processor.text([f"{question} {label}" for label in self.labels])
        text = self.model.text_embedding(statements["input_ids"], statements["attention_mask"])  # (A, itc_dim)
        image_vec = self.model.image_embedding(self.encode_image(image))  # (1, itc_dim)
        return self.model.contrastive_scores(image_vec, text)[0]

    def _classify(self, image, question, top_k, candidates):
        if self.config.fusion == "none":
            logits = self._statement_logits(image, question)
        else:
            logits = self._fuse(image, question)[0].answer_logits[0]
        probs = logits.float().softmax(-1)  # (num_answers,)
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
        answer = Answer(answer=ranked[0][0], score=ranked[0][1], candidates=ranked, head="classifier")
        if self.config.fusion == "none":
            answer.notes.append(
                "A dual encoder has no classifier: each answer in the vocabulary was written after the question as a "
                "statement and scored against the picture by contrastive similarity."
            )
        return answer

    def _generate_answer(self, image, question, decoding, num_beams, top_p, temperature, max_new_tokens, top_k, seed):
        out, q = self._fuse(image, question)
        prompt = self.model.answer_decoder_inputs(q["input_ids"], q["attention_mask"], out.text_states, out.image_states)
        num_return = 1 if decoding == "greedy" else min(top_k, num_beams) if decoding == "beam" else top_k
        max_new_tokens = min(max_new_tokens, self.config.max_text_length - prompt["input_ids"].shape[1])
        ranked = self._generate(prompt, decoding, num_beams, top_p, temperature, max_new_tokens, num_return, seed)
        return Answer(answer=ranked[0][0], score=ranked[0][1], candidates=ranked[:top_k], head="generative")

    def _caption(self, image, decoding, num_captions, num_beams, top_p, temperature, max_new_tokens, prompt, seed):
        image_embeds = self.encode_image(image)
        start_ids = [self.config.caption_start_token_id]
        if prompt:
            start_ids += self.processor.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        start = torch.tensor([start_ids])
        max_new_tokens = min(max_new_tokens, self.config.max_text_length - len(start_ids))
        num_return = 1 if decoding == "greedy" else num_captions
        prompt = {"input_ids": start, "encoder_hidden_states": image_embeds}
        ranked = self._generate(prompt, decoding, num_beams, top_p, temperature, max_new_tokens, num_return, seed, keep_prompt=True)
        return Caption(text=ranked[0][0], score=ranked[0][1], candidates=ranked[:num_captions])

    @torch.inference_mode()
    def _explain(self, image, question, answer=None):
        out, q = self._fuse(image, question, output_attentions=True)
        grid = self.config.grid_size
        to_image = torch.stack(out.text_to_image)[:, 0]  # (layers, heads, T, 1+N)
        maps = patch_attention_grids(to_image, grid).float().numpy()  # (L, heads, T, grid, grid)
        # over the picture alone: a letterboxed picture's filled bands are no part of it
        maps = crop_to_picture(maps, image.size, self.config.image_size, self.config.image_fit)  # (L, heads, T, gh, gw)
        layers = self.config.fused_layers or [self.config.text_layers - 1]  # a dual encoder's map is read off its last layer
        text_self = None if out.text_self_attentions is None else torch.stack(out.text_self_attentions)[:, 0]  # (L, heads, T, T)
        tokens = self.processor.text_tokenizer.convert_ids_to_tokens(q["input_ids"][0].tolist())
        if answer is None and out.answer_logits is not None:  # the classifier's answer came with this pass
            answer = self.labels[int(out.answer_logits[0].argmax())]
        elif answer is None:  # a dual encoder scores statements; an encoder-decoder writes its answer
            answer = (self._classify(image, question, top_k=1, candidates=None) if "classifier" in self.capabilities else
                      self._generate_answer(image, question, decoding="greedy", num_beams=1, top_p=1.0, temperature=1.0,
                                            max_new_tokens=8, top_k=1, seed=None)).answer
        return AttentionMaps(
            cross=maps,
            tokens=tokens,
            layers=layers,
            image_size=image.size,
            kind=self.model.attention_kind,
            note=describe_attention(self.config),
            text_self=None if text_self is None else text_self.float().numpy(),
            answer=answer,
            extra={"cls_cross_with_image_cls": to_image[..., 0].float().numpy()},
        )

    # ----- retrieval --------------------------------------------------------------------
    def embedding_space(self) -> str:
        # The weights decide the space: a copy of the folder under another name is the same space, and a
        # retrained model under the same name is not. (Quantized copies of the same weights stay comparable.)
        if self._weights_digest is None:
            digest = hashlib.sha256()
            with (self.path / "model.safetensors").open("rb") as weights:
                for block in iter(lambda: weights.read(1 << 20), b""):
                    digest.update(block)
            self._weights_digest = digest.hexdigest()[:16]
        return f"embedded:sha256:{self._weights_digest}"

    @torch.inference_mode()
    def _embed_images(self, images):
        vectors = [self.model.image_embedding(self.encode_images(images[i : i + IMAGE_BATCH])) for i in range(0, len(images), IMAGE_BATCH)]
        return torch.cat(vectors).float().numpy()  # (N, itc_dim)

    @torch.inference_mode()
    def _embed_text(self, texts):
        tokens = self.processor.text(texts)  # (N, T) each
        return self.model.text_embedding(tokens["input_ids"], tokens["attention_mask"]).float().numpy()  # (N, itc_dim)

    @torch.inference_mode()
    def _match(self, images, texts):
        image_embeds = self.encode_images(images)  # (I, 1+N, H)
        tokens = self.processor.text(texts)  # (T, L) each
        num_images, num_texts = len(images), len(texts)
        # Every (picture, text) pair as one row, picture-major; each picture's keys and values are projected
        # once and shared by its texts (image_index).
        input_ids = tokens["input_ids"].repeat(num_images, 1)  # (I*T, L)
        attention_mask = tokens["attention_mask"].repeat(num_images, 1)
        image_index = torch.arange(num_images).repeat_interleave(num_texts)  # (I*T,)
        logits = self.model.match_logits(input_ids, attention_mask, image_embeds, image_index)  # (I*T, 2)
        return logits.float().softmax(-1)[:, 1].reshape(num_images, num_texts).numpy()

    def quantization_notes(self) -> list[str]:
        if not self.quantization:
            return []
        if self.quantization == "int8":
            return [
                "int8: every linear layer uses dynamic int8 (each attention layer's query/key/value projections merged "
                "into one); the convolutional stem uses static int8 calibrated on "
                f"{CALIBRATION_IMAGES} generated training scenes (its GELUs and the layer norms stay in fp32)."
            ]
        return [f"Kept in full precision by bitsandbytes: {', '.join(ShapesVLPForVQA.full_precision_modules(self.config))}."]

    def fast_path(self) -> str:
        """Which passes run as traced graphs (frozen_graphs), in words."""
        if self.graphs is None:
            return "none: the eager model (bitsandbytes layers can't be traced)" if self.quantization else "none: the eager model"
        if self.graphs.answer is None:
            return "traced image encoder; answers, captions and maps run eager (this architecture has no classifier head)"
        return "traced image encoder and classifier answer; generation and maps run eager"

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
            **describe(c),
            "Answer vocabulary (classifier head)": f"{len(self.labels)} answers",
            "Parameters": f"{self.num_parameters / 1e6:.1f} million",
            "Size on disk": f"{disk / 1e6:.1f} MB",
            "Quantization": SCHEME_LABELS[self.quantization],
            "Fast path": self.fast_path(),
        }
        return ModelInfo(
            name=self.name, family=self.family,
            description="The project's own small vision-language model, trained on generated 'shapes world' pictures. It runs on any CPU with no download.",
            facts=facts, capabilities=sorted(self.capabilities), quantization=self.quantization,
            notes=self.quantization_notes(),
        )
