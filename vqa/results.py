"""Plain result types returned by every backbone (embedded or hub).

They hold plain Python / NumPy data so the UI, CLI and tests can use them
without knowing which model produced them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Answer:
    """One answer to one question.

    answer: the best answer string.
    score: its probability (classifier: softmax probability; generative: the
        sequence probability, i.e. the product of the token probabilities).
    candidates: [(answer, probability), ...] best first.
    head: "classifier" or "generative" (or "rank" for candidate ranking).
    notes: what the image loader did to the picture, in words for the user.
    in_domain: False when the picture or the question lies outside what the model learned;
        domain_note then says why, in words a visitor understands.
    """

    answer: str
    score: float
    candidates: list[tuple[str, float]]
    head: str
    latency_ms: float = 0.0
    notes: list[str] = field(default_factory=list)
    in_domain: bool = True
    domain_note: str | None = None


@dataclass
class Answers:
    """The answers of each head asked about one (image, question); a head the model lacks is None."""

    classifier: Answer | None = None
    generative: Answer | None = None
    notes: list[str] = field(default_factory=list)
    in_domain: bool = True
    domain_note: str | None = None


@dataclass
class Caption:
    """A caption with its alternatives: candidates are [(text, probability), ...]."""

    text: str
    score: float
    candidates: list[tuple[str, float]]
    latency_ms: float = 0.0
    notes: list[str] = field(default_factory=list)
    in_domain: bool = True  # as for Answer (the picture only)
    domain_note: str | None = None


@dataclass
class AttentionMaps:
    """Attention from text tokens onto the image patch grid.

    cross: (layers, heads, tokens, grid_h, grid_w), each row over the grid sums to 1
        for a real cross-attention (gradient maps are normalised the same way), or to less
        where the grid is cut to a letterboxed picture (vqa/image_fit.py).
    tokens: the text tokens the rows belong to (question tokens, or answer tokens).
    layers: the model's layer index of each entry of axis 0.
    image_size: (width, height) of the image the maps are drawn over.
    kind: "cross-attention", "self-attention text→image block" or "gradient".
    note: a sentence for the UI saying what these maps are.
    text_self: optional (layers, heads, tokens, tokens) text self-attention of the
        same layers, used for attention rollout.
    answer: the answer the maps explain, when known.
    """

    cross: np.ndarray
    tokens: list[str]
    layers: list[int]
    image_size: tuple[int, int]
    kind: str = "cross-attention"
    note: str = ""
    text_self: np.ndarray | None = None
    answer: str | None = None
    extra: dict = field(default_factory=dict)
    in_domain: bool = True  # as for Answer
    domain_note: str | None = None

    @property
    def grid(self) -> tuple[int, int]:
        return int(self.cross.shape[-2]), int(self.cross.shape[-1])

    @property
    def num_heads(self) -> int:
        return int(self.cross.shape[1])


@dataclass
class ModelInfo:
    """What the Model tab shows: facts about the loaded backbone, in plain words."""

    name: str
    family: str
    description: str
    facts: dict[str, str]
    capabilities: list[str]
    quantization: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class SearchHit:
    """One gallery item found for a query, best first in the list `Backbone.search` returns.

    position: where the item sits in the gallery (0-based, the order it was indexed in).
    itc_score: cosine similarity of query and item in the image-text contrastive (ITC) space, in [-1, 1].
    itm_score: the image-text matching (ITM) probability that the item and the query match, in [0, 1];
        None when the hits were not re-ranked (re-ranking off, or query and gallery of the same kind).
    rank_before_rerank: the item's 1-based rank by ITC alone; compare it with the list order to see what
        re-ranking changed.
    path: the image file of an indexed picture (None for pictures held in memory and for texts).
    text: the text of an item of a text gallery (None for pictures).
    """

    position: int
    itc_score: float
    itm_score: float | None
    rank_before_rerank: int
    path: str | None = None
    text: str | None = None
