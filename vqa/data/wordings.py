"""More ways to word a training question: a small grammar of everyday English, used to re-word training questions.

The generator's templates (`vqa.data.questions.TEMPLATES`, 5-6 per family) are what val and test ask. A model
trained on them alone learns those sentences rather than the words that matter in them ("colour", "how many",
"no", "left"): asked "shape?" or "are there two circles?", it answers with the wrong kind of word. Training
therefore re-words a share of its questions (`TrainConfig.reworded_share`) with this grammar. Each frame is a
sentence with alternatives in brackets, `[a|b|]` (an empty alternative leaves the words out), and slots filled
from the question:

    {r}  the phrase that names the object asked about ("red circle", "small object")
    {a}  that phrase with its article ("a red circle"), {d} without ("red circle"), {p} in the plural
    {side}  left or right, {n} a number ("two", "3")
    {o}  a word for any object ("shape", "object", "thing"), for scenes of one object where nothing needs naming

Only training uses it, never val, test or the held-out splits; tests check that it produces none of the
`unseen_phrasing` wordings, so that split still measures wordings the model has never read.
"""

from __future__ import annotations

import itertools
import re
from functools import cache

import numpy as np

from vqa.data.questions import Question, _choice, plural, with_article
from vqa.data.scenes import Scene

IMAGE = "[image|picture|scene]"
COLOUR = "[color|colour]"

FRAMES: dict[str, list[str]] = {
    "exist": [
        f"is there {{a}}[| in the {IMAGE}]?",
        f"[can you|do you|can I|can we] [see|spot|find] {{a}}[| in the {IMAGE}]?",
        f"does the {IMAGE} [contain|show|include] {{a}}?",
        f"is {{a}} [present|shown|there|drawn|in the {IMAGE}]?",
        f"are there [some |]{{p}} in the {IMAGE}?",
        "are there {p}?",
        f"is there [any|at least one] {{d}} [in the {IMAGE}|there]?",
        "[do you|can you] see any {p}?",
        f"is it [true|correct] that [there is {{a}}|the {IMAGE} [shows|contains] {{a}}]?",
        f"does {{a}} appear[| in the {IMAGE}]?",
        f"{{a}} in the {IMAGE}?",
    ],
    "not_exist": [
        f"is there no {{d}}[| in the {IMAGE}]?",
        "are there no {p}[| in the [image|scene]]?",
        f"does the {IMAGE} not [contain|have|show|include] {{a}}?",
        "is it [true|correct] that there [is no {d}|are no {p}]?",
        "is the [picture|scene] without [{a}|any {p}]?",
        f"is there not [a single|any|one] {{d}}[| in the {IMAGE}]?",
        f"is the {{d}} missing[| from the {IMAGE}]?",
        "are no {p} [shown|drawn|present]?",
        f"is the number of {{p}} [zero|0][| in the {IMAGE}]?",
        "does the [picture|scene] have no {p}?",
        f"[can you|do you] see no {{p}}[| in the {IMAGE}]?",
    ],
    "color": [
        f"what {COLOUR} is the {{r}}?",
        f"what is the [color|colour|hue|shade] of the {{r}}?",
        f"which {COLOUR} does the {{r}} have?",
        f"the {{r}} is [what|which] {COLOUR}?",
        f"tell me the {COLOUR} of the {{r}}.",
        f"[can|could] you tell me the {COLOUR} of the {{r}}?",
        f"what {COLOUR} does the {{r}} have?",
        f"what {COLOUR} is the {{r}} [painted|filled] in?",
        "which [hue|shade] is the {r}?",
        f"the {{r}}'s {COLOUR}?",
        f"say the {COLOUR} of the {{r}}.",
    ],
    "shape": [
        "what shape is the {r}?",
        "what is the shape of the {r}?",
        "which shape is the {r}?",
        "the {r} has [what|which] shape?",
        "what [kind|sort|type] of shape is the {r}?",
        "tell me the shape of the {r}.",
        "what is the {r}'s shape?",
        "which [form|figure] is the {r}?",
        "what shape does the {r} have?",
        "[can|could] you tell me the shape of the {r}?",
        "the {r}'s shape?",
    ],
    "count": [
        f"how many {{p}} [are there|can you see|do you count|are in the {IMAGE}|does the {IMAGE} [show|contain]]?",
        f"what is the [number|count] of {{p}}[| in the {IMAGE}]?",
        f"count the {{p}}[| in the {IMAGE}].",
        "[tell me|say] how many {p} [are there|you see].",
        "how many {p} [exist|can be seen|are drawn]?",
        "the number of {p}?",
        "{p}: how many?",
        f"how many {{p}} [does the {IMAGE} have|can I see]?",
        "[can|could] you count the {p}?",
        "how many {p} do I see?",
    ],
    "spatial_color": [
        f"what {COLOUR} is the [shape|object] [{{side}} of|to the {{side}} of] the {{r}}?",
        f"what is the {COLOUR} of the [shape|object|thing] [{{side}} of|to the {{side}} of] the {{r}}?",
        f"the [shape|object|thing] [{{side}} of|to the {{side}} of] the {{r}} is what {COLOUR}?",
        f"which {COLOUR} is the [shape|thing] [{{side}} of|to the {{side}} of] the {{r}}?",
        f"tell me the {COLOUR} of the [shape|object|thing] to the {{side}} of the {{r}}.",
        f"what {COLOUR} does the [shape|object|thing] [{{side}} of|to the {{side}} of] the {{r}} have?",
        f"{{side}} of the {{r}} is a shape: what {COLOUR}?",
        f"the {{r}} has a shape to its {{side}}: which {COLOUR} is it?",
        f"what {COLOUR} is the [shape|object|thing] next to the {{r}}, on its {{side}}?",
        "which [hue|shade] is the [shape|object] [{side} of|to the {side} of] the {r}?",
    ],
    "spatial_shape": [
        "what shape is [{side} of|to the {side} of] the {r}?",
        "what is the shape of the [object|thing] [{side} of|to the {side} of] the {r}?",
        "which shape is [to the {side} of|on the {side} of] the {r}?",
        "the [thing|object] [{side} of|to the {side} of] the {r} has what shape?",
        "tell me the shape of the [object|thing] to the {side} of the {r}.",
        "what shape does the [object|thing] [{side} of|to the {side} of] the {r} have?",
        "what [is|do you see] on the {side} of the {r}?",
        "the {r} has something to its {side}: which shape is it?",
        "what [kind|sort] of shape is [{side} of|to the {side} of] the {r}?",
        "what shape is next to the {r}, on its {side}?",
    ],
    "size": [
        "what size is the {r}?",
        "is the {r} [large|big] or [small|little]?",
        "is the {r} small or [large|big]?",
        "how big is the {r}?",
        "what is the size of the {r}?",
        "is the {r} a [large|big] or a small [one|shape]?",
        "what size does the {r} have?",
        "tell me the size of the {r}.",
        "the {r}'s size?",
        "[can|could] you tell me the size of the {r}?",
        "is the {r} small, or is it [large|big]?",
    ],
}
# Asked only of a scene with one object, where nothing needs naming.
NAMELESS_FRAMES: dict[str, list[str]] = {
    "color": [f"what {COLOUR} is [it|the {{o}} here|the {{o}} shown]?", f"which {COLOUR} is [it|the {{o}}]?", f"{COLOUR} of the {{o}}?"],
    "shape": ["what shape is [it|there|drawn|here]?", "which shape [is drawn|can you see|is it]?", f"what is the shape [here|shown|in the {IMAGE}]?"],
    "size": ["what size is [it|the {o}]?", "is [it|the {o}] [large|big] or small?", "how big is [it|the {o} here]?"],
}
# "are there two circles?": counting asked as yes or no, the kind of existence question people ask most.
COUNT_CHECK_FRAMES = [
    f"are there [exactly |]{{n}} {{p}} in the {IMAGE}?",
    "can you see [exactly |]{n} {p}?",
    f"does the {IMAGE} [show|contain|have] [exactly |]{{n}} {{p}}?",
    "is the number of {p} {n}?",
    "are {n} {p} [shown|drawn]?",
]
ONE_CHECK_FRAMES = [
    f"is there [exactly |only |]one {{d}} in the {IMAGE}?",
    "can you see [exactly |only |]one {d}?",
    f"does the {IMAGE} [show|contain|have] [exactly |only |]one {{d}}?",
    "is there only one {d}?",
]
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven")
NAMELESS_OBJECTS = ("shape", "object", "thing")

_ALTERNATIVES = re.compile(r"\[([^\[\]]*)\]")


@cache
def expand(frame: str) -> tuple[str, ...]:
    """Every sentence a frame stands for: "[a|b] c[| d]" -> ("a c", "a c d", "b c", "b c d")."""
    match = _ALTERNATIVES.search(frame)
    if match is None:
        return (" ".join(frame.split()),)
    return tuple(dict.fromkeys(
        sentence for option in match.group(1).split("|")
        for sentence in expand(frame[: match.start()] + option + frame[match.end():])
    ))


def all_wordings() -> list[str]:
    """Every template the grammar can produce, slots unfilled (what tests compare held-out wordings against)."""
    frames = [*itertools.chain(*FRAMES.values(), *NAMELESS_FRAMES.values()), *COUNT_CHECK_FRAMES, *ONE_CHECK_FRAMES]
    return [sentence for frame in frames for sentence in expand(frame)]


def reword(question: Question, scene: Scene, rng: np.random.Generator) -> Question:
    """The same question (answer, family, what it names) worded by this grammar; half of the existence
    questions about something present become a counting check ("are there two red circles?")."""
    family = question.family
    if family in NAMELESS_FRAMES and len(scene.objects) == 1 and rng.random() < 0.3:
        text = _fill(_choice(rng, NAMELESS_FRAMES[family]), rng, o=_choice(rng, NAMELESS_OBJECTS))
        return Question(text, question.answer, family, question.referent, None, (), question.relation)
    if family == "exist" and question.phrase_objects and rng.random() < 0.5:
        return _count_check(question, rng)
    phrase = question.phrase or ""
    sentence = _choice(rng, expand(_choice(rng, FRAMES[family])))
    many = plural(phrase) if phrase and family != "count" else phrase
    text = sentence.format(a=with_article(phrase) if phrase else "", d=phrase, p=many, r=phrase, side=question.relation or "")
    # Grounding looks for the phrase's words in the text: a plural wording names the objects in the plural.
    named = many if "{p}" in sentence else phrase
    return Question(text, question.answer, family, question.referent, named or None, question.phrase_objects, question.relation)


def _count_check(question: Question, rng: np.random.Generator) -> Question:
    """Yes when the scene has exactly the number claimed of what the phrase names, half of the time; a wrong
    claim is one off, or one or two more than there are, never zero."""
    true_count = len(question.phrase_objects)
    claimed = true_count
    if not true_count or rng.random() < 0.5:
        claimed = max(1, true_count + int(_choice(rng, (-1, 1, 2))))
        claimed += claimed == true_count
    answer = "yes" if claimed == true_count else "no"
    if claimed == 1:
        text, named = _fill(_choice(rng, ONE_CHECK_FRAMES), rng, d=question.phrase), question.phrase
    else:
        number = NUMBERS[claimed] if rng.random() < 0.7 and claimed < len(NUMBERS) else str(claimed)
        named = plural(question.phrase)
        text = _fill(_choice(rng, COUNT_CHECK_FRAMES), rng, n=number, p=named)
    return Question(text, answer, "exist", question.referent, named, question.phrase_objects)


def _fill(frame: str, rng: np.random.Generator, **slots: str) -> str:
    return _choice(rng, expand(frame)).format(**slots)
