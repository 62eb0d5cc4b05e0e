"""The Search tab: find pictures by a sentence or by the current picture. The image-text contrastive (ITC)
embeddings find candidates in a gallery at once; the image-text matching (ITM) head then reads the query with
each candidate and re-orders them. The gallery is the shipped index of generated scenes (`demo/gallery/`,
built with `python -m vqa index build`) plus the pictures a visitor adds, which only their session sees.
Only the public `vqa` API is used."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import OrderedDict
from pathlib import Path

import gradio as gr
from PIL import Image

import vqa
from vqa.image_io import clean_question, load_image
from vqa.retrieval import RERANK_CANDIDATES, SEARCH_TOP_K, GalleryIndex

from demo.handlers import attention_view, display_copy, user_errors
from demo.state import ModelManager

log = logging.getLogger("demo")

SHIPPED_GALLERY = Path(__file__).resolve().parent / "gallery"
# Pictures one session may add to its own gallery: each is kept at display size in the session's state.
SESSION_GALLERY_MAX = 24
THUMBNAIL_SIDE = 192
# Galleries re-embedded for models other than the one the shipped index was built with, kept this many.
OTHER_MODEL_GALLERIES = 2
HIT_HEADERS = ["rank", "picture", "ITC similarity", "ITM match", "rank by ITC alone (in its gallery)"]
TEXT_QUERY, IMAGE_QUERY = "a sentence", "the current picture"


class SearchHandlers:
    """Search over the shipped gallery and a session's own pictures, with the session's model."""

    def __init__(self, models: ModelManager, gallery_dir: Path = SHIPPED_GALLERY):
        self.models = models
        self.gallery_dir = gallery_dir
        self._shipped: GalleryIndex | None = None
        self._others: OrderedDict[str, GalleryIndex] = OrderedDict()
        self._lock = threading.Lock()  # building a gallery for another model happens once, not once per request

    def _shipped_index(self) -> GalleryIndex:
        if self._shipped is None:
            try:
                self._shipped = GalleryIndex.open(self.gallery_dir)
            except vqa.VQAError as exc:
                log.warning("No shipped search gallery: %s", exc)
                raise vqa.UnsupportedError("This server has no picture gallery to search; add your own pictures to search them.") from exc
        return self._shipped

    def _gallery_for(self, model) -> GalleryIndex | None:
        """The shipped gallery in `model`'s embedding space: the index itself, or its pictures embedded again."""
        try:
            shipped = self._shipped_index()
        except vqa.UnsupportedError:
            return None
        if model.embedding_space() == shipped.embedding_space:
            return shipped
        with self._lock:
            space = model.embedding_space()
            if space not in self._others:
                files = [shipped.path_of(position) for position in range(len(shipped))]
                self._others[space] = GalleryIndex.from_images(model, files)
                while len(self._others) > OTHER_MODEL_GALLERIES:
                    self._others.popitem(last=False)
            self._others.move_to_end(space)
            return self._others[space]

    @user_errors
    def search(self, query="", image=None, query_kind=TEXT_QUERY, rerank=True, top_k=8, session_pictures=None, model_key=None):
        """The best `top_k` pictures for the query. Returns (gallery [(picture, caption)], hits table rows,
        a sentence on what re-ranking changed, the hits kept for drawing where the words matched)."""
        model = self.models.current(model_key)
        if "retrieval" not in model.capabilities:
            raise vqa.UnsupportedError(f"{model.name} cannot search: it has no image-text contrastive head. Choose another model in the Model tab.")
        top_k = SEARCH_TOP_K.check(top_k)
        if query_kind == IMAGE_QUERY:
            query_value, words = load_image(image), None
        elif query_kind == TEXT_QUERY:
            words = clean_question(query)
            query_value = words
        else:
            raise vqa.InputError(f"Search by {TEXT_QUERY} or by {IMAGE_QUERY}.")
        rerank = bool(rerank) and words is not None and "itm" in model.capabilities
        hits = []
        for source, gallery in (("gallery", self._gallery_for(model)), ("your picture", _session_index(model, session_pictures))):
            if gallery is None or len(gallery) == 0:
                continue
            for hit in model.search(query_value, gallery, top_k=top_k, rerank=rerank):
                hits.append((source, gallery, hit))
        if not hits:
            raise vqa.InputError("There is nothing to search: add a picture to your gallery first.")
        hits.sort(key=lambda item: -(item[2].itm_score if rerank else item[2].itc_score))
        hits = hits[:top_k]
        shown, rows, kept = [], [], []
        for rank, (source, gallery, hit) in enumerate(hits, 1):
            picture = gallery.image_of(hit.position)
            itm = f" · ITM {hit.itm_score:.2f}" if hit.itm_score is not None else ""
            moved = f" (ITC alone: #{hit.rank_before_rerank})" if rerank and hit.rank_before_rerank != rank else ""
            name = Path(hit.path).stem if source == "gallery" and hit.path else f"your picture {hit.position + 1}"
            shown.append((_thumbnail(picture), f"#{rank} {name} · ITC {hit.itc_score:.2f}{itm}{moved}"))
            rows.append([rank, name, round(hit.itc_score, 4), None if hit.itm_score is None else round(hit.itm_score, 4), hit.rank_before_rerank])
            kept.append(display_copy(picture))
        changed = sum(1 for rank, (_, _, hit) in enumerate(hits, 1) if hit.rank_before_rerank != rank)
        if rerank:
            note = (f"Re-ranked by ITM: the model read your words together with each of the best {RERANK_CANDIDATES.default} pictures by ITC "
                    f"and re-ordered them; {changed} of the {len(hits)} shown are not where ITC alone put them. Untick re-ranking to compare.")
        elif words is None:
            note = "A picture is compared with pictures by ITC alone (ITM reads a text with a picture)."
        else:
            note = "Ordered by ITC alone: one vector for the query, compared with every picture's vector at once."
        return shown, rows, note, {"pictures": kept, "words": words}

    @user_errors
    def where_words_matched(self, hits_state, model_key=None, selected: gr.SelectData = None):  # a plain annotation: Gradio only fills it then
        """For a clicked hit: where in it the query's words looked (the fusion layer's cross-attention)."""
        if not isinstance(hits_state, dict) or selected is None or not isinstance(selected.index, int):
            return gr.skip(), gr.skip()
        pictures = hits_state.get("pictures") or []
        if not 0 <= selected.index < len(pictures):
            return gr.skip(), gr.skip()
        words = hits_state.get("words")
        if not words:
            return None, "Where the words matched is drawn for a search by a sentence."
        model = self.models.current(model_key)
        if "explain" not in model.capabilities:
            return None, f"{model.name} cannot show where it looked."
        picture = pictures[selected.index]
        maps = dataclasses.replace(model.explain(picture, words), answer="")  # a search query has no answer to show
        heat, description = attention_view(maps, picture, "first", "mean", "all", "attention")
        return heat, f"Hit #{selected.index + 1}: {description}"

    @user_errors
    def add_picture(self, image, session_pictures=None):
        """Add the current picture to this session's gallery (nobody else sees it). Returns (gallery, words)."""
        pictures = list(session_pictures or [])
        if len(pictures) >= SESSION_GALLERY_MAX:
            raise vqa.InputError(f"Your gallery is full ({SESSION_GALLERY_MAX} pictures). Clear it to add others.")
        pictures.append(display_copy(load_image(image)))
        return pictures, f"Your gallery: {len(pictures)} picture(s), searched with the shipped ones. Only you see them."

    def clear_pictures(self):
        return [], "Your gallery is empty."


def _session_index(model, pictures) -> GalleryIndex | None:
    """The session's own pictures embedded by `model` (a few dozen at most: fast enough on each search)."""
    if not pictures:
        return None
    return GalleryIndex.from_images(model, list(pictures))


def _thumbnail(picture: Image.Image) -> Image.Image:
    small = picture.copy()
    small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BICUBIC)  # only ever shrinks
    if max(small.size) < THUMBNAIL_SIDE:  # the 96-px scenes are shown larger, with hard pixel edges
        factor = THUMBNAIL_SIDE // max(small.size)
        small = small.resize((small.width * factor, small.height * factor), Image.Resampling.NEAREST)
    return small


__all__ = ["SearchHandlers", "SESSION_GALLERY_MAX", "HIT_HEADERS", "TEXT_QUERY", "IMAGE_QUERY"]
