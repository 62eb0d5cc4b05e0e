"""The `unseen_phrasing` split: generated scenes asked in words the training generator never uses.

Same scenes and answers as the generator's (its `Question`s give the answer and what the question names),
re-worded with templates of this module only: short forms ("shape?"), other word orders, "colour" and
"hue", everyday counting and existence ("are there two shapes?", "any triangles?"), and, where a scene
has a single object, questions that name nothing ("what shape is present?"). Never used for training or
model selection; tests check that no wording here is one the generator can produce.

Shape synonyms are left out on purpose: the ones people use ("box", "round thing") also fit another shape of
this world (a rectangle, an ellipse), so the answer would stop being unambiguous.
"""

from __future__ import annotations

import numpy as np

from vqa.data.questions import Question, _choice, plural, with_article
from vqa.data.scenes import Scene

PHRASINGS: dict[str, list[str]] = {
    "exist": [
        "any {p}?",
        "{a}?",
        "are there any {p}?",
        "is there {a} in this picture?",
        "do we see {a}?",
        "is {a} visible?",
        "would you say there is {a}?",
        "is there {a} anywhere?",
        "{a}: yes or no?",
        "is there at least one {d}?",
        "does this picture have {a}?",
        "has the image got {a}?",
    ],
    "not_exist": [
        "there is no {d}, right?",
        "no {p} here?",
        "is the image free of {p}?",
        "are there zero {p}?",
        "is it correct that the picture has no {d}?",
        "does the picture lack {a}?",
        "are {p} absent?",
        "is no {d} shown?",
        "is the image without any {p}?",
        "does the image have no {p}?",
        "are there no {p} in the picture?",
    ],
    "color": [
        "colour of the {r}?",
        "what hue is the {r}?",
        "which colour is the {r}?",
        "what's the colour of the {r}?",
        "name the colour of the {r}.",
        "how is the {r} coloured?",
        "{r}: what colour?",
        "what colour has the {r}?",
        "in what color is the {r} drawn?",
        "what is the {r}'s color?",
        "What colour is the {r}",
    ],
    "shape": [
        "shape of the {r}?",
        "what form does the {r} have?",
        "what's the shape of the {r}?",
        "the {r} is which shape?",
        "name the shape of the {r}.",
        "what is the {r}?",
        "which kind of shape is the {r}?",
        "what geometric figure is the {r}?",
        "{r}: what shape?",
        "identify the shape of the {r}.",
        "the {r} is shaped like what?",
        "What shape is the {r}",
    ],
    "count": [
        "number of {p}?",
        "how many {p} do you see?",
        "how many {p} are shown?",
        "how many {p} are visible?",
        "how many {p} does this picture have?",
        "count of {p}?",
        "how many {p}?",
        "tell me how many {p} there are.",
        "what's the count of {p}?",
        "how many {p} appear in the image?",
        "give the number of {p}.",
    ],
    "spatial_color": [
        "colour of the shape {side} of the {r}?",
        "what colour is the object on the {side} of the {r}?",
        "the shape to the {side} of the {r}: what colour?",
        "what's the colour of the thing {side} of the {r}?",
        "which hue does the object {side} of the {r} have?",
        "what color is the thing to the {side} of the {r}?",
        "name the colour of the shape {side} of the {r}.",
        "what colour is the shape that is {side} of the {r}?",
        "how is the object {side} of the {r} coloured?",
        "on the {side} of the {r}, what colour is the shape?",
    ],
    "spatial_shape": [
        "shape of the object {side} of the {r}?",
        "what is {side} of the {r}?",
        "what's to the {side} of the {r}?",
        "which shape lies {side} of the {r}?",
        "what shape is the thing on the {side} of the {r}?",
        "the object to the {side} of the {r} is which shape?",
        "name the shape {side} of the {r}.",
        "what kind of shape sits to the {side} of the {r}?",
        "what form does the object {side} of the {r} have?",
        "identify the shape to the {side} of the {r}.",
    ],
    "size": [
        "size of the {r}?",
        "is the {r} little or big?",
        "how large is the {r}?",
        "is the {r} a big one or a small one?",
        "big or small: the {r}?",
        "what's the size of the {r}?",
        "how would you describe the size of the {r}?",
        "is the {r} large or is it small?",
        "the {r}: small or large?",
        "which size is the {r}?",
        "the {r} is how big?",
    ],
}
# Asked only of a scene with one object: nothing needs naming, as a person would ask it.
SINGLE_OBJECT_PHRASINGS: dict[str, list[str]] = {
    "shape": ["what shape is present?", "shape?", "what shape do you see?", "what shape is in the picture?", "which shape is shown?"],
    "color": ["what colour is this shape?", "colour?", "what color is the object in the picture?", "which colour do you see?"],
    "size": ["is this shape small or large?", "size?", "how big is the object in the picture?"],
}
# "are there two shapes?": counting asked as a yes/no question (half true, half one off).
COUNT_CHECK_PHRASINGS = ["are there {n} {p}?", "are there exactly {n} {p}?", "do you see {n} {p}?", "{n} {p}?"]
ONE_CHECK_PHRASINGS = ["is there exactly one {d}?", "just one {d}?", "do you see exactly one {d}?"]
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five")


def rephrase(question: Question, scene: Scene, rng: np.random.Generator) -> Question:
    """The same question (answer, family, what it names) in one of this module's wordings."""
    family = question.family
    if family in SINGLE_OBJECT_PHRASINGS and len(scene.objects) == 1 and rng.random() < 0.5:
        text = _choice(rng, SINGLE_OBJECT_PHRASINGS[family])
    elif family == "exist" and rng.random() < 0.25:
        return _count_check(question, scene, rng)
    else:
        phrase = question.phrase or ""
        text = _choice(rng, PHRASINGS[family]).format(
            a=with_article(phrase) if phrase else "", d=phrase, p=phrase if family == "count" else plural(phrase), r=phrase, side=question.relation or "",
        )
    return Question(text, question.answer, family, question.referent, question.phrase, question.phrase_objects, question.relation)


def _count_check(question: Question, scene: Scene, rng: np.random.Generator) -> Question:
    """"are there two red circles?": yes when the scene has exactly that many of what the phrase names. A false
    claim is always more than there are, since "are there two?" of three things is yes to many people."""
    true_count = len(question.phrase_objects)
    claimed = true_count if rng.random() < 0.5 else true_count + int(rng.integers(1, 3))
    if claimed == 1:
        text = _choice(rng, ONE_CHECK_PHRASINGS).format(d=question.phrase)
    else:
        text = _choice(rng, COUNT_CHECK_PHRASINGS).format(n=NUMBER_WORDS[claimed] if claimed < len(NUMBER_WORDS) else str(claimed), p=plural(question.phrase))
    answer = "yes" if claimed == true_count else "no"
    return Question(text, answer, "exist", question.referent, question.phrase, question.phrase_objects)
