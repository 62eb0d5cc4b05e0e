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
from vqa.results import Answer, AttentionMaps, Caption, ModelInfo

HEADS = ("classifier", "generative")
DECODINGS = ("greedy", "beam", "nucleus")


class Backbone(ABC):
    """A loaded model that answers, captions and explains.

    Subclasses implement the underscored methods; the public methods validate
    inputs, time the call and keep one behaviour across families.
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
        """Answer `question` about `image` (a PIL image, a path, or bytes)."""
        if head not in HEADS:
            raise UnsupportedError(f"Unknown head {head!r}: choose one of {', '.join(HEADS)}.")
        if head not in self.capabilities:
            raise UnsupportedError(f"{self.name} has no {head} head.")
        if decoding not in DECODINGS:
            raise UnsupportedError(f"Unknown decoding {decoding!r}: choose one of {', '.join(DECODINGS)}.")
        pil = load_image(image)
        text = clean_question(question)
        start = time.perf_counter()
        if head == "classifier":
            result = self._classify(pil, text, top_k=max(1, int(top_k)), candidates=candidates)
        else:
            result = self._generate_answer(
                pil, text, decoding=decoding, num_beams=max(1, int(num_beams)), top_p=float(top_p),
                temperature=float(temperature), max_new_tokens=max(1, int(max_new_tokens)),
                top_k=max(1, int(top_k)), seed=seed,
            )
        result.latency_ms = (time.perf_counter() - start) * 1000
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
        if decoding not in DECODINGS:
            raise UnsupportedError(f"Unknown decoding {decoding!r}: choose one of {', '.join(DECODINGS)}.")
        pil = load_image(image)
        start = time.perf_counter()
        result = self._caption(
            pil, decoding=decoding, num_captions=max(1, int(num_captions)), num_beams=max(1, int(num_beams)),
            top_p=float(top_p), temperature=float(temperature), max_new_tokens=max(1, int(max_new_tokens)),
            prompt=prompt, seed=seed,
        )
        result.latency_ms = (time.perf_counter() - start) * 1000
        return result

    def explain(self, image: Any, question: str, answer: str | None = None) -> AttentionMaps:
        """Where in the image the model looked: attention (or gradient) maps over the patch grid."""
        if "explain" not in self.capabilities:
            raise UnsupportedError(f"{self.name} cannot show attention maps.")
        pil = load_image(image)
        text = clean_question(question)
        return self._explain(pil, text, answer=answer)

    @abstractmethod
    def info(self) -> ModelInfo:
        """Facts about the model for the Model tab."""

    def memory_bytes(self) -> int:
        """Bytes held by parameters and buffers (what quantization shrinks)."""
        return 0

    def clear_caches(self) -> None:
        """Forget every per-image (and per-question) result kept for reuse: the next call pays in full."""

    # ----- to implement -------------------------------------------------------------
    def _classify(self, image, question: str, top_k: int, candidates: list[str] | None) -> Answer:
        raise UnsupportedError(f"{self.name} has no classifier head.")

    def _generate_answer(self, image, question: str, **decoding) -> Answer:
        raise UnsupportedError(f"{self.name} has no generative head.")

    def _caption(self, image, **decoding) -> Caption:
        raise UnsupportedError(f"{self.name} cannot write captions.")

    def _explain(self, image, question: str, answer: str | None) -> AttentionMaps:
        raise UnsupportedError(f"{self.name} cannot show attention maps.")
