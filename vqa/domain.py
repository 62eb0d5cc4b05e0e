"""Is a picture or a question inside what a model learned? Two checks, calibrated on the model's own training data.

A model trained on generated shapes scenes still answers a photograph of a cat, and with confidence.
These checks say when it is guessing:

- the picture: how far the image encoder's patch states lie from those of the training scenes, per
  dimension in units of the training spread (a diagonal Mahalanobis distance, averaged over patches).
  The threshold is a margin above the largest distance among generated validation scenes;
- the question: the words it uses that no training question ever used ("animal", "hello", "bigger").

`calibrate(backbone)` measures both from generated data and `DomainCalibration.save` writes them into
the model folder (domain_calibration.json), where the backbone reads them back: the thresholds are
the model's own, not constants in code. Training writes one for every model it saves.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CALIBRATION_FILE = "domain_calibration.json"
#: The image threshold is this much above the largest distance among the validation scenes.
IMAGE_THRESHOLD_MARGIN = 1.05
IMAGE_NOTE = ("This picture does not look like the simple generated shapes scenes this model learned from "
              "(is it a photograph?), so its answers here are guesses.")
QUESTION_NOTE = "The question uses words this model never learned ({words}), so its answer is a guess."
TRY_INSTEAD = " Try one of the examples, or a hub model such as BLIP (Model tab) where the hub can be reached."


def question_words(text: str) -> list[str]:
    """The words of a question as the checks compare them: lower case, letters and digits."""
    return re.findall(r"[a-z0-9]+", text.lower())


@dataclass
class DomainCalibration:
    known_words: frozenset[str]
    patch_mean: np.ndarray  # (H,) mean of the image encoder's patch states over the training scenes
    patch_std: np.ndarray  # (H,) their spread
    image_threshold: float
    figures: dict = field(default_factory=dict)  # how it was calibrated, for the model card

    def image_distance(self, patch_states: np.ndarray) -> float:
        """patch_states: (N, H) for one picture. Root mean square of the standardised states."""
        z = (patch_states - self.patch_mean) / self.patch_std  # (N, H)
        return float(np.sqrt(np.mean(z * z)))

    def unknown_words(self, question: str) -> list[str]:
        return [w for w in dict.fromkeys(question_words(question)) if w not in self.known_words]

    def check(self, patch_states: np.ndarray, question: str | None = None) -> tuple[bool, str | None]:
        """(in domain, a note for the user when not)."""
        notes = []
        if self.image_distance(patch_states) > self.image_threshold:
            notes.append(IMAGE_NOTE)
        unknown = self.unknown_words(question) if question else []
        if unknown:
            notes.append(QUESTION_NOTE.format(words=", ".join(f"“{w}”" for w in unknown[:5])))
        return (not notes, " ".join(notes) + TRY_INSTEAD if notes else None)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / CALIBRATION_FILE
        path.write_text(json.dumps({
            "image_threshold": self.image_threshold, "figures": self.figures, "known_words": sorted(self.known_words),
            "patch_mean": [round(float(x), 6) for x in self.patch_mean], "patch_std": [round(float(x), 6) for x in self.patch_std],
        }, indent=1))
        return path

    @classmethod
    def load(cls, folder: str | Path) -> DomainCalibration | None:
        path = Path(folder) / CALIBRATION_FILE
        if not path.is_file():
            return None
        raw = json.loads(path.read_text())
        return cls(frozenset(raw["known_words"]), np.asarray(raw["patch_mean"], dtype=np.float32),
                   np.asarray(raw["patch_std"], dtype=np.float32), float(raw["image_threshold"]), raw.get("figures", {}))


def calibrate(patch_states_of, image_size: int, train_scenes: int = 150, val_scenes: int = 200, question_scenes: int = 1000,
              reworded_share: float = 0.0, restyled_share: float = 0.0) -> DomainCalibration:
    """Measure both checks on generated data. `patch_states_of(image)` returns a picture's (N, H) patch states.
    The shares are the training recipe's augmentations, so that what training showed counts as known."""
    from vqa.data.splits import make_example

    known = {w for i in range(question_scenes) for q in make_example("train", i, image_size=16, reworded_share=reworded_share).questions
             for w in question_words(q.text)}
    train = np.concatenate([patch_states_of(make_example("train", i, image_size, restyled_share=restyled_share).image)
                            for i in range(train_scenes)])  # (scenes * N, H)
    mean, std = train.mean(0), train.std(0) + 1e-6
    calibration = DomainCalibration(frozenset(known), mean, std, image_threshold=float("inf"))
    val = np.array([calibration.image_distance(patch_states_of(make_example("val", i, image_size).image)) for i in range(val_scenes)])
    calibration.image_threshold = float(val.max() * IMAGE_THRESHOLD_MARGIN)
    calibration.figures = {
        "train_scenes": train_scenes, "val_scenes": val_scenes, "question_scenes": question_scenes, "known_words": len(known),
        "val_distance_median": round(float(np.median(val)), 4), "val_distance_max": round(float(val.max()), 4),
        "threshold_margin": IMAGE_THRESHOLD_MARGIN,
    }
    return calibration


def write_calibration(model_folder: str | Path, **counts) -> DomainCalibration:
    """Calibrate the embedded model saved in `model_folder` (as it loads: fp16 weights read as fp32) and save it
    there, with the augmentations of the recipe it was trained with (its training_config.json, when there)."""
    from vqa.backbones.embedded import EmbeddedBackbone

    backbone = EmbeddedBackbone(model_folder)
    recipe_file = Path(model_folder) / "training_config.json"
    recipe = json.loads(recipe_file.read_text()) if recipe_file.is_file() else {}
    shares = {key: recipe[key] for key in ("reworded_share", "restyled_share") if key in recipe}
    calibration = calibrate(backbone.patch_states, backbone.config.image_size, **shares, **counts)
    calibration.save(model_folder)
    return calibration
