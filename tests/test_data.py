"""Shapes-world generator: determinism, split disjointness, balance, grammar, ground truth."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import numpy as np
import pytest

from vqa.data.captions import reference_captions
from vqa.data.questions import FAMILIES, TEMPLATES
from vqa.data.scenes import RADIUS_RANGE
from vqa.data.splits import export_jsonl, make_example, read_jsonl
from vqa.data.vocabulary import COLOR_NAMES, HELD_OUT_PAIRS, SHAPES, answer_vocabulary


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


def test_vocabulary_meets_the_brief():
    assert len(SHAPES) >= 8 and len(COLOR_NAMES) >= 12
    basic = {"red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "gray", "teal"}
    assert basic <= set(COLOR_NAMES)
    assert all(len(templates) >= 5 for templates in TEMPLATES.values())
    assert RADIUS_RANGE["small"][1] < RADIUS_RANGE["large"][0], "small and large must not overlap"


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
    path = export_jsonl(split, tmp_path, num_scenes=3, image_size=48)
    records = read_jsonl(path)
    assert records and all({"image", "question", "answers"} <= set(r) for r in records)
    assert all((tmp_path / "images" / split).exists() for _ in records[:1])
    assert all(r["answers"] and isinstance(r["answers"][0], str) for r in records)
