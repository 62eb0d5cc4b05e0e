"""The interface every backbone implements, embedded or from the hub.

The app, the CLI, evaluation and tests only ever talk to this interface, so a
new model family is one new subclass. Inputs are checked here, once, through
`vqa.image_io` (images) and `vqa.image_io.clean_question` (text).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any

from vqa.errors import UnsupportedError
from vqa.image_io import clean_question, load_image
from vqa.results import Answer, Answers, AttentionMaps, Caption, ModelInfo
from vqa.settings import (
    HEAD,
    MAX_GENERATED_SEQUENCES,
    NUM_CAPTIONS,
    TOP_K,
    check_candidates,
    check_decoding,
)

HEADS = HEAD.choices


class Backbone(ABC):
    """A loaded model that answers, captions and explains.

    Subclasses implement the underscored methods; the public methods validate
    inputs (against `vqa.settings`), time the call and keep one behaviour across families.
    """

    #: short family name: "embedded", "blip", "vilt", "vision-encoder-decoder", "clip"
    family: str = ""
    #: what this backbone can do, any of "classifier", "generative", "caption", "explain", "itm"
    capabilities: frozenset[str] = frozenset()

    def __init__(self, name: str, quantization: str | None = None):
        self.name = name
        self.quantization = quantization

    # ----- public API -------------------------------------------------------------
    def answer(
        self,
        image: Any,
        question: str,
        head: str = "classifier",
        top_k: int = 5,
        decoding: str = "greedy",
        num_beams: int = 3,
        top_p: float = 0.9,
        temperature: float = 1.0,
        max_new_tokens: int = 8,
        candidates: list[str] | None = None,
        seed: int | None = 0,
    ) -> Answer:
        """Answer `question` about `image` (a PIL image, a path, or bytes) with one head."""
        head = HEAD.check(head)
        if head not in self.capabilities:
            raise UnsupportedError(f"{self.name} has no {head} head.")
        answers = self.ask(image, question, heads=(head,), top_k=top_k, decoding=decoding, num_beams=num_beams, top_p=top_p,
                           temperature=temperature, max_new_tokens=max_new_tokens, candidates=candidates, seed=seed)
        return answers.classifier if head == "classifier" else answers.generative

    def ask(
        self,
        image: Any,
        question: str,
        heads: tuple[str, ...] = HEADS,
        top_k: int = 5,
        decoding: str = "greedy",
        num_beams: int = 3,
        top_p: float = 0.9,
        temperature: float = 1.0,
        max_new_tokens: int = 8,
        candidates: list[str] | None = None,
        seed: int | None = 0,
    ) -> Answers:
        """Answer with each of `heads` that this model has, the image loaded, checked and encoded once.

        A head the model lacks is left as None (`answer()` raises for it instead); the image loader's
        notes (e.g. "Animated image: the first frame was used.") come back in `Answers.notes`."""
        wanted = [HEAD.check(h) for h in heads]
        top_k = TOP_K.check(top_k)
        settings = check_decoding(decoding, num_beams, top_p, temperature, max_new_tokens, seed)
        candidates = check_candidates(candidates)
        present = [h for h in wanted if h in self.capabilities]
        if not present:
            raise UnsupportedError(f"{self.name} cannot answer questions; it has no {' or '.join(wanted)} head.")
        pil = load_image(image)
        text = clean_question(question)
        result = Answers(notes=image_notes(pil))
        if "classifier" in present:
            start = time.perf_counter()
            result.classifier = self._classify(pil, text, top_k=top_k, candidates=candidates)
            result.classifier.latency_ms = (time.perf_counter() - start) * 1000
        if "generative" in present:
            start = time.perf_counter()
            result.generative = self._generate_answer(pil, text, top_k=min(top_k, MAX_GENERATED_SEQUENCES), **settings.as_kwargs())
            result.generative.latency_ms = (time.perf_counter() - start) * 1000
        result.in_domain, result.domain_note = self._domain(pil, text)
        for answer in (result.classifier, result.generative):
            if answer is not None:
                # the image loader's notes first, then what the head says about how it answered
                answer.notes, answer.in_domain, answer.domain_note = list(result.notes) + answer.notes, result.in_domain, result.domain_note
        return result

    def caption(
        self,
        image: Any,
        decoding: str = "beam",
        num_captions: int = 1,
        num_beams: int = 3,
        top_p: float = 0.9,
        temperature: float = 1.0,
        max_new_tokens: int = 40,
        prompt: str | None = None,
        seed: int | None = 0,
    ) -> Caption:
        """Describe `image` in words."""
        if "caption" not in self.capabilities:
            raise UnsupportedError(f"{self.name} cannot write captions.")
        num_captions = NUM_CAPTIONS.check(num_captions)
        settings = check_decoding(decoding, num_beams, top_p, temperature, max_new_tokens, seed, caption=True)
        prompt = clean_question(prompt) if prompt is not None else None
        pil = load_image(image)
        start = time.perf_counter()
        result = self._caption(pil, num_captions=num_captions, prompt=prompt, **settings.as_kwargs())
        result.latency_ms = (time.perf_counter() - start) * 1000
        result.notes = image_notes(pil)
        result.in_domain, result.domain_note = self._domain(pil, None)
        return result

    def explain(self, image: Any, question: str, answer: str | None = None) -> AttentionMaps:
        """Where in the image the model looked: attention (or gradient) maps over the patch grid."""
        if "explain" not in self.capabilities:
            raise UnsupportedError(f"{self.name} cannot show attention maps.")
        pil = load_image(image)
        text = clean_question(question)
        maps = self._explain(pil, text, answer=answer)
        maps.in_domain, maps.domain_note = self._domain(pil, text)
        return maps

    @abstractmethod
    def info(self) -> ModelInfo:
        """Facts about the model for the Model tab."""

    def memory_bytes(self) -> int:
        """Bytes held by parameters and buffers (what quantization shrinks)."""
        return 0

    def clear_caches(self) -> None:
        """Forget every per-image (and per-question) result kept for reuse: the next call pays in full."""

    # ----- to implement -------------------------------------------------------------
    def _domain(self, image, question: str | None) -> tuple[bool, str | None]:
        """Is the picture (and the question) inside what this model learned: (in domain, why not).
        A model with no notion of its own domain (the hub models) is always in domain."""
        return True, None

    def _classify(self, image, question: str, top_k: int, candidates: list[str] | None) -> Answer:
        raise UnsupportedError(f"{self.name} has no classifier head.")

    def _generate_answer(self, image, question: str, **decoding) -> Answer:
        raise UnsupportedError(f"{self.name} has no generative head.")

    def _caption(self, image, **decoding) -> Caption:
        raise UnsupportedError(f"{self.name} cannot write captions.")

    def _explain(self, image, question: str, answer: str | None) -> AttentionMaps:
        raise UnsupportedError(f"{self.name} cannot show attention maps.")


def image_notes(image) -> list[str]:
    """What the image loader had to do to the picture, in words for the user (e.g. the first frame of an animation)."""
    note = image.info.get("vqa_note")
    return [note] if note else []
