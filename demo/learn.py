"""The Learn tab's comparison: the architecture zoo's members answer the same picture and question side by side,
each with the map of its own kind of attention and a diagram of how it is built, and the zoo's plots come with
a few plain sentences. Only the public `vqa` API is used."""

from __future__ import annotations

import functools
import html
import json
import logging

import gradio as gr
from PIL import Image

import vqa
from vqa.model import list_architectures, load_architecture
from vqa.image_io import clean_question, load_image
from vqa.zoo.diagrams import draw_architecture
from vqa.zoo.plots import plot_captions

from demo.handlers import SUMMARY_TOKEN, attention_view, display_copy, percent, shown_answer, user_errors
from demo.state import ZOO_DIR, ModelManager

log = logging.getLogger("demo")

DEFAULT_MEMBERS = ("med-mid", "single-stream", "dual-stream", "encoder-decoder")
MAX_MEMBERS = 4
# Loading a member waits this long for another visitor's load instead of failing at once: members are small.
LOAD_WAIT_S = 30.0
TABLE_HEADERS = ["member", "stands for", "answer", "score", "head", "heads it has", "latency (ms)", "attention shown"]
PLOT_TITLES = {
    "family_accuracy.png": "What each architecture gets right, per kind of question",
    "learning_curves.png": "How fast each one learns",
    "fusion_layer.png": "Early, mid and late fusion",
    "costs.png": "Size, speed and where it looks",
}
HEAD_NAMES = {"classifier": "classifier", "generative": "generator", "caption": "captions", "explain": "attention maps", "itm": "ITM"}


class LearnHandlers:
    """The comparison and the zoo's material, bound to the server's ModelManager."""

    def __init__(self, models: ModelManager):
        self.models = models
        self._warm: set[str] = set()  # members that have answered once: their first answer also traces the fast path

    def member_choices(self) -> list[str]:
        """The zoo members this server offers, in the zoo's order."""
        return list(self.models.zoo_offers())

    def default_members(self) -> list[str]:
        offered = self.member_choices()
        return [name for name in DEFAULT_MEMBERS if name in offered] or offered[:MAX_MEMBERS]

    def _check_members(self, members) -> list[str]:
        """The requested members in order, each once; an InputError for anything not on offer."""
        if members is None or members == [] or members == "":
            members = self.default_members()
        if isinstance(members, str):
            members = [members]
        if not isinstance(members, (list, tuple)) or not all(isinstance(m, str) for m in members):
            raise vqa.InputError("Choose the members to compare from the list.")
        offered = self.member_choices()
        if not offered:
            raise vqa.UnsupportedError("This server has no architecture zoo to compare.")
        unknown = [m for m in members if m not in offered]
        if unknown:
            raise vqa.InputError(f"Not a member of the zoo here: {', '.join(html.escape(m[:40]) for m in unknown[:3])}. Choose from: {', '.join(offered)}.")
        chosen = list(dict.fromkeys(members))
        if len(chosen) > MAX_MEMBERS:
            raise vqa.InputError(f"Compare at most {MAX_MEMBERS} members at a time (you chose {len(chosen)}).")
        return chosen

    def _member(self, name: str):
        return self.models.current(self.models.zoo_offers()[name].key, wait_s=LOAD_WAIT_S)

    @user_errors
    def compare_models(self, image, question, members=None):
        """Each member's answer, score, heads, latency and attention map for the same picture and question.

        Returns (table rows, then for each of MAX_MEMBERS slots: card Markdown, heatmap, diagram), unused slots hidden."""
        pil = load_image(image)
        text = clean_question(question)
        names = self._check_members(members)
        picture = display_copy(pil)
        rows, slots = [], []
        for name in names:
            model = self._member(name)
            head = "classifier" if "classifier" in model.capabilities else "generative" if "generative" in model.capabilities else None
            if head is None:
                raise vqa.UnsupportedError(f"{name} cannot answer questions.")
            if name not in self._warm:
                model.answer(pil, text, head=head)  # untimed: a first answer is slower by the one-off tracing
                self._warm.add(name)
            model.clear_caches()  # every member's latency includes encoding the picture
            answer = model.answer(pil, text, head=head)
            heat, kind = None, "none (this model cannot show where it looked)"
            if "explain" in model.capabilities:
                maps = model.explain(pil, text, answer=answer.answer)
                token = SUMMARY_TOKEN if maps.tokens and maps.tokens[0] == "[CLS]" else "all"
                heat, _ = attention_view(maps, picture, "first", "mean", token, "attention")
                kind = maps.kind
            heads = ", ".join(HEAD_NAMES.get(c, c) for c in sorted(model.capabilities))
            stands_for = _stands_for(model)
            shown = shown_answer(answer.answer)
            rows.append([name, stands_for, shown, round(float(answer.score), 4), head, heads, round(answer.latency_ms, 1), kind])
            warning = "" if answer.in_domain else f"  \n⚠ *Outside what this model knows.* {html.escape(answer.domain_note)}"
            card = (
                f"### {html.escape(name)}\n*like {html.escape(stands_for)}*\n\n"
                f"**{html.escape(shown)}** · {percent(answer.score)} ({head}) · {answer.latency_ms:.0f} ms{warning}\n\n"
                f"Heads: {heads}  \nMap: {html.escape(kind)}"
            )
            slots.append((card, heat, kind, self.diagram(name)))
        outputs = [rows]
        for index in range(MAX_MEMBERS):
            if index < len(slots):
                card, heat, kind, diagram = slots[index]
                outputs += [gr.update(value=card, visible=True), gr.update(value=heat, visible=True, label=f"Where it looked: {kind}"),
                            gr.update(value=diagram, visible=True)]
            else:
                outputs += [gr.update(value=None, visible=False)] * 3
        return tuple(outputs)

    @functools.lru_cache(maxsize=16)
    def diagram(self, name: str) -> Image.Image:
        """The member's architecture drawn from its config (the same for every question)."""
        return draw_architecture(self._member(name).config, name)

    def plots(self) -> list[tuple[str, Image.Image, str]]:
        """(title, picture, what it shows) for each of the zoo's plots shipped on this server."""
        try:
            captions = plot_captions(json.loads((ZOO_DIR / "results.json").read_text()))
        except (OSError, ValueError, KeyError) as exc:
            log.warning("No zoo results to describe: %s", exc)
            return []
        shown = []
        for filename, title in PLOT_TITLES.items():
            path = ZOO_DIR / filename
            if path.exists() and filename in captions:
                with Image.open(path) as picture:
                    shown.append((title, picture.convert("RGB"), captions[filename]))
        return shown


def _stands_for(model) -> str:
    """The published models a member stands for, from its architecture file."""
    name = getattr(model.config, "architecture", None)
    if name in list_architectures():
        return load_architecture(name)["stands_for"]
    return model.family
