"""How the app shows answers and its attention menus (demo/handlers.py's plain helpers): probabilities as
percentages, the agreement badge, the label values, the layer / head / word menus and the refusal of a value
that is not on them. No model and no server: each test runs in milliseconds."""

from __future__ import annotations

import re

import numpy as np
import pytest

import vqa
from demo.handlers import (
    _choice,
    _table_cell,
    _token_index,
    agreement_badge,
    check_view,
    head_choices,
    label_value,
    layer_choices,
    megabytes,
    percent,
    same_answer,
    token_choices,
    total_variation,
)


def answer(text, score=0.5, candidates=None, head="classifier"):
    return vqa.Answer(text, score, candidates if candidates is not None else [(text, score)], head)


def maps(tokens=("[CLS]", "what", "color"), layers=(2, 3, 4), heads=2):
    cross = np.full((len(layers), heads, len(tokens), 3, 3), 1 / 9, dtype=np.float32)
    return vqa.AttentionMaps(cross=cross, tokens=list(tokens), layers=list(layers), image_size=(48, 48))


@pytest.mark.parametrize("p, shown", [(0.83, "83%"), (1.0, "100%"), (0.0, "0%"), (0.125, "12%"), (0.01, "1%"),
                                      (0.004, "0.4%"), (0.0567, "6%"), (0.0167, "2%"), (0.00567, "0.57%"),
                                      (2e-7, "2e-05%")])
def test_probabilities_read_as_percentages(p, shown):
    assert percent(p) == shown


def test_memory_is_shown_in_megabytes_or_kilobytes():
    assert megabytes(2_500_000) == "2.5 MB"
    assert megabytes(1_050_000) == "1.1 MB"
    assert megabytes(1_500) == "2 kB"
    assert megabytes(100_000) == "0.1 MB"
    assert megabytes(99_999) == "100 kB"
    assert megabytes(4_321) == "4 kB"


def test_answers_that_differ_only_in_case_or_spacing_are_the_same():
    assert same_answer("Red ", "red") and same_answer("red  circle", " red circle")
    assert not same_answer("red", "blue") and not same_answer("red circle", "redcircle")


def badge_background(html: str) -> tuple[int, int, int]:
    """The badge's background colour, from a well-formed style attribute (its last rule a border colour)."""
    colour = re.search(r'style="[^"]*;background:#([0-9a-f]{6});[^"]*;border-color:#[0-9a-f]{6}"', html).group(1)
    return tuple(int(colour[i:i + 2], 16) for i in (0, 2, 4))


def test_the_badge_says_green_when_the_heads_agree_and_orange_when_they_do_not():
    agree = agreement_badge(answer("Red"), answer("red ", head="generative"))
    assert "✓ Both heads agree: <b>Red</b>" in agree and "disagree" not in agree
    r, g, b = badge_background(agree)
    assert g > r and g > b  # green
    disagree = agreement_badge(answer("red"), answer("blue", head="generative"))
    assert "≠ The heads disagree: classifier <b>red</b>, generator <b>blue</b>" in disagree
    r, g, b = badge_background(disagree)
    assert r > g > b  # orange
    for html in (agree, disagree):
        assert html.startswith('<div class="vqa-badge" style="') and html.endswith("</div>")
        assert "border:2px solid" in html


def test_the_badge_escapes_answers_shows_empty_ones_and_is_empty_without_two_heads():
    assert "classifier <b>&lt;i&gt;</b>" in agreement_badge(answer("<i>"), answer("blue"))
    assert "generator <b>(empty answer)</b>" in agreement_badge(answer("red"), answer("  "))
    assert agreement_badge(None, answer("red")) == "" and agreement_badge(answer("red"), None) == ""


def test_a_label_lists_every_candidate_best_first_with_its_probability():
    value = label_value(answer("red", 0.7, [("red", 0.7), ("blue", 0.2), ("", 0.1)]))
    assert list(value.items()) == [("red", 0.7), ("blue", 0.2), ("(empty answer)", 0.1)]
    assert label_value(answer("red", 0.7, [])) == {"red": 0.7}
    assert label_value(answer(" ", 0.3, [])) == {"(empty answer)": 0.3}
    assert all(type(p) is float for p in label_value(answer("red", np.float32(0.5), [])).values())
    assert label_value(None) is None


def test_a_table_cell_keeps_the_table_intact():
    assert _table_cell("a|b\nc") == "a\\|b c"
    assert _table_cell(3) == "3"


def test_the_layer_menu_offers_first_last_each_layer_and_the_mean():
    assert layer_choices(maps(layers=(2, 3, 4))) == [
        ("first fusion layer (2)", "first"), ("last fusion layer (4)", "last"),
        ("layer 2", "0"), ("layer 3", "1"), ("layer 4", "2"), ("mean over layers", "mean"),
    ]


def test_the_head_menu_offers_the_mean_and_each_head():
    assert head_choices(maps(heads=3)) == [("mean over heads", "mean"), ("head 0", "0"), ("head 1", "1"), ("head 2", "2")]


def test_the_word_menu_calls_a_leading_cls_the_summary_and_numbers_the_other_words():
    assert token_choices(maps(tokens=("[CLS]", "what", "[CLS]"))) == [
        ("all question words", "all"), ("[CLS] (summary)", "0:[CLS]"), ("1 · what", "1:what"), ("2 · [CLS]", "2:[CLS]"),
    ]
    assert token_choices(maps(tokens=("what", "color"))) == [("all question words", "all"), ("0 · what", "0:what"), ("1 · color", "1:color")]


def test_a_menu_value_is_kept_only_when_it_is_on_the_menu():
    choices = [("mean over heads", "mean"), ("head 0", "0")]
    assert _choice("0", choices, "mean") == "0"
    assert _choice("7", choices, "mean") == "mean"
    assert _choice(0, choices, "mean") == "mean"


def test_a_word_still_in_the_question_is_shown_and_any_other_means_all_words():
    m = maps(tokens=("[CLS]", "what", "color"))
    assert _token_index(m, "1:what") == 1 and _token_index(m, "0:[CLS]") == 0 and _token_index(m, "2:color") == 2
    with_colon = maps(tokens=("[CLS]", "ratio", ":", "1"))
    assert _token_index(with_colon, "2::") == 2  # the word ":" itself
    for gone in ("1:which", "3:color", "-1:color", "x:what", "all", "", None, 1):
        assert _token_index(m, gone) is None, gone


def test_a_layer_head_or_method_not_on_the_menus_is_refused_with_the_menu():
    m = maps(layers=(2, 3), heads=2)
    check_view(m, "first", "mean", "attention")
    check_view(m, "1", "1", "rollout")
    with pytest.raises(vqa.InputError) as excinfo:
        check_view(m, "2", "mean", "attention")
    assert str(excinfo.value) == "Choose the layer from its menu: first, last, 0, 1, mean."
    with pytest.raises(vqa.InputError) as excinfo:
        check_view(m, "first", 1, "attention")
    assert str(excinfo.value) == "Choose the head from its menu: mean, 0, 1."
    with pytest.raises(vqa.InputError) as excinfo:
        check_view(m, "first", "mean", "gradcam")
    assert str(excinfo.value) == "Method must be one of attention, rollout, not 'gradcam'."
    with pytest.raises(vqa.InputError, match="Method must be one of"):
        check_view(m, "first", "mean", None)


def test_total_variation_of_answer_distributions():
    assert total_variation({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == 0
    assert total_variation({"a": 1.0}, {"b": 1.0}) == pytest.approx(1.0)
    assert total_variation({"a": 0.6, "b": 0.4}, {"a": 0.4, "c": 0.6}) == pytest.approx(0.6)
    assert total_variation({}, {}) == 0
