"""Reading a generated sequence's probability off `generate`'s raw logits (vqa/backbones/decoding.py)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from vqa.backbones.decoding import generated_log_likelihood

EOS = 3


def test_a_beam_that_finished_before_the_others_is_scored_over_its_own_tokens():
    """Beam search ran 5 steps (another beam was still alive) but the returned beam ended after 3 tokens."""
    vocab, steps = 6, 5
    logits = torch.zeros(2, steps, vocab)  # (beams, steps, V): uniform except where set below
    logits[1, 0, 4] = 2.0  # the returned sequence's tokens came from beam 1, then 0, then 1
    logits[0, 1, 5] = 1.0
    logits[1, 2, EOS] = 3.0
    out = SimpleNamespace(
        sequences=torch.tensor([[1, 4, 5, EOS]]),  # (1, prompt 1 + 3 written)
        logits=tuple(logits[:, t] for t in range(steps)),
        beam_indices=torch.tensor([[1, 0, 1]]),
    )
    expected = sum(torch.log_softmax(logits[b, t], -1)[tok].item() for t, (b, tok) in enumerate([(1, 4), (0, 5), (1, EOS)]))
    assert generated_log_likelihood(out, 1, EOS).item() == pytest.approx(expected, abs=1e-5)


def test_tokens_after_the_first_eos_do_not_count():
    vocab = 6
    logits = torch.zeros(1, 4, vocab)
    out = SimpleNamespace(sequences=torch.tensor([[1, 4, EOS, 0, 0]]), logits=tuple(logits[:, t] for t in range(4)))
    assert generated_log_likelihood(out, 1, EOS).item() == pytest.approx(2 * math.log(1 / vocab), abs=1e-5)
