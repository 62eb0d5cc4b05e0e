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


# ----- what each decoding does, as a user sees it ----------------------------------------------
QUESTION = "what color is the circle?"


@pytest.fixture(scope="module")
def picture():
    from vqa.data.splits import make_example

    return make_example("test", 2, 64).image


def test_greedy_writes_one_answer_and_beam_and_nucleus_several(tiny_model, picture):
    greedy = tiny_model.answer(picture, QUESTION, head="generative", decoding="greedy", top_k=5)
    beam = tiny_model.answer(picture, QUESTION, head="generative", decoding="beam", num_beams=4, top_k=4)
    nucleus = tiny_model.answer(picture, QUESTION, head="generative", decoding="nucleus", top_p=1.0, temperature=2.0, top_k=6)
    assert len(greedy.candidates) == 1
    assert len(beam.candidates) >= 2, "beam search returned a single sequence: is it greedy?"
    assert len(nucleus.candidates) >= 2, "six samples at temperature 2 gave one answer: is sampling greedy?"
    assert all(0 < p <= 1 for _, p in beam.candidates + nucleus.candidates)


def test_nucleus_samples_depend_on_the_seed_and_repeat_with_it(tiny_model, picture):
    def sample(seed):
        return tiny_model.answer(picture, QUESTION, head="generative", decoding="nucleus", top_p=1.0, temperature=2.0, top_k=6, seed=seed).candidates

    assert sample(1) == sample(1)
    assert len({tuple(sample(seed)) for seed in range(4)}) >= 2, "four seeds drew the same samples"


def test_the_ask_button_uses_the_chosen_decoding(tiny_model_dir, picture):
    """The app's Ask handler passes the decoding on: beam and nucleus list several written answers, greedy one."""
    from demo.handlers import Handlers
    from demo.state import ModelManager

    handlers = Handlers(ModelManager(str(tiny_model_dir), serve=None, offer_hub=False))
    shown = {}
    for decoding in ("greedy", "beam", "nucleus"):
        _, generative, *_ = handlers.ask(picture, QUESTION, top_k=4, decoding=decoding, num_beams=4, top_p=1.0, temperature=2.0)
        shown[decoding] = generative
    assert len(shown["greedy"]) == 1 and len(shown["beam"]) >= 2 and len(shown["nucleus"]) >= 2, shown
    assert shown["beam"] != shown["nucleus"]
