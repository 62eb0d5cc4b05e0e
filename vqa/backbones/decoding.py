"""Decoding with transformers' `generate`, and the probability of what it wrote.

Shared by every backbone with a text decoder (the embedded model, BLIP, VisionEncoderDecoder):
- `generation_kwargs`: greedy / beam / nucleus settings, returning the raw logits;
- `seeded`: reproducible sampling without touching the caller's random state;
- `generated_log_likelihood`: each generated sequence's log-probability under the model,
  read off those raw logits (no second forward pass);
- `sequence_log_likelihood`: the same for given sequences from one teacher-forced pass
  (ranking candidate answers, BLIP's "rank" inference);
- `ranked`: (text, probability) pairs, best first, duplicates merged.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import numpy as np
import torch

from vqa.settings import GENERATION_TIME_LIMIT_S


def generation_kwargs(decoding: str, num_beams: int, top_p: float, temperature: float, max_new_tokens: int,
                      num_return: int) -> dict[str, Any]:
    """`generate` arguments for one decoding strategy, returning up to `num_return` sequences."""
    # Raw logits come back so each sequence's probability is read off without a second pass;
    # max_time ends decoding on a slow machine however the other settings were chosen.
    common = dict(max_new_tokens=max_new_tokens, output_logits=True, return_dict_in_generate=True,
                  max_time=GENERATION_TIME_LIMIT_S)
    if decoding == "greedy":
        return dict(common, do_sample=False, num_beams=1)
    if decoding == "beam":
        beams = max(num_beams, num_return)
        return dict(common, do_sample=False, num_beams=beams, num_return_sequences=min(num_return, beams))
    # nucleus: top_k=0 turns off the default top-50 filter so only top_p truncates.
    return dict(common, do_sample=True, top_p=top_p, top_k=0, temperature=max(temperature, 1e-4),
                num_return_sequences=num_return)


# Seeding sets torch's one global generator: one seeded sampler at a time keeps each
# request's result reproducible when the server runs two requests at once.
_SEEDED_LOCK = threading.Lock()


@contextlib.contextmanager
def seeded(seed: int | None):
    """Reproducible sampling without touching the caller's global RNG state."""
    if seed is None:
        yield
        return
    with _SEEDED_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def scored_positions(sequences: torch.Tensor, start: int, eos_id: int | None) -> torch.Tensor:
    """Mask of the tokens a sequence's probability covers: from `start` to the first EOS, inclusive.

    sequences: (n, T) token ids; returns a bool (n, T). Tokens after EOS are padding.
    """
    n, length = sequences.shape
    positions = torch.arange(length, device=sequences.device).expand(n, length)
    counted = positions >= start
    if eos_id is None:
        return counted
    is_eos = (sequences == eos_id) & counted
    eos_before = is_eos.long().cumsum(dim=1) - is_eos.long()  # EOS tokens strictly before t
    return counted & (eos_before == 0)


def sequence_log_likelihood(logits: torch.Tensor, sequences: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum of log p(token_t | tokens_<t) over masked positions.

    logits: (n, T, V) where logits[:, t] predicts token t + 1; sequences, mask: (n, T).
    """
    log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # (n, T-1, V)
    targets = sequences[:, 1:]
    token_lp = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (n, T-1)
    return (token_lp * mask[:, 1:].float()).sum(dim=1)


def generated_log_likelihood(out, prompt_length: int, eos_id: int | None) -> torch.Tensor:
    """log p of each generated sequence (prompt excluded, up to its first EOS) under the model's raw logits.

    out: what `generate(..., output_logits=True, return_dict_in_generate=True)` returns. The raw
    logits are those before temperature / top-p / penalties, so this is the model's own probability
    of the text whatever the decoding was, without a second forward pass. Beam search logits are
    per beam: `beam_indices` says which beam produced each token.
    """
    sequences = out.sequences  # (n, prompt_length + written)
    logits = torch.stack(out.logits, dim=1).float()  # (rows, steps, V)
    beams = getattr(out, "beam_indices", None)
    # Beam search keeps stepping while any beam is alive, so the returned (finished) sequences and
    # their beam_indices can be shorter than the logits: score only the steps they cover.
    steps = min(logits.shape[1], sequences.shape[1] - prompt_length, beams.shape[1] if beams is not None else logits.shape[1])
    n = sequences.shape[0]
    rows = (beams[:, :steps].long() if beams is not None
            else torch.arange(n).unsqueeze(1).expand(n, steps))  # (n, steps): -1 past the end of a beam
    step_index = torch.arange(steps).unsqueeze(0).expand(n, steps)
    tokens = sequences[:, prompt_length:prompt_length + steps]
    token_lp = torch.log_softmax(logits[rows.clamp(min=0), step_index], dim=-1).gather(-1, tokens.unsqueeze(-1))
    mask = scored_positions(sequences, prompt_length, eos_id)[:, prompt_length:prompt_length + steps] & (rows >= 0)
    return (token_lp.squeeze(-1) * mask.float()).sum(dim=1)


def ranked(texts: list[str], log_likelihoods: torch.Tensor, top_k: int | None = None) -> list[tuple[str, float]]:
    """[(text, probability)] best first, probability = exp(log-likelihood), duplicates merged."""
    best: dict[str, float] = {}
    for text, ll in zip(texts, log_likelihoods.tolist()):
        best[text] = max(best.get(text, -float("inf")), ll)
    pairs = sorted(best.items(), key=lambda kv: kv[1], reverse=True)[:top_k]
    return [(text, float(np.exp(ll))) for text, ll in pairs]
