"""The interface every backbone implements, embedded or from the hub.

The app, the CLI, evaluation and tests only ever talk to this interface, so a
new model family is one new subclass. Inputs are checked here, once, through
`vqa.image_io` (images) and `vqa.image_io.clean_question` (text).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np

from vqa.errors import InputError, UnsupportedError
from vqa.image_io import clean_question, load_image
from vqa.results import Answer, Answers, AttentionMaps, Caption, ModelInfo, SearchHit
from vqa.settings import (
    HEAD,
    MAX_GENERATED_SEQUENCES,
    NUM_CAPTIONS,
    TOP_K,
    check_candidates,
    check_decoding,
)

if TYPE_CHECKING:
    from vqa.retrieval import GalleryIndex

HEADS = HEAD.choices


class Backbone(ABC):
    """A loaded model that answers, captions and explains.

    Subclasses implement the underscored methods; the public methods validate
    inputs (against `vqa.settings`), time the call and keep one behaviour across families.
    """

    #: short family name: "embedded", "blip", "vilt", "vision-encoder-decoder", "clip"
    family: str = ""
    #: what this backbone can do, any of "classifier", "generative", "caption", "explain",
    #: "itm" (image-text matching: `match`) and "retrieval" (contrastive embeddings: `embed_*`, `search`)
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

    # ----- retrieval: image-text contrastive embeddings (ITC) and matching (ITM) -----------------
    def embed_images(self, images: list[Any]) -> np.ndarray:
        """(N, D) L2-normalised ITC embeddings of `images` (each a PIL image, a path, bytes, ...), D this
        model's contrastive size; a picture and a text that match point the same way."""
        self._require("retrieval", "embed pictures for search (it has no image-text contrastive head)")
        return self._embed_images([load_image(image) for image in _non_empty(images, "images")])

    def embed_text(self, texts: list[str]) -> np.ndarray:
        """(N, D) L2-normalised ITC embeddings of `texts`, in the same space as `embed_images`."""
        self._require("retrieval", "embed texts for search (it has no image-text contrastive head)")
        if isinstance(texts, str):  # a lone string would otherwise be read as a list of characters
            texts = [texts]
        return self._embed_text([clean_question(text) for text in _non_empty(texts, "texts")])

    def match(self, image: Any, text: str) -> float:
        """The ITM probability, in [0, 1], that `text` describes `image`: the model reads the two together."""
        self._require("itm", "tell whether a text matches a picture (it has no image-text matching head)")
        return float(self._match([load_image(image)], [clean_question(text)])[0, 0])

    def embedding_space(self) -> str:
        """Which vector space this model's embeddings live in: vectors from different spaces cannot be compared,
        so a gallery index records it and refuses a model of another space."""
        return f"{self.family}:{self.name}"

    def search(self, query: Any, gallery: "GalleryIndex | list[Any]", top_k: int = 10, rerank: bool = True,
               rerank_candidates: int | None = None) -> list[SearchHit]:
        """The `top_k` items of `gallery` closest to `query`, best first.

        query: a text (a `str`) or a picture (a PIL image, a `pathlib.Path`, bytes, an array; a path must be
            a `Path`, since a `str` is read as text).
        gallery: a `vqa.retrieval.GalleryIndex` (pictures on disk or in memory, or texts), or a list of
            pictures, which is embedded on every call (build an index once to search it often).
        rerank: retrieve the `rerank_candidates` nearest items by ITC (cheap: one vector against the index),
            then score each candidate with the ITM head (the model reads query and item together) and order
            them by that. It applies when query and items differ in kind (text against pictures, or a
            picture against texts); a picture against pictures is ranked by ITC alone.
        rerank_candidates: how many ITC hits ITM re-scores (at least `top_k`; default `RERANK_CANDIDATES`).
        """
        from vqa.retrieval import RERANK_CANDIDATES, SEARCH_TOP_K, GalleryIndex

        self._require("retrieval", "search (it has no image-text contrastive head)")
        top_k = SEARCH_TOP_K.check(top_k)
        rerank_candidates = RERANK_CANDIDATES.check(RERANK_CANDIDATES.default if rerank_candidates is None else rerank_candidates)
        query_is_text = isinstance(query, str)
        query = clean_question(query) if query_is_text else load_image(query)
        if not isinstance(gallery, GalleryIndex):
            gallery = GalleryIndex.from_images(self, list(gallery) if isinstance(gallery, (list, tuple)) else [gallery])
        gallery.check_model(self)
        cross_modal = query_is_text != (gallery.modality == "text")
        rerank = bool(rerank) and cross_modal
        if rerank and "itm" not in self.capabilities:
            raise UnsupportedError(f"{self.name} has no image-text matching head to re-rank with; search with rerank=False.")
        query_vector = self._embed_text([query]) if query_is_text else self._embed_images([query])  # (1, D)
        itc_scores, positions = gallery.nearest(query_vector[0], max(top_k, rerank_candidates) if rerank else top_k)
        hits = [SearchHit(position=int(p), itc_score=float(s), itm_score=None, rank_before_rerank=rank, path=gallery.path_of(int(p)),
                          text=gallery.text_of(int(p))) for rank, (s, p) in enumerate(zip(itc_scores, positions), 1)]
        if rerank and hits:
            if query_is_text:  # (candidates, 1): each candidate picture with the query text
                itm = self._match([gallery.image_of(hit.position) for hit in hits], [query])[:, 0]
            else:  # (1, candidates): the query picture with each candidate text
                itm = self._match([query], [hit.text for hit in hits])[0]
            for hit, probability in zip(hits, itm.tolist()):
                hit.itm_score = probability
            hits.sort(key=lambda hit: (-hit.itm_score, hit.rank_before_rerank))  # ties keep the ITC order
        return hits[:top_k]

    def _require(self, capability: str, what: str) -> None:
        if capability not in self.capabilities:
            raise UnsupportedError(f"{self.name} cannot {what}.")

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

    def _embed_images(self, images: list) -> np.ndarray:
        """(N, D) float32 unit vectors of RGB PIL images in the ITC space."""
        raise UnsupportedError(f"{self.name} cannot embed pictures for search.")

    def _embed_text(self, texts: list[str]) -> np.ndarray:
        """(N, D) float32 unit vectors of cleaned texts in the ITC space."""
        raise UnsupportedError(f"{self.name} cannot embed texts for search.")

    def _match(self, images: list, texts: list[str]) -> np.ndarray:
        """(len(images), len(texts)) ITM match probabilities of every picture with every text."""
        raise UnsupportedError(f"{self.name} cannot tell whether a text matches a picture.")


def _non_empty(items, what: str) -> list:
    """`items` as a list, or InputError when there is nothing in it."""
    items = list(items) if isinstance(items, (list, tuple)) else [items]
    if not items:
        raise InputError(f"No {what} were given.")
    return items


def image_notes(image) -> list[str]:
    """What the image loader had to do to the picture, in words for the user (e.g. the first frame of an animation)."""
    note = image.info.get("vqa_note")
    return [note] if note else []
