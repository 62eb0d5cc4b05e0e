"""Shapes-world generator: determinism, split disjointness, balance, grammar, ground truth."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from vqa.data.captions import reference_captions
from vqa.data.questions import FAMILIES
from vqa.data.splits import export_jsonl, make_example, read_jsonl
from vqa.data.vocabulary import COLOR_NAMES, HELD_OUT_PAIRS, SHAPE_PLURALS, SHAPES, SIZES, answer_vocabulary


def fingerprint(example) -> str:
    digest = hashlib.sha1(example.image.tobytes())
    digest.update(json.dumps([(q.text, q.answer) for q in example.questions]).encode())
    return digest.hexdigest()


def test_same_seed_same_example():
    a, b = make_example("test", 7), make_example("test", 7)
    assert fingerprint(a) == fingerprint(b)
    assert a.captions == b.captions
    assert make_example("test", 8).image.tobytes() != a.image.tobytes()


def test_splits_share_no_scene():
    seen = {}
    for split in ("train", "val", "test", "compositional"):
        for index in range(60):
            key = hashlib.sha1(make_example(split, index, image_size=32).image.tobytes()).hexdigest()
            assert key not in seen, f"{split}/{index} repeats {seen.get(key)}"
            seen[key] = f"{split}/{index}"


def test_the_generated_pictures_and_questions_meet_the_brief():
    """Measured on what the generator draws and asks, not on its tables: at least 8 shapes and the 12 basic
    colours appear, every shape and colour the vocabulary names is drawn, small and large objects never
    overlap in size, and each family is asked in at least 5 wordings."""
    basic = {"red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "gray", "teal"}
    attribute_words = set(COLOR_NAMES) | set(SHAPES) | set(SIZES) | set(SHAPE_PLURALS.values()) | {"left", "right", "a", "an"}
    shapes, colours, radii, wordings = set(), set(), {"small": [], "large": []}, {}
    for index in range(300):
        example = make_example("train", index, image_size=32)
        for obj in example.scene.objects:
            shapes.add(obj.shape)
            colours.add(obj.color)
            radii[obj.size].append(obj.radius)
        for question in example.questions:
            frame = " ".join("_" if w in attribute_words else w for w in re.findall(r"[a-z]+", question.text))
            wordings.setdefault(question.family, set()).add(frame)
    assert len(shapes) >= 8 and shapes == set(SHAPES)
    assert basic <= colours and colours == set(COLOR_NAMES)
    assert max(radii["small"]) < min(radii["large"]), "small and large must not overlap"
    assert set(wordings) == set(FAMILIES) and min(len(frames) for frames in wordings.values()) >= 5, wordings


def test_compositional_pairs_never_in_train_val_test():
    for split in ("train", "val", "test"):
        for index in range(150):
            ex = make_example(split, index, image_size=32)
            assert not {(o.color, o.shape) for o in ex.scene.objects} & HELD_OUT_PAIRS
    held = sum(bool({(o.color, o.shape) for o in make_example("compositional", i, 32).scene.objects} & HELD_OUT_PAIRS) for i in range(50))
    assert held == 50


def test_answers_balanced_and_in_vocabulary():
    questions = [q for i in range(400) for q in make_example("train", i, image_size=32).questions]
    vocabulary = set(answer_vocabulary())
    assert {q.answer for q in questions} <= vocabulary
    for family in ("exist", "not_exist"):
        counts = Counter(q.answer for q in questions if q.family == family)
        assert 0.4 < counts["yes"] / (counts["yes"] + counts["no"]) < 0.6, counts
    counts = Counter(q.answer for q in questions if q.family == "count")
    assert counts.most_common(1)[0][1] / sum(counts.values()) < 0.45, f"one count dominates: {counts}"
    assert set(Counter(q.family for q in questions)) == set(FAMILIES)


def test_answers_are_true_of_the_scene():
    for index in range(200):
        ex = make_example("val", index, image_size=32)
        objects = ex.scene.objects
        for q in ex.questions:
            if q.family in ("color", "shape", "size"):
                assert getattr(objects[q.referent], q.family) == q.answer
            if q.family == "count" and q.text.startswith("how many shapes"):
                assert q.answer == str(len(objects))
            if q.family.startswith("spatial"):
                target = objects[q.referent]
                others_on_side = [o for o in objects if (o.x < target.x if "right" in q.text else o.x > target.x)]
                assert others_on_side, q.text


def test_captions_name_every_object_and_boxes_fit():
    ex = make_example("test", 3)
    for caption in reference_captions(ex.scene):
        for obj in ex.scene.objects:
            assert f"{obj.size} {obj.color} {obj.shape}" in caption
    for obj in ex.scene.objects:
        x0, y0, x1, y1 = obj.box
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
        # the object's own colour is drawn at its centre
        px = np.asarray(ex.image)[int(obj.y * ex.image.height), int(obj.x * ex.image.width)].astype(int)
        assert np.abs(px - np.array(obj.rgb)).max() < 60


@pytest.mark.parametrize("split", ["test", "compositional"])
def test_jsonl_round_trip(tmp_path, split):
    """The file read back holds every question of the exported scenes, in order, with its answer, next to the
    very picture it was asked about."""
    path = export_jsonl(split, tmp_path, num_scenes=3, image_size=48)
    records = read_jsonl(path)
    examples = [make_example(split, index, image_size=48) for index in range(3)]
    expected = [(example, question) for example in examples for question in example.questions]
    assert [(r["question"], r["answers"], r["family"]) for r in records] == [(q.text, [q.answer], q.family) for _, q in expected]
    for record, (example, _) in zip(records, expected):
        with Image.open(record["image"]) as picture:
            assert picture.convert("RGB").tobytes() == example.image.convert("RGB").tobytes()
