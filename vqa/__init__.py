"""Visual question answering with a small vision-language model, and the same API for hub models.

    import vqa
    model = vqa.load()                                   # the embedded model from weights/, CPU
    r = model.answer("scene.png", "what color is the circle?", head="classifier", top_k=5)
    r.answer, r.score, r.candidates
    both = model.ask("scene.png", "what color is the circle?")   # both.classifier, both.generative
    model.caption("scene.png").text
    maps = model.explain("scene.png", "what color is the circle?")
    hits = model.search("a red circle left of a blue square", ["a.png", "b.png"])   # search pictures (vqa.retrieval)
    hits[0].position, hits[0].itc_score, hits[0].itm_score
"""

from vqa.errors import InputError, ModelLoadError, UnsupportedError, VQAError
from vqa.loading import DEFAULT_MODEL_DIR, default_model, load
from vqa.results import Answer, Answers, AttentionMaps, Caption, ModelInfo, SearchHit

__all__ = [
    "load", "default_model", "DEFAULT_MODEL_DIR",
    "Answer", "Answers", "Caption", "AttentionMaps", "ModelInfo", "SearchHit",
    "VQAError", "InputError", "ModelLoadError", "UnsupportedError",
]
