"""What a caller may ask for: every generation and display setting, declared once with its type and range.

The `Backbone` API checks its arguments against these declarations, so the app, its HTTP API, the
command line and Python callers all get the same message for a value that is out of range, of the
wrong type or not a finite number; the app builds its sliders and radio buttons from the same
declarations. The upper bounds are what keeps one request's work bounded on a shared server:
decoding work grows with beams × sequences × new tokens, and each of those is capped here.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from vqa.errors import InputError

#: The generative head and the caption decoder write at most this many sequences per call,
#: whatever `top_k` asks for: each sequence is one more row in every decoding step.
MAX_GENERATED_SEQUENCES = 10

#: Wall-clock limit for one `generate` call, in seconds: transformers stops decoding there
#: (its MaxTimeCriteria), so no setting and no slow machine can make a request run on.
GENERATION_TIME_LIMIT_S = 20.0


@dataclass(frozen=True)
class NumberSetting:
    """A number the caller chooses within [minimum, maximum] (whole numbers when `integer`)."""

    name: str
    label: str
    default: float
    minimum: float
    maximum: float
    step: float = 1
    integer: bool = True
    #: where the app's slider stops, when it shows less than the API accepts
    ui_maximum: float | None = None

    def check(self, value) -> int | float:
        """`value` as an int (or float), or InputError saying what is allowed."""
        kind = "a whole number" if self.integer else "a number"
        allowed = f"{self.label} must be {kind} from {_plain(self.minimum)} to {_plain(self.maximum)}"
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise InputError(f"{allowed}, not {_shown(value)}.")
        number = float(value)
        if not math.isfinite(number):
            raise InputError(f"{allowed}, not {_shown(value)}.")
        if self.integer and not number.is_integer():
            raise InputError(f"{allowed}, not {_shown(value)}.")
        if not self.minimum <= number <= self.maximum:
            raise InputError(f"{allowed}, not {_shown(value)}.")
        return int(number) if self.integer else number


@dataclass(frozen=True)
class ChoiceSetting:
    """One of a fixed set of words."""

    name: str
    label: str
    default: str
    choices: tuple[str, ...]

    def check(self, value) -> str:
        if not isinstance(value, str) or value not in self.choices:
            raise InputError(f"{self.label} must be one of {', '.join(self.choices)}, not {_shown(value)}.")
        return value


def _plain(number: float) -> str:
    """A bound as people write it: 8, 0.05, 4294967295 (never rounded, as 4.29497e+09 would be)."""
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def _shown(value) -> str:
    """A caller's value in a message: short, and never more than a few dozen characters."""
    if isinstance(value, str):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "…'"
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, numbers.Real):
        return f"{value:g}" if isinstance(value, float) else str(value) if abs(value) < 10**12 else "a number that large"
    return type(value).__name__


# ----- generation --------------------------------------------------------------------------------
HEAD = ChoiceSetting("head", "Head", "classifier", ("classifier", "generative"))
DECODING = ChoiceSetting("decoding", "Decoding", "greedy", ("greedy", "beam", "nucleus"))
CAPTION_DECODING = ChoiceSetting("decoding", "Decoding", "beam", ("beam", "nucleus", "greedy"))
TOP_K = NumberSetting("top_k", "Top-k answers", 5, 1, 1000, ui_maximum=10)
NUM_BEAMS = NumberSetting("num_beams", "Beams", 3, 1, 8)
TOP_P = NumberSetting("top_p", "Top-p", 0.9, 0.05, 1.0, step=0.05, integer=False)
TEMPERATURE = NumberSetting("temperature", "Temperature", 1.0, 0.1, 2.0, step=0.1, integer=False)
ANSWER_TOKENS = NumberSetting("max_new_tokens", "Max tokens", 8, 1, 16)
CAPTION_TOKENS = NumberSetting("max_new_tokens", "Max tokens", 40, 1, 40)
NUM_CAPTIONS = NumberSetting("num_captions", "Captions", 3, 1, 5)
SEED = NumberSetting("seed", "Seed", 0, 0, 2**32 - 1)
TRAIN_MINUTES = NumberSetting("minutes", "Training minutes", 3, 1, 10, step=0.5, integer=False)


@dataclass(frozen=True)
class Decoding:
    """Checked decoding settings: what every backbone's `generate` call is built from."""

    decoding: str
    num_beams: int
    top_p: float
    temperature: float
    max_new_tokens: int
    seed: int | None

    def as_kwargs(self) -> dict:
        return dict(decoding=self.decoding, num_beams=self.num_beams, top_p=self.top_p, temperature=self.temperature,
                    max_new_tokens=self.max_new_tokens, seed=self.seed)


def check_decoding(decoding, num_beams, top_p, temperature, max_new_tokens, seed, *, caption: bool = False) -> Decoding:
    """Every decoding argument checked against its declaration (InputError for the first one that is not allowed)."""
    tokens = CAPTION_TOKENS if caption else ANSWER_TOKENS
    return Decoding(
        decoding=(CAPTION_DECODING if caption else DECODING).check(decoding),
        num_beams=NUM_BEAMS.check(num_beams),
        top_p=TOP_P.check(top_p),
        temperature=TEMPERATURE.check(temperature),
        max_new_tokens=tokens.check(max_new_tokens),
        seed=None if seed is None else SEED.check(seed),
    )


#: Candidate answers a caller may ask the classifier to rank: each one may cost a text encoding.
MAX_CANDIDATES = 200


def check_candidates(candidates) -> list[str] | None:
    """None, or a list of 1..MAX_CANDIDATES strings."""
    if candidates is None:
        return None
    if isinstance(candidates, str) or not isinstance(candidates, (list, tuple)):
        raise InputError(f"Candidate answers must be a list of strings, not {_shown(candidates)}.")
    if not 1 <= len(candidates) <= MAX_CANDIDATES:
        raise InputError(f"Give from 1 to {MAX_CANDIDATES} candidate answers, not {len(candidates)}.")
    if not all(isinstance(c, str) for c in candidates):
        raise InputError("Candidate answers must be strings.")
    return list(candidates)


# ----- display -----------------------------------------------------------------------------------
ATTENTION_METHOD = ChoiceSetting("method", "Method", "attention", ("attention", "rollout"))
QUANTIZATION = ChoiceSetting("scheme", "Quantization", "int8", ("none", "int8", "bnb-int8", "bnb-nf4"))
