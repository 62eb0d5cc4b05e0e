"""Is a picture or a question inside what a model learned? Two checks, calibrated on the model's own training data.

A model trained on generated shapes scenes still answers a photograph of a cat, and with confidence.
These checks say when it is guessing:

- the picture: how far the image encoder's patch states lie from those of the training scenes, per
  dimension in units of the training spread (a diagonal Mahalanobis distance, averaged over patches).
  The threshold is a margin above the largest distance among generated validation scenes;
- the question: the words it uses that no training question ever used ("animal", "hello", "bigger"). A model
  whose questions are read by a pretrained sentence encoder (`config.text_encoder`) understands many such
  words; for it a question with new words is still inside when its sentence embedding lies near one of the
  training questions' (cosine similarity at least a threshold a margin below the lowest of the generated
  validation questions'), so "which hue is the circle?" is answered without a warning and "what is the
  circle's favourite food?" is not.

`calibrate(backbone)` measures both from generated data and `DomainCalibration.save` writes them into
the model folder (domain_calibration.json, and domain_questions.safetensors with the training questions'
sentence embeddings), where the backbone reads them back: the thresholds are
the model's own, not constants in code. Training writes one for every model it saves.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CALIBRATION_FILE = "domain_calibration.json"
QUESTION_EMBEDDINGS_FILE = "domain_questions.safetensors"
#: The question threshold is this much (cosine similarity) below the lowest among the validation questions.
QUESTION_SIMILARITY_MARGIN = 0.02
#: The image threshold is this much above the largest distance among the validation scenes.
IMAGE_THRESHOLD_MARGIN = 1.05
IMAGE_NOTE = ("This picture does not look like the simple generated shapes scenes this model learned from "
              "(is it a photograph?), so its answers here are guesses.")
QUESTION_NOTE = "The question uses words this model never learned ({words}), so its answer is a guess."
SENTENCE_NOTE = ("The question uses words this model never learned ({words}) and reads unlike every question it was "
                 "trained on, so its answer is a guess.")
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
    question_encoder: str | None = None  # the sentence encoder that embeds questions (vqa/model/pretrained_text.py)
    question_embeddings: np.ndarray | None = None  # (Q, E) unit vectors of the distinct training questions
    question_threshold: float | None = None  # cosine similarity to the nearest training question counted inside

    def image_distance(self, patch_states: np.ndarray) -> float:
        """patch_states: (N, H) for one picture. Root mean square of the standardised states."""
        z = (patch_states - self.patch_mean) / self.patch_std  # (N, H)
        return float(np.sqrt(np.mean(z * z)))

    def unknown_words(self, question: str) -> list[str]:
        return [w for w in dict.fromkeys(question_words(question)) if w not in self.known_words]

    def question_similarity(self, question: str) -> float:
        """Cosine similarity of `question`'s sentence embedding to the nearest training question's."""
        from vqa.model.pretrained_text import sentence_embeddings

        vector = sentence_embeddings(self.question_encoder, [question])[0].numpy()  # (E,)
        return float((self.question_embeddings @ vector).max())

    def question_note(self, question: str) -> str | None:
        """None when the question is inside; otherwise what is new in it. The sentence check runs only for a
        question with new words, so the generator's own questions cost no encoder pass."""
        unknown = self.unknown_words(question)
        if not unknown:
            return None
        words = ", ".join(f"“{w}”" for w in unknown[:5])
        if self.question_embeddings is None:
            return QUESTION_NOTE.format(words=words)
        return None if self.question_similarity(question) >= self.question_threshold else SENTENCE_NOTE.format(words=words)

    def check(self, patch_states: np.ndarray, question: str | None = None) -> tuple[bool, str | None]:
        """(in domain, a note for the user when not)."""
        notes = []
        if self.image_distance(patch_states) > self.image_threshold:
            notes.append(IMAGE_NOTE)
        question_note = self.question_note(question) if question else None
        if question_note:
            notes.append(question_note)
        return (not notes, " ".join(notes) + TRY_INSTEAD if notes else None)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / CALIBRATION_FILE
        sentences = {}
        if self.question_embeddings is not None:
            from safetensors.numpy import save_file

            save_file({"embeddings": self.question_embeddings.astype(np.float16)}, str(Path(folder) / QUESTION_EMBEDDINGS_FILE))
            sentences = {"question_encoder": self.question_encoder, "question_threshold": self.question_threshold}
        path.write_text(json.dumps({
            "image_threshold": self.image_threshold, **sentences, "figures": self.figures, "known_words": sorted(self.known_words),
            "patch_mean": [round(float(x), 6) for x in self.patch_mean], "patch_std": [round(float(x), 6) for x in self.patch_std],
        }, indent=1))
        return path

    @classmethod
    def load(cls, folder: str | Path) -> DomainCalibration | None:
        path = Path(folder) / CALIBRATION_FILE
        if not path.is_file():
            return None
        raw = json.loads(path.read_text())
        calibration = cls(frozenset(raw["known_words"]), np.asarray(raw["patch_mean"], dtype=np.float32),
                          np.asarray(raw["patch_std"], dtype=np.float32), float(raw["image_threshold"]), raw.get("figures", {}))
        embeddings = Path(folder) / QUESTION_EMBEDDINGS_FILE
        if raw.get("question_encoder") and embeddings.is_file():
            from safetensors.numpy import load_file

            calibration.question_encoder = raw["question_encoder"]
            calibration.question_embeddings = load_file(str(embeddings))["embeddings"].astype(np.float32)
            calibration.question_threshold = float(raw["question_threshold"])
        return calibration


def calibrate(patch_states_of, image_size: int, train_scenes: int = 150, val_scenes: int = 200, question_scenes: int = 1000,
              reworded_share: float = 0.0, restyled_share: float = 0.0, elongated_share: float = 0.0, question_encoder: str | None = None,
              val_question_scenes: int = 300) -> DomainCalibration:
    """Measure both checks on generated data. `patch_states_of(image)` returns a picture's (N, H) patch states.
    The shares are the training recipe's augmentations, so that what training showed counts as known.
    With `question_encoder`, the training questions' sentence embeddings are kept and the question threshold is
    measured on the questions of `val_question_scenes` generated validation scenes."""
    from vqa.data.splits import make_example

    def questions_of(split: str, scenes: int) -> list[str]:
        return sorted({q.text for i in range(scenes) for q in make_example(split, i, image_size=16, reworded_share=reworded_share).questions})

    train_questions = questions_of("train", question_scenes)
    known = {w for text in train_questions for w in question_words(text)}
    train = np.concatenate([patch_states_of(make_example("train", i, image_size, restyled_share=restyled_share, elongated_share=elongated_share).image)
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
    if question_encoder is not None:
        from vqa.model.pretrained_text import sentence_embeddings

        embeddings = sentence_embeddings(question_encoder, train_questions).numpy()  # (Q, E)
        val_questions = questions_of("val", val_question_scenes)
        nearest = (sentence_embeddings(question_encoder, val_questions).numpy() @ embeddings.T).max(1)  # (V,)
        calibration.question_encoder, calibration.question_embeddings = question_encoder, embeddings
        calibration.question_threshold = round(float(nearest.min()) - QUESTION_SIMILARITY_MARGIN, 4)
        calibration.figures.update({
            "training_questions": len(train_questions), "val_questions": len(val_questions),
            "val_question_similarity_min": round(float(nearest.min()), 4), "question_similarity_margin": QUESTION_SIMILARITY_MARGIN,
        })
    return calibration


def write_calibration(model_folder: str | Path, **counts) -> DomainCalibration:
    """Calibrate the embedded model saved in `model_folder` (as it loads: fp16 weights read as fp32) and save it
    there, with the augmentations of the recipe it was trained with (its training_config.json, when there)."""
    from vqa.backbones.embedded import EmbeddedBackbone

    backbone = EmbeddedBackbone(model_folder)
    recipe_file = Path(model_folder) / "training_config.json"
    recipe = json.loads(recipe_file.read_text()) if recipe_file.is_file() else {}
    shares = {key: recipe[key] for key in ("reworded_share", "restyled_share", "elongated_share") if key in recipe}
    calibration = calibrate(backbone.patch_states, backbone.config.image_size, **shares, question_encoder=backbone.config.text_encoder, **counts)
    calibration.save(model_folder)
    return calibration
