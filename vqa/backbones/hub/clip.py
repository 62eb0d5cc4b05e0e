"""CLIP: two separate encoders, one for images and one for text, trained so matching
pairs get similar embeddings (late fusion, dual encoder).

The only place image and text meet is one cosine similarity at the very end: there is no
fusion layer, so CLIP cannot read a question. As a "classifier" it ranks candidate answers
zero-shot: each candidate is put in a prompt ("a photo of {answer}"), and a softmax over the
scaled similarities gives the probabilities; the question itself is not used unless the
template asks for it. The image embedding is computed once per image and reused.

Attention maps: with no cross-attention there is nothing text→image to read off, so
`explain` returns a gradient map: gradient × input of the similarity with respect to the
patch tokens entering each vision layer (kind "gradient"). That needs a backward pass
through the image encoder, which some quantized kernels lack (PyTorch dynamic int8;
bitsandbytes' 4-bit CPU kernel), so a loaded CLIP lists "explain" among its
`capabilities` only when its image encoder's layers pass gradients.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from PIL import Image
from transformers import CLIPModel

from vqa.backbones.hub.common import (
    DEFAULT_CANDIDATES_NOTE,
    HubBackbone,
    candidate_list,
    clean_texts,
    normalise_rows,
    patch_grid,
    softmax_ranking,
)
from vqa.backbones.hub.loader import is_quantized
from vqa.errors import UnsupportedError
from vqa.quantization import SCHEME_LABELS
from vqa.results import Answer, AttentionMaps

#: How a candidate answer becomes a caption CLIP can compare with the image; may use {question}.
PROMPT_TEMPLATE = "a photo of {answer}"
#: The modules the gradient map differentiates through: the image encoder and its projection.
GRADIENT_PATH = ("vision_model.", "visual_projection")


def layers_without_gradients(model: torch.nn.Module, prefixes: tuple[str, ...]) -> list[str]:
    """Names of the quantized linear layers under `prefixes` that pass no gradient back to their input."""
    blocked = []
    for name, module in model.named_modules():
        if not (name.startswith(prefixes) and is_quantized(module) and hasattr(module, "in_features")):
            continue
        probe = torch.ones(1, module.in_features, requires_grad=True)
        try:
            with torch.inference_mode(False), torch.enable_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # PyTorch warns before it fails on a kernel without a backward
                (grad,) = torch.autograd.grad(module(probe).float().sum(), probe)
            if torch.isfinite(grad).all() and grad.abs().sum() > 0:
                continue
        except RuntimeError:
            pass
        blocked.append(name)
    return blocked


@dataclass
class ClipImageEncoding:
    features: torch.Tensor  # (1, projection_dim), L2-normalised image embedding
    pixel_values: torch.Tensor  # (1, 3, H, W), kept for the gradient view


class ClipBackbone(HubBackbone):
    family = "clip"
    fusion = "late fusion dual encoder (CLIP)"
    #: at full precision; each loaded model sets its own (see __init__)
    # no "itm": CLIP has no matching head; `score_texts` gives its similarities instead
    capabilities = frozenset({"classifier", "explain"})
    model_class = CLIPModel
    description = ("CLIP: an image encoder and a text encoder trained apart-but-together so that matching pictures "
                   "and captions land close; it compares, it does not read questions.")
    prompt_template = PROMPT_TEMPLATE

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.quantization:
            # bitsandbytes repacks 4-bit weights for its CPU kernel (which has no backward) on the first
            # inference call: send one image through so the probe sees the layers as they will serve.
            size = self.config.vision_config.image_size
            self._encode_image(Image.new("RGB", (size, size)))
        self.gradient_blockers = layers_without_gradients(self.model, GRADIENT_PATH)
        if self.gradient_blockers:
            self.capabilities = self.capabilities - {"explain"}  # this loaded model's own, not the class's
        self.notes += [
            "CLIP has no fusion layer (late fusion, dual encoder): image and text are encoded separately and meet "
            "only in one cosine similarity, so it cannot read the question.",
            f"Classifier head: zero-shot ranking of candidate answers with the prompt {self.prompt_template!r}, "
            "softmax over the scaled similarities.",
            DEFAULT_CANDIDATES_NOTE,
            self._no_gradient_message() if self.gradient_blockers else
            "Attention view: CLIP has no text→image attention; it shows a gradient × input map of the image-text "
            "similarity over the patch grid instead.",
        ]

    def _no_gradient_message(self) -> str:
        label = SCHEME_LABELS.get(self.quantization, str(self.quantization))
        return (f"No attention view for {self.name} loaded with {label}: CLIP's view is a gradient map, and "
                f"{len(self.gradient_blockers)} quantized layers of its image encoder have no backward pass. "
                "Load it without quantization to see it.")

    def explain(self, image, question, answer=None) -> AttentionMaps:
        if self.gradient_blockers:
            raise UnsupportedError(self._no_gradient_message())
        return super().explain(image, question, answer)

    @property
    def grid(self) -> tuple[int, int]:
        vision = self.config.vision_config
        return patch_grid(vision.image_size, vision.patch_size)

    @torch.inference_mode()
    def _encode_image(self, image) -> ClipImageEncoding:
        pixel_values = self.pixel_values(image)
        features = self.model.get_image_features(pixel_values=pixel_values).pooler_output
        return ClipImageEncoding(torch.nn.functional.normalize(features.float(), dim=-1), pixel_values)

    def _text_features(self, texts: list[str]) -> torch.Tensor:
        enc = self.tokenize(texts, self.config.text_config.max_position_embeddings)
        features = self.model.get_text_features(input_ids=enc["input_ids"],
                                                attention_mask=enc["attention_mask"]).pooler_output
        return torch.nn.functional.normalize(features.float(), dim=-1)  # (n, projection_dim)

    def _prompts(self, question: str, answers: list[str]) -> list[str]:
        return [self.prompt_template.format(answer=a, question=question) for a in answers]

    @torch.inference_mode()
    def similarity(self, image, texts: list[str]) -> list[float]:
        """Cosine similarity between the image and each text (CLIP's zero-shot score before scaling)."""
        from vqa.image_io import load_image

        features = self.encode_image(load_image(image)).features
        return (self._text_features(clean_texts(texts)) @ features.T).squeeze(-1).tolist()

    @torch.inference_mode()
    def score_texts(self, image, texts: list[str]) -> list[dict]:
        """For each text: cosine similarity and the softmax probability over the given texts."""
        texts = clean_texts(texts)
        sims = torch.tensor(self.similarity(image, texts))
        probs = torch.softmax(self.model.logit_scale.exp().float() * sims, dim=0)
        return [{"text": t, "similarity": float(s), "probability": float(p)}
                for t, s, p in zip(texts, sims.tolist(), probs.tolist())]

    @torch.inference_mode()
    def _classify(self, image, question, top_k, candidates) -> Answer:
        answers = candidate_list(candidates)
        sims = self._text_features(self._prompts(question, answers)) @ self.encode_image(image).features.T
        return softmax_ranking(answers, self.model.logit_scale.exp().float() * sims.squeeze(-1), top_k)

    def _explain(self, image, question, answer) -> AttentionMaps:
        """Gradient × input of the image-text similarity at the patch tokens entering each vision layer."""
        text = self._prompts(question, [answer])[0] if answer else question
        # a normal tensor (autograd cannot save inference tensors) that requires grad, so a graph exists even
        # when quantized weights do not require grad
        pixel_values = self.encode_image(image).pixel_values.clone().requires_grad_(True)
        layers = self.model.vision_model.encoder.layers
        inputs: list[torch.Tensor] = []

        def keep_input(module, args, kwargs):
            inputs.append(args[0] if args else kwargs["hidden_states"])

        hooks = [layer.register_forward_pre_hook(keep_input, with_kwargs=True) for layer in layers]
        try:
            with torch.enable_grad():
                image_feat = self.model.get_image_features(pixel_values=pixel_values).pooler_output
                with torch.no_grad():
                    text_feat = self._text_features([text])
                similarity = (torch.nn.functional.normalize(image_feat.float(), dim=-1) @ text_feat.T).sum()
                grads = torch.autograd.grad(similarity, inputs)  # only these: no parameter gradients
        except RuntimeError as exc:
            raise UnsupportedError(
                f"The gradient map needs gradients through the vision encoder, which this quantization "
                f"({self.quantization}) does not provide: reload {self.name} without quantization. ({exc})") from exc
        finally:
            for hook in hooks:
                hook.remove()
        gh, gw = self.grid
        # gradient x input summed over channels, per patch ([CLS] dropped): (layers, gh, gw)
        maps = torch.stack([(g * h).sum(-1)[0, 1:].reshape(gh, gw) for g, h in zip(grads, inputs)]).detach()
        cross = normalise_rows(maps[:, None, None].float().numpy())  # (layers, 1, 1, gh, gw)
        return self.attention_maps(
            cross, [text], image, "gradient",
            "Gradient map, not attention: CLIP has no fusion layer, so this shows gradient × input of the "
            "image-text similarity at the patch tokens entering each vision layer (positive part, normalised).",
            answer=answer,
        )

    def facts(self) -> dict[str, str]:
        vision, text = self.config.vision_config, self.config.text_config
        gh, gw = self.grid
        return {
            "image encoder": f"ViT, {vision.num_hidden_layers} layers, hidden {vision.hidden_size}",
            "text encoder": f"{text.num_hidden_layers} layers, hidden {text.hidden_size} (no access to the image)",
            "joint space": f"{self.config.projection_dim} dimensions, cosine similarity",
            "patch grid": f"{gh} × {gw} patches of {vision.patch_size} px ({vision.image_size} px image)",
        }
