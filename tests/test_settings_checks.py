"""The messages a caller gets for a setting out of range, of the wrong type or not finite (vqa/settings.py),
checked on the declarations themselves: no model needed, so each runs in microseconds (tests/test_settings.py
checks the same through the Backbone API)."""

from __future__ import annotations

import math

import pytest

from vqa import settings
from vqa.errors import InputError


def refusal(setting, value) -> str:
    with pytest.raises(InputError) as excinfo:
        setting.check(value)
    return str(excinfo.value)


@pytest.mark.parametrize("value, shown", [
    (1_000_000, "1000000"), (0, "0"), (9, "9"), (-3, "-3"), (2.5, "2.5"), (math.inf, "inf"), (math.nan, "nan"),
    ("3", "'3'"), (None, "None"), (True, "True"), ([3], "list"), ({}, "dict"), (10**15, "a number that large"),
])
def test_beams_out_of_range_or_of_the_wrong_kind_get_the_readme_message(value, shown):
    assert refusal(settings.NUM_BEAMS, value) == f"Beams must be a whole number from 1 to 8, not {shown}."


def test_a_fractional_setting_says_a_number_and_its_fractional_bounds():
    assert refusal(settings.TOP_P, 0) == "Top-p must be a number from 0.05 to 1, not 0."
    assert refusal(settings.TEMPERATURE, 2.01) == "Temperature must be a number from 0.1 to 2, not 2.01."
    assert refusal(settings.TEMPERATURE, -math.inf) == "Temperature must be a number from 0.1 to 2, not -inf."


def test_the_bounds_are_accepted_and_whole_floats_come_back_as_ints():
    for setting in (settings.TOP_K, settings.NUM_BEAMS, settings.ANSWER_TOKENS, settings.CAPTION_TOKENS, settings.SEED):
        for bound in (setting.minimum, setting.maximum):
            value = setting.check(float(bound))  # JSON sends 3 as 3.0
            assert value == bound and type(value) is int
    assert settings.TOP_P.check(1) == 1.0 and type(settings.TOP_P.check(1)) is float
    assert settings.TEMPERATURE.check(0.1) == 0.1


def test_just_outside_each_bound_is_refused():
    for setting in (settings.TOP_K, settings.NUM_BEAMS, settings.ANSWER_TOKENS, settings.NUM_CAPTIONS):
        for value in (setting.minimum - 1, setting.maximum + 1):
            assert refusal(setting, value).startswith(setting.label)
    assert "not 0.04" in refusal(settings.TOP_P, 0.04)
    assert "not 1.01" in refusal(settings.TOP_P, 1.01)


def test_a_whole_number_setting_refuses_a_fraction_inside_its_range():
    assert refusal(settings.TOP_K, 2.5) == "Top-k answers must be a whole number from 1 to 1000, not 2.5."


def test_a_long_string_is_cut_short_in_the_message():
    message = refusal(settings.NUM_BEAMS, "9" * 10_000)
    assert message == "Beams must be a whole number from 1 to 8, not '" + "9" * 36 + "…'."
    exactly_40 = "x" * 38  # repr adds the two quotes
    assert refusal(settings.NUM_BEAMS, exactly_40).endswith(f"not '{exactly_40}'.")
    one_more = "x" * 39
    assert refusal(settings.NUM_BEAMS, one_more).endswith("not '" + "x" * 36 + "…'.")


def test_a_large_integer_is_shown_until_a_trillion():
    assert refusal(settings.NUM_BEAMS, 10**12 - 1).endswith("not 999999999999.")
    assert refusal(settings.NUM_BEAMS, 10**12).endswith("not a number that large.")
    assert refusal(settings.NUM_BEAMS, -(10**13)).endswith("not a number that large.")


def test_a_choice_lists_its_words_and_shows_what_was_sent():
    assert refusal(settings.DECODING, "telepathy") == "Decoding must be one of greedy, beam, nucleus, not 'telepathy'."
    assert refusal(settings.HEAD, None) == "Head must be one of classifier, generative, not None."
    assert refusal(settings.HEAD, ["classifier"]) == "Head must be one of classifier, generative, not list."
    assert settings.CAPTION_DECODING.check("beam") == "beam"


def test_answer_and_caption_decoding_have_their_own_token_limits():
    answer = settings.check_decoding("beam", 3.0, 0.9, 1.0, 16, None)
    assert answer.as_kwargs() == dict(decoding="beam", num_beams=3, top_p=0.9, temperature=1.0, max_new_tokens=16, seed=None)
    with pytest.raises(InputError, match="Max tokens must be a whole number from 1 to 16, not 17"):
        settings.check_decoding("beam", 3, 0.9, 1.0, 17, None)
    caption = settings.check_decoding("nucleus", 8, 0.05, 2.0, 40, 7.0, caption=True)
    assert caption.as_kwargs() == dict(decoding="nucleus", num_beams=8, top_p=0.05, temperature=2.0, max_new_tokens=40, seed=7)
    assert type(caption.seed) is int and type(caption.max_new_tokens) is int
    with pytest.raises(InputError, match="Max tokens must be a whole number from 1 to 40, not 41"):
        settings.check_decoding("beam", 3, 0.9, 1.0, 41, None, caption=True)


@pytest.mark.parametrize("argument, value, message", [
    ("decoding", "x", "Decoding must be one of greedy, beam, nucleus"),
    ("num_beams", 0, "Beams must be"),
    ("top_p", 2, "Top-p must be"),
    ("temperature", 0, "Temperature must be"),
    ("max_new_tokens", 0, "Max tokens must be"),
    ("seed", -1, "Seed must be a whole number from 0 "),
    ("seed", 2**32, "Seed must be"),
])
def test_each_decoding_argument_is_checked(argument, value, message):
    arguments = dict(decoding="greedy", num_beams=3, top_p=0.9, temperature=1.0, max_new_tokens=8, seed=0)
    arguments[argument] = value
    with pytest.raises(InputError) as excinfo:
        settings.check_decoding(**arguments)
    assert str(excinfo.value).startswith(message)


def test_a_caption_decoding_refuses_a_word_it_does_not_offer():
    with pytest.raises(InputError, match="Decoding must be one of beam, nucleus, greedy, not 'x'"):
        settings.check_decoding("x", 3, 0.9, 1.0, 8, None, caption=True)


def test_candidate_answers_are_a_bounded_list_of_strings():
    assert settings.check_candidates(None) is None
    assert settings.check_candidates(("red", "blue")) == ["red", "blue"]
    assert settings.check_candidates(["red"] * 200) == ["red"] * 200
    assert settings.check_candidates(["red"]) == ["red"]
    for bad, message in [("red", "Candidate answers must be a list of strings, not 'red'."),
                         ({"red"}, "Candidate answers must be a list of strings, not set."),
                         ([], "Give from 1 to 200 candidate answers, not 0."),
                         (["red"] * 201, "Give from 1 to 200 candidate answers, not 201."),
                         (["red", 3], "Candidate answers must be strings.")]:
        with pytest.raises(InputError) as excinfo:
            settings.check_candidates(bad)
        assert str(excinfo.value) == message
