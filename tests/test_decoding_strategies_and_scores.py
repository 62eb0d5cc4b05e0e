"""What each decoding strategy writes and the probability shown next to each written answer
(vqa/backbones/decoding.py), on a randomly initialised two-layer GPT-2 of a few hundred parameters:
no training, milliseconds per test."""

from __future__ import annotations

import math

import pytest
import torch

from vqa.backbones.decoding import (
    generated_log_likelihood,
    generation_kwargs,
    ranked,
    scored_positions,
    seeded,
    sequence_log_likelihood,
)
from vqa.settings import GENERATION_TIME_LIMIT_S

VOCAB, EOS = 12, 2


@pytest.fixture(scope="module")
def decoder():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=16, n_layer=2, n_head=2, bos_token_id=1,
                        eos_token_id=EOS, pad_token_id=0)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # a peaked distribution, so beams and samples differ visibly
        model.lm_head.weight.mul_(8)
    return model


def generate(decoder, decoding, num_beams=3, top_p=0.9, temperature=1.0, max_new_tokens=5, num_return=1, seed=0, first=5):
    prompt = torch.tensor([[1, first]])
    with seeded(seed), torch.no_grad():
        out = decoder.generate(prompt, attention_mask=torch.ones_like(prompt),
                               **generation_kwargs(decoding, num_beams, top_p, temperature, max_new_tokens, num_return))
    return out


def teacher_forced(decoder, sequences, prompt_length):
    with torch.no_grad():
        logits = decoder(sequences).logits
    mask = scored_positions(sequences, prompt_length, EOS)
    return sequence_log_likelihood(logits, sequences, mask)


@pytest.mark.parametrize("decoding, num_return", [("greedy", 1), ("beam", 3), ("beam", 5), ("nucleus", 4)])
def test_the_probability_read_off_generate_is_the_models_own_probability_of_the_text(decoder, decoding, num_return):
    """The number shown next to a written answer equals a second, teacher-forced pass over the same tokens."""
    out = generate(decoder, decoding, num_beams=2, temperature=1.7, num_return=num_return)
    fast = generated_log_likelihood(out, 2, EOS)
    slow = teacher_forced(decoder, out.sequences, 2)
    assert fast.shape == (out.sequences.shape[0],)
    assert fast.tolist() == pytest.approx(slow.tolist(), abs=1e-4)
    assert all(ll < 0 for ll in fast.tolist())


def test_greedy_writes_one_answer_beam_and_nucleus_as_many_as_asked(decoder):
    assert generate(decoder, "greedy", num_return=5).sequences.shape[0] == 1
    assert generate(decoder, "beam", num_beams=2, num_return=5).sequences.shape[0] == 5  # more beams than asked
    assert generate(decoder, "beam", num_beams=4, num_return=2).sequences.shape[0] == 2
    assert generate(decoder, "nucleus", num_return=6).sequences.shape[0] == 6


def test_every_strategy_stops_at_the_token_limit(decoder):
    for decoding in ("greedy", "beam", "nucleus"):
        out = generate(decoder, decoding, max_new_tokens=3, num_return=2)
        assert out.sequences.shape[1] <= 2 + 3


def test_every_generate_call_is_bounded_in_time_and_returns_the_raw_logits():
    for decoding in ("greedy", "beam", "nucleus"):
        kwargs = generation_kwargs(decoding, 3, 0.9, 1.0, 8, 2)
        assert kwargs["max_time"] == GENERATION_TIME_LIMIT_S
        assert kwargs["output_logits"] and kwargs["return_dict_in_generate"]


def test_greedy_and_beam_do_not_sample_and_nucleus_does(decoder):
    """Two different seeds give the same greedy and beam text, and different nucleus samples."""
    for decoding in ("greedy", "beam"):
        a, b = (generate(decoder, decoding, num_return=2, seed=s).sequences for s in (1, 2))
        assert torch.equal(a, b), decoding
    samples = {tuple(generate(decoder, "nucleus", top_p=1.0, temperature=2.0, num_return=3, seed=s).sequences.flatten().tolist())
               for s in range(4)}
    assert len(samples) > 1


def test_greedy_writes_the_most_likely_token_at_each_step(decoder):
    for first in range(3, VOCAB):  # from 6 on, beam search with 2 beams writes something else
        text = [1, first]
        for _ in range(5):
            with torch.no_grad():
                text.append(int(decoder(torch.tensor([text])).logits[0, -1].argmax()))
            if text[-1] == EOS:
                break
        prompt = torch.tensor([[1, first]])
        with torch.no_grad():
            out = decoder.generate(prompt, attention_mask=torch.ones_like(prompt), **generation_kwargs("greedy", 3, 0.9, 1.0, 5, 1))
        assert out.sequences[0, :len(text)].tolist() == text


def test_greedy_and_beam_ignore_a_checkpoints_own_sampling_defaults(decoder):
    """Some hub checkpoints ship a generation config that samples with several beams: the user's choice wins."""
    import copy

    sampling = copy.deepcopy(decoder)
    sampling.generation_config.do_sample = True
    sampling.generation_config.num_beams = 4
    sampling.generation_config.temperature = 2.0
    for decoding in ("greedy", "beam"):
        for first in (5, 6):  # after 6, four beams write something else than greedy or two beams
            a, b = (generate(sampling, decoding, num_beams=2, num_return=2, seed=s, first=first).sequences for s in range(2))
            assert torch.equal(a, b), f"{decoding} sampled"
            assert torch.equal(a, generate(decoder, decoding, num_beams=2, num_return=2, first=first).sequences), decoding


def test_nucleus_truncates_by_top_p_only(decoder):
    """top_p close to 0 keeps only the most likely token: sampling then writes the greedy text, at any seed;
    top_k=0 means no default top-50 filter sits on top of it."""
    greedy = generate(decoder, "greedy").sequences
    for seed in range(3):
        assert torch.equal(generate(decoder, "nucleus", top_p=0.05, seed=seed).sequences, greedy)
    assert generation_kwargs("nucleus", 3, 0.9, 1.0, 8, 2)["top_k"] == 0


def test_a_temperature_of_zero_still_samples_instead_of_failing(decoder):
    out = generate(decoder, "nucleus", temperature=0.0, num_return=2)
    assert out.sequences.shape[0] == 2
    assert generation_kwargs("nucleus", 3, 0.9, 0.0, 8, 2)["temperature"] > 0
    assert generation_kwargs("nucleus", 3, 0.9, 0.5, 8, 2)["temperature"] == 0.5


def test_a_seed_repeats_the_samples_and_leaves_the_callers_random_state_alone():
    torch.manual_seed(123)
    expected_after = (torch.rand(3), torch.rand(3))[1]
    torch.manual_seed(123)
    before = torch.rand(3)
    with seeded(7):
        first = torch.rand(3)
    after = torch.rand(3)
    with seeded(7):
        again = torch.rand(3)
    with seeded(8):
        other = torch.rand(3)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.equal(after, expected_after) and not torch.equal(before, after)


def test_no_seed_draws_from_the_callers_generator():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    with seeded(None):
        drawn = torch.rand(3)
    assert torch.equal(drawn, expected)


def test_a_seed_is_released_after_an_error_inside_it():
    """A request that fails while seeded leaves the lock free (the next seeded request would otherwise wait
    forever) and the caller's random state as it was."""
    from vqa.backbones import decoding

    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    with pytest.raises(RuntimeError), seeded(3):
        torch.rand(5)
        raise RuntimeError("decoding failed")
    assert not decoding._SEEDED_LOCK.locked()
    assert torch.equal(torch.rand(3), expected)


def test_the_probability_covers_the_answer_up_to_its_first_end_token():
    sequences = torch.tensor([[1, 5, 6, EOS, 7, EOS], [1, 5, EOS, 8, 8, 8], [1, 5, 6, 7, 8, 9]])
    assert scored_positions(sequences, 2, EOS).tolist() == [
        [False, False, True, True, False, False],
        [False, False, True, False, False, False],
        [False, False, True, True, True, True],
    ]
    assert scored_positions(sequences, 1, None).tolist() == [[False] + [True] * 5] * 3
    # an EOS inside the prompt does not end the answer
    assert scored_positions(torch.tensor([[EOS, 5, 6, EOS]]), 1, EOS).tolist() == [[False, True, True, True]]


def test_sequence_log_likelihood_adds_the_masked_token_log_probabilities():
    logits = torch.zeros(1, 4, VOCAB)  # uniform predictions everywhere except where set below
    logits[0, 0, 5] = 3.0  # predicts token 1 (= 5)
    logits[0, 2, 7] = 1.0  # predicts token 3 (= 7), masked out below
    sequences = torch.tensor([[1, 5, 6, 7]])
    mask = torch.tensor([[False, True, True, False]])
    expected = torch.log_softmax(logits[0, 0], -1)[5] + math.log(1 / VOCAB)
    assert sequence_log_likelihood(logits, sequences, mask).item() == pytest.approx(expected.item(), abs=1e-6)


def test_ranked_answers_are_best_first_with_duplicates_merged():
    texts = ["red", "blue", "red", "green", "blue"]  # each duplicate keeps its best probability, first or last
    lls = torch.tensor([math.log(0.3), math.log(0.4), math.log(0.2), math.log(0.1), math.log(0.5)])
    assert ranked(texts, lls) == [("blue", pytest.approx(0.5)), ("red", pytest.approx(0.3)), ("green", pytest.approx(0.1))]
    assert ranked(texts, lls, top_k=2) == [("blue", pytest.approx(0.5)), ("red", pytest.approx(0.3))]
    assert ranked(["", "x"], torch.tensor([0.0, -1.0]))[0] == ("", 1.0)  # an empty answer is still ranked
    assert all(type(p) is float for _, p in ranked(texts, lls))
