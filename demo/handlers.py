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
from typing import Any, Callable

import gradio as gr
import numpy as np
from PIL import Image, ImageDraw

import vqa
from vqa.attention_maps import colorbar, layer_grid, overlay, peak_location, pointing_map, rollout, select_map
from vqa.image_io import MAX_QUESTION_CHARS, clean_question, load_image
from vqa.quantization import SCHEME_LABELS, SCHEMES, availability, normalise_scheme

from demo.state import ModelManager

log = logging.getLogger("demo")

DECODINGS = ("greedy", "beam", "nucleus")
CAPTION_DECODINGS = ("beam", "nucleus", "greedy")
ATTENTION_METHODS = ("attention", "rollout")
#: The quantization comparison asks for this many answers from each model, so the
#: total variation covers (nearly) the whole answer distribution, not just the top 5.
COMPARE_TOP_K = 100
#: Answers shown side by side in the quantization comparison.
SHOWN_TOP_K = 5
#: Timed repeats per model in the quantization comparison (the median is shown).
LATENCY_REPEATS = 3
GENERIC_ERROR = "Something went wrong on the server. The details are in the server log; please try again."

CAPABILITY_WORDS = {
    "classifier": "pick an answer from a fixed list (classifier head)",
    "generative": "write an answer word by word (generative head)",
    "caption": "describe the picture in a sentence (captions)",
    "explain": "show where it looked (attention maps)",
    "itm": "check whether a sentence matches the picture (image-text matching)",
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


def _table_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _source_name(source: str) -> str:
    """A hub id as it is; a local folder by its name only (server paths are not shown to users)."""
    from pathlib import Path

    path = Path(source)
    return f"local folder “{path.name}”" if path.is_dir() else source


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
    # The first fusion layer is the default: it is where question words find their objects (the embedded
    # model is trained to ground words there, and pointing accuracy is measured there). Layers above it
    # route what was found towards the answer, so their maps are harder to read.
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
    return value if value in {v for _, v in choices} else default


def _token_index(maps: vqa.AttentionMaps, token: str | None) -> int | None:
    """'3:red' -> 3 when token 3 is still 'red' (the question may have changed), else None (all words)."""
    if not token or token == "all":
        return None
    index, _, text = str(token).partition(":")
    try:
        i = int(index)
    except ValueError:
        return None
    return i if 0 <= i < len(maps.tokens) and maps.tokens[i] == text else None


def attention_view(maps: vqa.AttentionMaps, image: Image.Image, layer: str = "first", head: str = "mean", token: str = "all", method: str = "attention") -> tuple[Image.Image, str]:
    """The heatmap for one choice of layer / head / token / method, and a sentence describing it."""
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
        elif layer in (None, "", "first"):
            layer_index, layer_text = 0, f"first fusion layer ({maps.layers[0]})"
        elif layer == "last":
            layer_index, layer_text = -1, f"last fusion layer ({maps.layers[-1]})"
        else:
            layer_index = min(max(int(layer), 0), len(maps.layers) - 1)
            layer_text = f"layer {maps.layers[layer_index]}"
        head_index = None if head in (None, "", "mean") else min(max(int(head), 0), maps.num_heads - 1)
        head_text = "mean over heads" if head_index is None else f"head {head_index}"
        grid_map = select_map(maps, layer=layer_index, head=head_index, token=t)
        what = f"{layer_text}, {head_text}, from {word}"
    heat = mark_peak(overlay(image, grid_map), grid_map)
    answer = f"Answer **{html.escape(maps.answer)}**. " if maps.answer else ""
    text = (
        f"{answer}The model looked most at the **{_position_words(grid_map)}** of the picture (ringed in cyan). "
        f"Bright = more attention. Showing: {what}; grid {maps.grid[0]}×{maps.grid[1]} patches."
    )
    return heat, text


def grid_view(maps: vqa.AttentionMaps, image: Image.Image, token: str = "all") -> Image.Image:
    with _PLOT_LOCK:
        return layer_grid(image, maps, token=_token_index(maps, token))


# ----- the handlers ---------------------------------------------------------------------------
class Handlers:
    """Event handlers bound to one ModelManager (shared by every user of the server)."""

    def __init__(self, models: ModelManager):
        self.models = models

    # ----- Ask ---------------------------------------------------------------------------
    @user_errors
    def ask(self, image, question, top_k=5, decoding="greedy", num_beams=3, top_p=0.9, temperature=1.0, max_new_tokens=8):
        """Answer with the classifier head (top-k with probabilities) and the generative head (with its sequence probability).

        Returns (classifier label, generative label, agreement badge HTML, classifier note, generative note)."""
        pil = load_image(image)
        text = clean_question(question)
        model = self.models.current()
        caps = model.capabilities
        if not caps & {"classifier", "generative"}:
            raise vqa.UnsupportedError(f"{model.name} cannot answer questions; try the Caption tab, or load a question-answering model in the Model tab.")
        top_k = int(top_k)
        classifier = model.answer(pil, text, head="classifier", top_k=top_k) if "classifier" in caps else None
        generative = (
            model.answer(
                pil, text, head="generative", top_k=top_k, decoding=decoding or "greedy", num_beams=int(num_beams),
                top_p=float(top_p), temperature=float(temperature), max_new_tokens=int(max_new_tokens),
            )
            if "generative" in caps else None
        )
        if classifier:
            classifier_note = f"Top answer **{percent(classifier.score)}** likely · {classifier.latency_ms:.0f} ms"
            if pil.info.get("vqa_note"):  # e.g. "Animated image: the first frame was used."
                classifier_note += f"  \n{pil.info['vqa_note']}"
        else:
            classifier_note = f"{model.name} has no classifier head."
        if generative:
            generative_note = (
                f"Generated “**{html.escape(shown_answer(generative.answer))}**” · sequence probability **{percent(generative.score)}** "
                f"({decoding}) · {generative.latency_ms:.0f} ms"
            )
        else:
            generative_note = f"{model.name} has no generative head."
        return label_value(classifier), label_value(generative), agreement_badge(classifier, generative), classifier_note, generative_note

    # ----- Caption -----------------------------------------------------------------------
    @user_errors
    def caption(self, image, decoding="beam", num_captions=3, num_beams=3, top_p=0.9, temperature=1.0, max_new_tokens=40):
        """Describe the image. Returns (best caption, Markdown table of captions with probabilities, note)."""
        pil = load_image(image)
        model = self.models.current()
        result = model.caption(
            pil, decoding=decoding or "beam", num_captions=int(num_captions), num_beams=int(num_beams),
            top_p=float(top_p), temperature=float(temperature), max_new_tokens=int(max_new_tokens),
        )
        rows = result.candidates or [(result.text, result.score)]
        table = "\n".join(
            ["| # | Caption | Probability |", "|---|---|---|"]
            + [f"| {i} | {_table_cell(html.escape(text) or '(empty)')} | {float(p):.3g} |" for i, (text, p) in enumerate(rows, 1)]
        )
        note = (
            f"{len(rows)} caption(s) by {decoding} decoding · {result.latency_ms:.0f} ms · "
            "probability of a caption = the product of its word probabilities, so long captions get small numbers"
        )
        return result.text, table, note

    # ----- Attention ---------------------------------------------------------------------
    @user_errors
    def explain(self, image, question, layer="first", head="mean", token=SUMMARY_TOKEN, method="attention"):
        """Where the model looked. Returns (heatmap, layers×heads grid, colour bar, description, note,
        state for re-drawing, layer / head / token dropdown updates)."""
        pil = load_image(image)
        text = clean_question(question)
        model = self.models.current()
        maps = model.explain(pil, text)
        layers, heads, tokens = layer_choices(maps), head_choices(maps), token_choices(maps)
        layer, head = _choice(layer, layers, "first"), _choice(head, heads, "mean")
        token = token if _token_index(maps, token) is not None else "all"
        method = method if method in ATTENTION_METHODS else "attention"
        heat, description = attention_view(maps, pil, layer, head, token, method)
        grid = grid_view(maps, pil, token)
        note = f"*{maps.kind}:* {maps.note}" if maps.note else f"*{maps.kind}*"
        state = {"maps": maps, "image": pil, "grids": {token: grid}}
        return (
            heat, grid, colorbar_image(), description, note, state,
            gr.update(choices=layers, value=layer), gr.update(choices=heads, value=head), gr.update(choices=tokens, value=token),
        )

    @user_errors
    def redraw_attention(self, state, layer="first", head="mean", token=SUMMARY_TOKEN, method="attention"):
        """Re-draw from the maps already computed (no model call) when a control changes."""
        if not state:
            return gr.skip(), gr.skip(), gr.skip()
        maps, pil = state["maps"], state["image"]
        heat, description = attention_view(maps, pil, layer, head, token, method)
        grids = state.setdefault("grids", {})
        if token not in grids:
            grids[token] = grid_view(maps, pil, token)
        return heat, grids[token], description

    # ----- Quantization ------------------------------------------------------------------
    @user_errors
    def compare_quantized(self, image, question, scheme="int8", progress=gr.Progress()):
        """The same question, full precision vs quantized. Returns (summary Markdown, fp32 label, quantized label,
        fp32 heatmap, quantized heatmap, difference heatmap)."""
        pil = load_image(image)
        text = clean_question(question)
        scheme = normalise_scheme(scheme)
        ok, reason = availability().get(scheme, (False, "unknown scheme"))
        if not ok:
            raise vqa.UnsupportedError(f"{SCHEME_LABELS[scheme]} is not available here: {reason}.")
        base = self.models.full_precision(progress=lambda f, m: progress(0.05 * f, desc=m))
        head = "classifier" if "classifier" in base.capabilities else "generative" if "generative" in base.capabilities else None
        if head is None:
            raise vqa.UnsupportedError(f"{base.name} cannot answer questions, so there is nothing to compare.")

        cached = scheme is None or scheme in self.models.cached_schemes()
        progress(0.05, desc=f"Preparing {SCHEME_LABELS[scheme]} copy of {base.name}…")
        start = time.perf_counter()
        quant = self.models.quantized(scheme, progress=lambda f, m: progress(0.05 + 0.55 * f, desc=m))
        load_seconds = time.perf_counter() - start

        progress(0.65, desc="Answering with both models…")
        runs = {}
        for key, model in (("full", base), ("quant", quant)):
            answers = [model.answer(pil, text, head=head, top_k=COMPARE_TOP_K) for _ in range(1 + LATENCY_REPEATS)]
            runs[key] = (answers[0], statistics.median(a.latency_ms for a in answers[1:]))
        (full, full_ms), (qa, quant_ms) = runs["full"], runs["quant"]

        p, q = dict(full.candidates), dict(qa.candidates)
        tv = 0.5 * sum(abs(p.get(a, 0.0) - q.get(a, 0.0)) for a in set(p) | set(q))
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
            heat_full, heat_quant = overlay(pil, map_full), overlay(pil, map_quant)
            heat_diff = overlay(pil, diff)
            diff_line = (
                f"Heatmaps (first fusion layer, heads averaged, from the first token, [CLS]): largest change **{diff.max():.4f}**, mean change {diff.mean():.4f} "
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
            f"| Latency (median of {LATENCY_REPEATS}) | {full_ms:.1f} ms | {quant_ms:.1f} ms ({speed:.2f}× speed) |",
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
    def load_model(self, choice=None, custom="", progress=gr.Progress()):
        """Load another backbone for everyone. Returns (status, model facts, page header).
        On failure the current model stays and the error is shown."""
        name = (custom or "").strip() or (choice or "").strip()
        if not name:
            raise vqa.InputError("Choose a model from the list or type a hub id / folder path.")
        progress(0.0, desc=f"Loading {name}…")
        start = time.perf_counter()
        model = self.models.load(name, progress=lambda f, m: progress(f, desc=m))
        seconds = time.perf_counter() - start
        status = f"✓ Loaded **{html.escape(model.name)}** in {seconds:.1f} s. Every tab now uses it."
        return status, self.model_facts(), self.header()

    def model_facts(self) -> str:
        """The Model tab's table: what the loaded backbone is, in plain words."""
        if not self.models.loaded:
            return f"**No model loaded.** {html.escape(self.models.load_error or 'It loads on first use.')}"
        model = self.models.current()
        info = model.info()
        lines = [
            f"### {html.escape(info.name)}",
            f"{info.description}",
            "",
            "| About this model | |",
            "|---|---|",
            f"| Family | {_table_cell(info.family)} |",
            f"| Loaded from | {_table_cell(_source_name(self.models.source))} |",
            f"| Answers with | {_table_cell(SCHEME_LABELS[self.models.served_scheme])} weights |",
        ]
        lines += [f"| {_table_cell(k)} | {_table_cell(v)} |" for k, v in info.facts.items()]
        lines.append(f"| Memory (weights) | {megabytes(self.models.memory_bytes(model))} |")
        if self.models.load_seconds is not None:
            lines.append(f"| Load time | {self.models.load_seconds:.1f} s |")
        lines += ["", "**It can:** " + "; ".join(CAPABILITY_WORDS.get(c, c) for c in sorted(info.capabilities)) + "."]
        lines += [f"- {note}" for note in info.notes]
        if self.models.serving_note:
            lines.append(f"- {html.escape(self.models.serving_note)}")
        return "\n".join(lines)

    def header(self) -> str:
        if self.models.loaded:
            model = self.models.current()
            state = f"Model: **{html.escape(model.name)}** ({model.family}, {SCHEME_LABELS[self.models.served_scheme]} weights)"
        else:
            state = f"⚠ No model loaded: {html.escape(self.models.load_error or 'it loads on first use')}"
        return f"# Ask a picture a question\n{state} · runs on this machine's CPU, offline."

    @user_errors
    def refresh(self):
        """On page load: the header and model facts as they are now (another user may have switched models)."""
        return self.model_facts(), self.header()


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


def hub_models() -> list[dict]:
    """HUB_MODELS when the hub package is importable (it is optional)."""
    try:
        from vqa.backbones.hub import HUB_MODELS
    except ImportError:
        return []
    except Exception:  # noqa: BLE001 - a broken optional module must not take the app down
        log.exception("vqa.backbones.hub could not be imported")
        return []
    return [m for m in HUB_MODELS if isinstance(m, dict) and m.get("id")]


def model_choices(default_source: str) -> list[tuple[str, str]]:
    """The embedded/default model first, then the hub checkpoints."""
    from pathlib import Path

    default_name = Path(default_source).name or default_source
    choices = [(f"{default_name} (default, embedded)", default_source)]
    for m in hub_models():
        extra = " · ".join(x for x in (m.get("does"), m.get("size")) if x)
        label = f"{m['id']} — {extra}" if extra else m["id"]
        if m["id"] != default_source:
            choices.append((label, m["id"]))
    return choices


__all__ = ["Handlers", "MAX_QUESTION_CHARS", "quantization_choices", "quantization_table", "model_choices", "user_errors"]
