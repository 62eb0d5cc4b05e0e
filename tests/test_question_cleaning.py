"""What a person sees when a question is tidied or refused (vqa/image_io.py, clean_question): the exact
messages, and the edges tests/test_image_io.py leaves open (the limits' boundaries, the order of the steps)."""

from __future__ import annotations

import pytest

from vqa.errors import InputError
from vqa.image_io import clean_question


def refusal(question, **kwargs) -> str:
    with pytest.raises(InputError) as excinfo:
        clean_question(question, **kwargs)
    return str(excinfo.value)


def test_a_question_that_is_not_text_names_what_was_sent():
    assert refusal(42) == "The question must be text, not int."
    assert refusal(None) == "The question must be text, not NoneType."


def test_an_empty_question_and_one_without_a_word_get_different_hints():
    assert refusal("") == "Please type a question."
    assert refusal(" \t ") == "Please type a question."
    assert refusal("??? !!") == "Please type a question. It needs at least one word."
    assert refusal("👍") == "Please type a question. It needs at least one word."


def test_a_digit_alone_is_a_question():
    assert clean_question(" 3 ") == "3"
    assert clean_question("٣?") == "٣?"  # an Arabic-Indic digit counts too


def test_a_too_long_question_says_how_long_it_is_and_what_the_limit_is():
    assert refusal("a" * 301) == "The question is 301 characters long; the limit is 300. Please shorten it."
    assert clean_question("a" * 300) == "a" * 300
    assert refusal("ab c", max_chars=3) == "The question is 4 characters long; the limit is 3. Please shorten it."
    assert clean_question("ab c", max_chars=4) == "ab c"


def test_whitespace_padding_up_to_a_hundred_times_the_limit_is_tidied_not_refused():
    padded = "what?" + " " * 995  # 1000 characters, 100 × max_chars
    assert clean_question(padded, max_chars=10) == "what?"
    message = refusal(padded + " ", max_chars=10)  # one more: refused before the characters are read
    assert message == "The question is 1001 characters long; the limit is 10. Please shorten it."


def test_only_the_joiners_real_scripts_need_are_kept_among_invisible_characters():
    assert clean_question("a\u200cb\u200dc\u200bd\u2060e?") == "a\u200cb\u200dcde?"
    assert clean_question("red\x00\x07 circle\u00ad?") == "red circle?"


def test_every_kind_of_space_or_line_break_separates_words():
    assert clean_question("what\tcolour\u00a0is\nthe\u2003car?") == "what colour is the car?"
    assert clean_question("what\x0bcolour\x0cis\x1cit?") == "what colour is it?"  # vertical tab, form feed, separators


def test_an_accent_is_joined_to_its_letter_after_invisible_characters_are_removed():
    assert clean_question("cafe\u200b\u0301?") == "caf\u00e9?"
