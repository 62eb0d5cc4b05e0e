"""Splits, examples and the JSONL format.

Each split draws scenes from its own seed stream: scene `i` of split `s` is
`numpy.random.default_rng([SPLIT_KEYS[s], i])`. Streams with different keys never
share a scene, and the same (split, index) always gives the same example.
Train is unbounded (the trainer draws fresh scenes every step); val, test and
compositional have fixed sizes. The compositional split contains held-out
colour–shape pairs that train/val/test never show, and its questions are about
those objects wherever the family allows (CLEVR-CoGenT style).

JSONL: one line per question,
`{"image": path, "question": str, "answers": [str, ...], "family": str, "split": str,
  "referent_box": [x0, y0, x1, y1] | null (fractions of width/height), "captions": [str, ...]}`.
`vqa evaluate --data FILE.jsonl` reads the same format for any outside data set
(only "image", "question" and "answers" are required).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vqa.data.captions import reference_captions
from vqa.data.questions import FAMILIES, Question, ask
from vqa.data.scenes import Scene, render, sample_scene
from vqa.data.style_augmentation import vary_style
from vqa.data.unseen_phrasing import rephrase
from vqa.data.unseen_style import render_other_style
from vqa.data.vocabulary import HELD_OUT_PAIRS, MAX_OBJECTS
from vqa.data.wordings import reword

SPLIT_KEYS = {"train": 11, "val": 22, "test": 33, "compositional": 44, "unseen_phrasing": 55, "unseen_style": 66}
SPLIT_SCENES = {"val": 250, "test": 1000, "compositional": 500, "unseen_phrasing": 500, "unseen_style": 500}
# Held out from the generator itself: other wordings (vqa/data/unseen_phrasing.py), another drawing routine
# (vqa/data/unseen_style.py). Never used for training or model selection.
UNSEEN_SPLITS = ("unseen_phrasing", "unseen_style")
TRAIN_IMAGE_SIZE = 96
AUGMENTATION_STREAM = 1  # third key of the seed stream training's augmentations draw from


@dataclass
class Example:
    """One rendered scene with its questions and reference captions."""

    split: str
    index: int
    scene: Scene
    image: Image.Image
    questions: list[Question]
    captions: list[str]


def scene_rng(split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([SPLIT_KEYS[split], index])


def make_example(split: str, index: int, image_size: int = TRAIN_IMAGE_SIZE, families=FAMILIES, max_objects: int = MAX_OBJECTS,
                 reworded_share: float = 0.0, restyled_share: float = 0.0, elongated_share: float = 0.0) -> Example:
    """Scene `index` of `split`, rendered, with (at most) one question per family.
    `max_objects` below MAX_OBJECTS gives the simpler scenes of a training curriculum. Training's augmentations:
    `reworded_share` of the questions in other words (`vqa.data.wordings`), `restyled_share` of the pictures
    in another look (`vqa.data.style_augmentation`), `elongated_share` of those on an elongated page; they draw
    from a stream of their own, so the scene and its questions are the same with or without them."""
    rng = scene_rng(split, index)
    scene = sample_scene(rng, max_objects=max_objects, allow_pairs="compositional" if split == "compositional" else "train")
    scene.seed = int(rng.integers(2**31))
    questions = []
    for family in families:
        question = ask(scene, rng, family)
        if question is None:
            continue
        if split == "compositional" and not _about_held_out(scene, question):
            continue
        questions.append(question)
    if split == "unseen_phrasing":
        questions = [rephrase(question, scene, rng) for question in questions]
    augment_rng = np.random.default_rng([SPLIT_KEYS[split], index, AUGMENTATION_STREAM])
    if reworded_share:
        questions = [reword(q, scene, augment_rng) if augment_rng.random() < reworded_share else q for q in questions]
    drawn = vary_style(scene, augment_rng, elongated_share) if restyled_share and augment_rng.random() < restyled_share else scene
    if split == "unseen_style":
        image, drawn = render_other_style(scene, rng)
    else:
        image = render(drawn, image_size)
    # the scene as drawn: a restyled picture's turned shapes are where the grounding and patch targets must look,
    # and an other-style picture's spread objects on their elongated page are where pointing is checked
    return Example(split, index, drawn, image, questions, reference_captions(scene))


def _about_held_out(scene: Scene, question: Question) -> bool:
    """On the compositional split keep questions whose referent (or, for counting and
    existence, whose scene) involves a held-out pair."""
    if question.referent is not None:
        obj = scene.objects[question.referent]
        return (obj.color, obj.shape) in HELD_OUT_PAIRS
    return any((o.color, o.shape) in HELD_OUT_PAIRS for o in scene.objects)


def iter_split(split: str, num_scenes: int | None = None, image_size: int = TRAIN_IMAGE_SIZE):
    count = num_scenes if num_scenes is not None else SPLIT_SCENES[split]
    for index in range(count):
        yield make_example(split, index, image_size)


def export_jsonl(split: str, out_dir: str | Path, num_scenes: int | None = None, image_size: int = TRAIN_IMAGE_SIZE) -> Path:
    """Write images under out_dir/images/<split>/ and the questions to out_dir/<split>.jsonl."""
    out_dir = Path(out_dir)
    image_dir = out_dir / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{split}.jsonl"
    with path.open("w") as f:
        for ex in iter_split(split, num_scenes, image_size):
            image_path = image_dir / f"{ex.index:06d}.png"
            ex.image.save(image_path)
            for q in ex.questions:
                box = list(ex.scene.page_box(q.referent)) if q.referent is not None else None
                record = {
                    "image": str(image_path.relative_to(out_dir)),
                    "question": q.text,
                    "answers": [q.answer],
                    "family": q.family,
                    "split": split,
                    "referent_box": [round(v, 4) for v in box] if box else None,
                    "captions": ex.captions,
                    "scene": ex.scene.to_dict(),
                }
                f.write(json.dumps(record) + "\n")
    return path


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a JSONL file of questions; image paths are resolved relative to the file."""
    path = Path(path)
    records = []
    with path.open() as f:
        for line_number, line in enumerate(f, 1):
            if not line.strip():
                continue
            record = json.loads(line)
            missing = {"image", "question", "answers"} - set(record)
            if missing:
                raise ValueError(f"{path}:{line_number}: missing {sorted(missing)}")
            image = Path(record["image"])
            record["image"] = str(image if image.is_absolute() else path.parent / image)
            records.append(record)
    return records
