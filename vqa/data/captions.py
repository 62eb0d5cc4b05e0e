"""Reference captions: grammatical English naming every object in the scene.

Several references per image (as in COCO), all built from the same ground truth:
a left-to-right listing, a relation chain ("… to the left of …"), and a short
"there is …" form. Evaluation's object-mention recall checks that a caption names
each object's size, colour and shape.
"""

from __future__ import annotations

from vqa.data.questions import with_article
from vqa.data.scenes import Scene


def _join(phrases: list[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def reference_captions(scene: Scene) -> list[str]:
    """All reference captions of a scene; the first is the canonical one the model is trained to write."""
    ordered = sorted(scene.objects, key=lambda o: o.x)
    phrases = [with_article(o.describe()) for o in ordered]
    if len(phrases) == 1:
        listing = phrases[0]
        chain = f"{phrases[0]} on its own"
        there = f"there is {phrases[0]}"
    else:
        listing = f"{_join(phrases)}, from left to right"
        chain = " to the left of ".join(phrases)
        there = f"there are {len(phrases)} shapes: {_join(phrases)}"
    return [listing, chain, there]


def canonical_caption(scene: Scene) -> str:
    return reference_captions(scene)[0]
