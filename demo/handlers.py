"""What the buttons do: plain functions (methods of `Handlers`) that tests call without a server.

Every handler takes what the UI components send (an image path, a string, numbers)
and returns what the output components show (dicts for gr.Label, PIL images,
Markdown / HTML strings). They only use the public `vqa` API.

Errors: a `vqa.VQAError` (bad image, empty question, unsupported operation, failed
load) becomes `gr.Error` with the library's message, which is written for the
user. Anything else is a bug: it is logged with its traceback and the user gets a
short generic `gr.Error`; the server keeps running.
"""

from __future__ import annotations

import functools
import html
import logging
import statistics
import threading
import time
from collections import OrderedDict
from typing import Any, Callable

import gradio as gr
import numpy as np
from PIL import Image, ImageDraw

import vqa
from vqa.attention_maps import colorbar, layer_grid, overlay, peak_location, pointing_map, rollout, select_map
from vqa.image_io import MAX_QUESTION_CHARS, clean_question, load_image
from vqa.quantization import SCHEME_LABELS, SCHEMES, availability, normalise_scheme
from vqa.settings import ATTENTION_METHOD, QUANTIZATION

from demo.state import ModelManager

log = logging.getLogger("demo")

#: The quantization comparison asks for this many answers from each model, so the
#: total variation covers (nearly) the whole answer distribution, not just the top 5.
COMPARE_TOP_K = 100
#: Answers shown side by side in the quantization comparison.
SHOWN_TOP_K = 5
#: Timed repeats per model in the quantization comparison (the median is shown).
LATENCY_REPEATS = 3
GENERIC_ERROR = "Something went wrong on the server. The details are in the server log; please try again."
#: Pictures kept in a session for re-drawing its heatmaps are shrunk to this many pixels on the long
#: side: the size the heatmaps are shown at, so nothing visible is lost and a 25-megapixel upload
#: does not stay in memory.
DISPLAY_SIDE = 384
#: Layers × heads pictures a session keeps for re-drawing (one per word chosen), most recent first.
GRID_CACHE_SIZE = 4

CAPABILITY_WORDS = {
    "classifier": "pick an answer from a fixed list (classifier head)",
    "generative": "write an answer word by word (generative head)",
    "caption": "describe the picture in a sentence (captions)",
    "explain": "show where it looked (attention maps)",
    "itm": "check whether a sentence matches the picture (image-text matching)",
    "retrieval": "find pictures by a sentence or by another picture (image-text contrastive embeddings)",
}

# matplotlib's pyplot keeps global state and is not thread-safe: one figure at a time.
_PLOT_LOCK = threading.Lock()


# ----- errors ---------------------------------------------------------------------------
def user_errors(fn: Callable) -> Callable:
    """Turn library errors into gr.Error with their message and bugs into a logged, generic gr.Error."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except vqa.VQAError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        except Exception as exc:  # noqa: BLE001 - the server must survive any bug in one request
            log.exception("Unexpected error in %s", fn.__name__)
            raise gr.Error(GENERIC_ERROR, print_exception=False) from exc

    return wrapper


# ----- small formatting helpers ------------------------------------------------------------
def label_value(answer: vqa.Answer | None) -> dict[str, float] | None:
    """gr.Label's value: {answer: probability}, best first."""
    if answer is None:
        return None
    pairs = answer.candidates or [(answer.answer, answer.score)]
    return {shown_answer(text): float(probability) for text, probability in pairs}


def shown_answer(text: str) -> str:
    """An empty generated answer (the decoder stopped at once) must still be visible."""
    return text if text.strip() else "(empty answer)"


def percent(p: float) -> str:
    """Probabilities as people read them: 83%, 0.4%, 2e-05%."""
    value = 100 * p
    if value >= 1 or value == 0:
        return f"{value:.0f}%"
    return f"{value:.2g}%"


def megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"


def same_answer(a: str, b: str) -> bool:
    return " ".join(a.lower().split()) == " ".join(b.lower().split())


def head_notes(answer, answers) -> list[str]:
    """The notes one head added to its answer, beyond those about the picture that every head shares."""
    return [note for note in (answer.notes if answer else []) if note not in answers.notes]


def agreement_badge(classifier: vqa.Answer | None, generative: vqa.Answer | None) -> str:
    """A coloured line saying whether the two heads gave the same answer."""
    if classifier is None or generative is None:
        return ""
    c, g = html.escape(shown_answer(classifier.answer)), html.escape(shown_answer(generative.answer))
    if same_answer(classifier.answer, generative.answer):
        style, text = "background:#dcfce7;color:#14532d;border-color:#16a34a", f"✓ Both heads agree: <b>{c}</b>"
    else:
        style, text = "background:#ffedd5;color:#7c2d12;border-color:#ea580c", f"≠ The heads disagree: classifier <b>{c}</b>, generator <b>{g}</b>"
    return f'<div class="vqa-badge" style="padding:.5em 1em;border:2px solid;border-radius:.6em;font-size:1.15em;{style}">{text}</div>'


def domain_notice(note: str) -> str:
    """The amber notice that replaces the agreement badge when the model is outside what it learned:
    the answers stay visible, since seeing a model fail outside its training data is itself a lesson."""
    return (
        '<div class="vqa-badge vqa-outside" style="padding:.5em 1em;border:2px solid #d97706;border-radius:.6em;'
        f'font-size:1.1em;background:#fef3c7;color:#78350f">⚠ Outside what this model knows. {html.escape(note)}</div>'
    )


def _table_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _position_words(grid_map: np.ndarray) -> str:
    x, y = peak_location(grid_map)
    row = "top" if y < 1 / 3 else "bottom" if y > 2 / 3 else "middle"
    col = "left" if x < 1 / 3 else "right" if x > 2 / 3 else "centre"
    return "centre" if (row, col) == ("middle", "centre") else f"{row} {col}"


def mark_peak(heat: Image.Image, grid_map: np.ndarray) -> Image.Image:
    """Ring the hottest patch so the eye finds it at once, even on a washed-out projector."""
    x, y = peak_location(grid_map)
    gh, gw = grid_map.shape
    cx, cy = x * heat.width, y * heat.height
    r = max(6.0, 0.5 * max(heat.width / gw, heat.height / gh))
    marked = heat.copy()
    draw = ImageDraw.Draw(marked)
    width = max(2, heat.width // 128)
    draw.ellipse((cx - r - width, cy - r - width, cx + r + width, cy + r + width), outline=(0, 0, 0), width=width)
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=(0, 255, 255), width=width)
    return marked


@functools.lru_cache(maxsize=1)
def _colorbar_image() -> Image.Image:
    with _PLOT_LOCK:
        return colorbar()


def colorbar_image() -> Image.Image:
    return _colorbar_image().copy()


# ----- attention controls -------------------------------------------------------------------
def layer_choices(maps: vqa.AttentionMaps) -> list[tuple[str, str]]:
    # The mean over layers is the default: with the default token, [CLS], it is the map pointing accuracy is
    # measured on. The first fusion layer is where question words find the objects they name: for "the shape
    # left of the square", the square.
    return (
        [(f"first fusion layer ({maps.layers[0]})", "first"), (f"last fusion layer ({maps.layers[-1]})", "last")]
        + [(f"layer {layer}", str(i)) for i, layer in enumerate(maps.layers)]
        + [("mean over layers", "mean")]
    )


def head_choices(maps: vqa.AttentionMaps) -> list[tuple[str, str]]:
    return [("mean over heads", "mean")] + [(f"head {h}", str(h)) for h in range(maps.num_heads)]


# The Word menu's default: the text's first token when it is [CLS], whose fused state the classifier
# head reads, so its map shows where the answer came from. Measured on the embedded model (test split,
# pointing accuracy): its peak falls on the answer's object 0.790 of the time, the mean over the
# question's words 0.674 (for "the shape left of the square" the words look at the square).
# A model whose first token is something else starts on all question words.
SUMMARY_TOKEN = "0:[CLS]"
SUMMARY_TOKEN_LABEL = "[CLS] (summary)"


def _is_summary_token(maps: vqa.AttentionMaps, index: int) -> bool:
    return f"{index}:{maps.tokens[index]}" == SUMMARY_TOKEN


def token_choices(maps: vqa.AttentionMaps) -> list[tuple[str, str]]:
    words = [(SUMMARY_TOKEN_LABEL if _is_summary_token(maps, i) else f"{i} · {t}", f"{i}:{t}") for i, t in enumerate(maps.tokens)]
    return [("all question words", "all")] + words


def _choice(value: Any, choices: list[tuple[str, str]], default: str) -> str:
    return value if isinstance(value, str) and value in {v for _, v in choices} else default


def check_view(maps: vqa.AttentionMaps, layer: Any, head: Any, method: Any) -> None:
    """InputError unless layer, head and method are among the menus' choices for these maps."""
    for value, choices, what in ((layer, layer_choices(maps), "layer"), (head, head_choices(maps), "head")):
        if not isinstance(value, str) or value not in {v for _, v in choices}:
            raise vqa.InputError(f"Choose the {what} from its menu: {', '.join(v for _, v in choices)}.")
    ATTENTION_METHOD.check(method)


def display_copy(image: Image.Image) -> Image.Image:
    """The picture at the size heatmaps are drawn at: what a session keeps for re-drawing."""
    small = image.copy()
    small.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE), Image.Resampling.BICUBIC)
    return small


def _token_index(maps: vqa.AttentionMaps, token: str | None) -> int | None:
    """'3:red' -> 3 when token 3 is still 'red' (the question may have changed), else None (all words)."""
    if not isinstance(token, str) or not token or token == "all":
        return None
    index, _, text = str(token).partition(":")
    try:
        i = int(index)
    except ValueError:
        return None
    return i if 0 <= i < len(maps.tokens) and maps.tokens[i] == text else None


def attention_view(maps: vqa.AttentionMaps, image: Image.Image, layer: str = "first", head: str = "mean", token: str = "all", method: str = "attention") -> tuple[Image.Image, str]:
    """The heatmap for one choice of layer / head / token / method, and a sentence describing it.
    A layer, head or method not on the menus is an InputError; a word no longer in the question means all words."""
    check_view(maps, layer, head, method)
    t = _token_index(maps, token)
    word = (
        "all question words" if t is None
        else "[CLS], the summary token the classifier answers from" if _is_summary_token(maps, t)
        else f"the word “{maps.tokens[t]}”"
    )
    if method == "rollout":
        grid_map = rollout(maps, token=t)
        what = f"attention rollout through all fusion layers (heads averaged), from {word}"
    else:
        if layer == "mean":
            layer_index, layer_text = None, "mean over the fusion layers"
        elif layer == "first":
            layer_index, layer_text = 0, f"first fusion layer ({maps.layers[0]})"
        elif layer == "last":
            layer_index, layer_text = -1, f"last fusion layer ({maps.layers[-1]})"
        else:
            layer_index = int(layer)
            layer_text = f"layer {maps.layers[layer_index]}"
        head_index = None if head == "mean" else int(head)
        head_text = "mean over heads" if head_index is None else f"head {head_index}"
        grid_map = select_map(maps, layer=layer_index, head=head_index, token=t)
        what = f"{layer_text}, {head_text}, from {word}"
    heat = mark_peak(overlay(image, grid_map), grid_map)
    answer = f"Answer **{html.escape(maps.answer)}**. " if maps.answer else ""
    text = (
        f"{answer}The model looked most at the **{_position_words(grid_map)}** of the picture (ringed in cyan). "
        f"Bright = more attention. Showing: {what}; grid {maps.grid[0]}×{maps.grid[1]} patches."
    )
    if not maps.in_domain:
        text = f"⚠ **Outside what this model knows.** {html.escape(maps.domain_note)}  \n{text}"
    return heat, text


def grid_view(maps: vqa.AttentionMaps, image: Image.Image, token: str = "all") -> Image.Image:
    with _PLOT_LOCK:
        return layer_grid(image, maps, token=_token_index(maps, token))


# ----- the handlers ---------------------------------------------------------------------------
class Handlers:
    """Event handlers bound to one ModelManager. Every handler that uses a model takes the session's
    model key last (its `gr.State`; None means the default model)."""

    def __init__(self, models: ModelManager):
        self.models = models

    def _model(self, key: str | None, progress=None, scheme: str | None = "served") -> vqa.backbones.base.Backbone:
        """The session's model as served (or quantized with `scheme`), loaded if it has to be. On a public
        server a failed load says which model failed and nothing more: the loader's own message may name
        server folders, so it goes to the log."""
        try:
            if scheme == "served":
                return self.models.current(key, progress)
            return self.models.quantized(key, scheme, progress)
        except vqa.ModelLoadError as exc:
            if self.models.allow_custom:
                raise
            log.warning("Loading %s failed: %s", key or self.models.default_key, exc)
            raise vqa.ModelLoadError(f"{key or self.models.default_key} could not be loaded on this server right now.") from exc

    # ----- Ask ---------------------------------------------------------------------------
    @user_errors
    def ask(self, image, question, top_k=5, decoding="greedy", num_beams=3, top_p=0.9, temperature=1.0, max_new_tokens=8, model_key=None):
        """Answer with the classifier head (top-k with probabilities) and the generative head (with its sequence probability).

        Returns (classifier label, generative label, agreement badge HTML, classifier note, generative note)."""
        model = self._model(model_key)
        answers = model.ask(image, question, top_k=top_k, decoding=decoding, num_beams=num_beams, top_p=top_p,
                            temperature=temperature, max_new_tokens=max_new_tokens)
        classifier, generative = answers.classifier, answers.generative
        if classifier:
            classifier_note = f"Top answer **{percent(classifier.score)}** likely · {classifier.latency_ms:.0f} ms"
        else:
            classifier_note = f"{model.name} has no classifier head."
        if generative:
            generative_note = (
                f"Generated “**{html.escape(shown_answer(generative.answer))}**” · sequence probability **{percent(generative.score)}** "
                f"({decoding}) · {generative.latency_ms:.0f} ms"
            )
        else:
            generative_note = f"{model.name} has no generative head."
        for note in answers.notes:  # e.g. "Animated image: the first frame was used."
            classifier_note += f"  \n{note}"
        # what a head says about how it answered, e.g. a dual encoder scoring answers as statements
        classifier_note += "".join(f"  \n{note}" for note in head_notes(classifier, answers))
        generative_note += "".join(f"  \n{note}" for note in head_notes(generative, answers))
        badge = agreement_badge(classifier, generative) if answers.in_domain else domain_notice(answers.domain_note)
        return label_value(classifier), label_value(generative), badge, classifier_note, generative_note

    # ----- Caption -----------------------------------------------------------------------
    @user_errors
    def caption(self, image, decoding="beam", num_captions=3, num_beams=3, top_p=0.9, temperature=1.0, max_new_tokens=40, model_key=None):
        """Describe the image. Returns (best caption, Markdown table of captions with probabilities, note)."""
        model = self._model(model_key)
        result = model.caption(image, decoding=decoding, num_captions=num_captions, num_beams=num_beams, top_p=top_p,
                               temperature=temperature, max_new_tokens=max_new_tokens)
        rows = result.candidates or [(result.text, result.score)]
        table = "\n".join(
            ["| # | Caption | Probability |", "|---|---|---|"]
            + [f"| {i} | {_table_cell(html.escape(text) or '(empty)')} | {float(p):.3g} |" for i, (text, p) in enumerate(rows, 1)]
        )
        note = (
            f"{len(rows)} caption(s) by {decoding} decoding · {result.latency_ms:.0f} ms · "
            "probability of a caption = the product of its word probabilities, so long captions get small numbers"
        )
        note += "".join(f"  \n{n}" for n in result.notes)
        if not result.in_domain:
            note = f"⚠ **Outside what this model knows.** {html.escape(result.domain_note)}  \n{note}"
        return result.text, table, note

    # ----- Attention ---------------------------------------------------------------------
    @user_errors
    def explain(self, image, question, layer="mean", head="mean", token=SUMMARY_TOKEN, method="attention", model_key=None):
        """Where the model looked. Returns (heatmap, layers×heads grid, colour bar, description, note,
        state for re-drawing, layer / head / token dropdown updates).

        The state keeps what a re-draw needs and no more: the maps and the picture at display size."""
        pil = load_image(image)
        text = clean_question(question)
        model = self._model(model_key)
        maps = model.explain(pil, text)
        picture = display_copy(pil)
        layers, heads, tokens = layer_choices(maps), head_choices(maps), token_choices(maps)
        layer, head = _choice(layer, layers, "mean"), _choice(head, heads, "mean")
        token = token if _token_index(maps, token) is not None else "all"
        method = method if method in ATTENTION_METHOD.choices else ATTENTION_METHOD.default
        heat, description = attention_view(maps, picture, layer, head, token, method)
        grid = grid_view(maps, picture, token)
        note = f"*{maps.kind}:* {maps.note}" if maps.note else f"*{maps.kind}*"
        state = {"maps": maps, "image": picture, "grids": OrderedDict({token: grid})}
        return (
            heat, grid, colorbar_image(), description, note, state,
            gr.update(choices=layers, value=layer), gr.update(choices=heads, value=head), gr.update(choices=tokens, value=token),
        )

    @user_errors
    def redraw_attention(self, state, layer="mean", head="mean", token=SUMMARY_TOKEN, method="attention"):
        """Re-draw from the maps already computed (no model call) when a control changes."""
        if not isinstance(state, dict) or "maps" not in state:
            return gr.skip(), gr.skip(), gr.skip()
        maps, picture = state["maps"], state["image"]
        heat, description = attention_view(maps, picture, layer, head, token, method)
        # One grid per word, keyed by the word as resolved (junk tokens all mean "all"), at most GRID_CACHE_SIZE.
        word = token if _token_index(maps, token) is not None else "all"
        grids = state["grids"]
        if word not in grids:
            grids[word] = grid_view(maps, picture, word)
        grids.move_to_end(word)
        while len(grids) > GRID_CACHE_SIZE:
            grids.popitem(last=False)
        return heat, grids[word], description

    # ----- Quantization ------------------------------------------------------------------
    @user_errors
    def compare_quantized(self, image, question, scheme="int8", model_key=None, progress=gr.Progress()):
        """The same question, full precision vs quantized. Returns (summary Markdown, fp32 label, quantized label,
        fp32 heatmap, quantized heatmap, difference heatmap)."""
        pil = load_image(image)
        text = clean_question(question)
        scheme = normalise_scheme(QUANTIZATION.check(scheme))
        ok, reason = availability().get(scheme, (False, "unknown scheme"))
        if not ok:
            raise vqa.UnsupportedError(f"{SCHEME_LABELS[scheme]} is not available here: {reason}.")
        base = self._model(model_key, progress=lambda f, m: progress(0.05 * f, desc=m), scheme=None)
        head = "classifier" if "classifier" in base.capabilities else "generative" if "generative" in base.capabilities else None
        if head is None:
            raise vqa.UnsupportedError(f"{base.name} cannot answer questions, so there is nothing to compare.")

        cached = scheme in self.models.cached_schemes(model_key)
        progress(0.05, desc=f"Preparing {SCHEME_LABELS[scheme]} copy of {base.name}…")
        start = time.perf_counter()
        quant = self._model(model_key, progress=lambda f, m: progress(0.05 + 0.55 * f, desc=m), scheme=scheme)
        load_seconds = time.perf_counter() - start

        progress(0.65, desc="Answering with both models…")
        runs = {}
        for key, model in (("full", base), ("quant", quant)):
            # Each timed answer starts from a fresh image encoding: a cache hit would time a dictionary lookup.
            answers = []
            for _ in range(LATENCY_REPEATS):
                model.clear_caches()
                answers.append(model.answer(pil, text, head=head, top_k=COMPARE_TOP_K))
            runs[key] = (answers[0], statistics.median(a.latency_ms for a in answers))
        (full, full_ms), (qa, quant_ms) = runs["full"], runs["quant"]

        p, q = dict(full.candidates), dict(qa.candidates)
        tv = total_variation(p, q)
        top_full = [a for a, _ in full.candidates[:SHOWN_TOP_K]]
        top_quant = [a for a, _ in qa.candidates[:SHOWN_TOP_K]]
        overlap = len(set(top_full) & set(top_quant))
        changed = not same_answer(full.answer, qa.answer)

        progress(0.8, desc="Attention maps…")
        heat_full = heat_quant = heat_diff = None
        diff_line = "Attention maps: this model cannot show them."
        if "explain" in base.capabilities and "explain" in quant.capabilities:
            map_full, map_quant = pointing_map(base.explain(pil, text)), pointing_map(quant.explain(pil, text))
            diff = np.abs(map_full - map_quant)
            picture = display_copy(pil)
            heat_full, heat_quant = overlay(picture, map_full), overlay(picture, map_quant)
            heat_diff = overlay(picture, diff)
            diff_line = (
                f"Heatmaps (fusion layers and heads averaged, from the first token, [CLS]): largest change **{diff.max():.4f}**, mean change {diff.mean():.4f} "
                f"(each map is a share of 1 spread over {diff.size} patches; the difference picture is scaled to its own maximum)."
            )

        progress(0.95, desc="Measuring memory…")
        full_mem, quant_mem = self.models.memory_bytes(base), self.models.memory_bytes(quant)
        label_q = SCHEME_LABELS[scheme]
        speed = full_ms / quant_ms if quant_ms > 0 else float("nan")
        load_text = "already loaded" if cached else f"{load_seconds:.1f} s (now cached)"
        summary = "\n".join([
            f"| | {SCHEME_LABELS[None]} | {label_q} |",
            "|---|---|---|",
            f"| Answer ({head} head) | **{_table_cell(full.answer)}** ({percent(full.score)}) | **{_table_cell(qa.answer)}** ({percent(qa.score)}) |",
            f"| Memory (weights) | {megabytes(full_mem)} | {megabytes(quant_mem)} ({quant_mem / max(full_mem, 1):.2f}×) |",
            f"| Latency (median of {LATENCY_REPEATS}, each from a fresh image encoding) | {full_ms:.1f} ms | {quant_ms:.1f} ms ({speed:.2f}× speed) |",
            f"| Loading the quantized copy | | {load_text} |",
            "",
            f"**Top answer changed:** {'yes ⚠' if changed else 'no'} · **Top-{SHOWN_TOP_K} answers shared:** {overlap}/{SHOWN_TOP_K} · "
            f"**Total variation** between the two answer distributions: **{tv:.4f}** (0 = identical, 1 = nothing in common).",
            "",
            diff_line,
        ])
        shown = lambda a: {t: float(s) for t, s in a.candidates[:SHOWN_TOP_K]}  # noqa: E731
        progress(1.0, desc="Done")
        return summary, shown(full), shown(qa), heat_full, heat_quant, heat_diff

    # ----- Model -------------------------------------------------------------------------
    @user_errors
    def load_model(self, choice=None, custom="", model_key=None, progress=gr.Progress()):
        """Choose the model for this session (loading it if no session has yet).
        Returns (status, model facts, page header, the session's new model key). On failure the session keeps its model."""
        key = self.models.choose(choice, custom)
        progress(0.0, desc=f"Loading {key}…")
        start = time.perf_counter()
        model = self._model(key, progress=lambda f, m: progress(f, desc=m))
        seconds = time.perf_counter() - start
        status = f"✓ **{html.escape(model.name)}** is ready ({seconds:.1f} s). Every tab of this page now uses it; other visitors keep theirs."
        return status, self.model_facts(key), self.header(key), key

    def model_facts(self, model_key: str | None = None) -> str:
        """The Model tab's table: what the session's backbone is, in plain words."""
        try:
            entry = self.models.entry(model_key)
        except vqa.VQAError as exc:
            log.warning("No model facts for %s: %s", model_key or self.models.default_key, exc)
            return "**No model loaded.** It loads on first use."
        model = entry.backbone
        info = model.info()
        lines = [
            f"### {html.escape(info.name)}",
            f"{info.description}",
            "",
            "| About this model | |",
            "|---|---|",
            f"| Family | {_table_cell(info.family)} |",
            f"| Chosen as | {_table_cell(model_key or self.models.default_key)} |",
            f"| Answers with | {_table_cell(SCHEME_LABELS[model.quantization])} weights |",
        ]
        lines += [f"| {_table_cell(k)} | {_table_cell(v)} |" for k, v in info.facts.items()]
        lines.append(f"| Memory (weights) | {megabytes(self.models.memory_bytes(model))} |")
        if entry.seconds:
            lines.append(f"| Load time | {entry.seconds:.1f} s |")
        lines += ["", "**It can:** " + "; ".join(CAPABILITY_WORDS.get(c, c) for c in sorted(info.capabilities)) + "."]
        lines += [f"- {note}" for note in info.notes]
        if entry.note:
            lines.append(f"- {html.escape(entry.note)}")
        return "\n".join(lines)

    def header(self, model_key: str | None = None) -> str:
        try:
            model = self.models.entry(model_key).backbone
            state = f"Model: **{html.escape(model.name)}** ({model.family}, {SCHEME_LABELS[model.quantization]} weights)"
        except vqa.VQAError:
            state = "⚠ No model loaded: it loads on first use"
        return f"# Ask a picture a question\n{state} · runs on this machine's CPU, offline."

    @user_errors
    def refresh(self, model_key=None):
        """On page load: the header and model facts of this session's model."""
        return self.model_facts(model_key), self.header(model_key)


def total_variation(p: dict[str, float], q: dict[str, float]) -> float:
    """Half the L1 distance between two answer distributions: 0 when identical, 1 when disjoint."""
    return 0.5 * sum(abs(p.get(a, 0.0) - q.get(a, 0.0)) for a in set(p) | set(q))


# ----- choices for the UI ---------------------------------------------------------------------------
def quantization_choices() -> list[tuple[str, str]]:
    result = []
    for scheme in SCHEMES:
        ok, reason = availability()[scheme]
        short = reason if len(reason) <= 60 else reason[:57] + "…"
        label = SCHEME_LABELS[scheme] + ("" if ok else f" (unavailable: {short})")
        result.append((label, scheme or "none"))
    return result


def quantization_table() -> str:
    lines = ["| Scheme | Here | Why |", "|---|---|---|"]
    for scheme in SCHEMES:
        ok, reason = availability()[scheme]
        lines.append(f"| {SCHEME_LABELS[scheme]} | {'✓ available' if ok else '✗ unavailable'} | {_table_cell(reason)} |")
    return "\n".join(lines)


def model_choices(models: ModelManager) -> list[tuple[str, str]]:
    """The Model tab's dropdown: the allow-list, default first; an unavailable entry says why in its label."""
    return [(offer.label if offer.available else f"{offer.label} (unavailable: {offer.reason})", offer.key) for offer in models.offers()]


__all__ = ["Handlers", "MAX_QUESTION_CHARS", "quantization_choices", "quantization_table", "model_choices", "user_errors"]
