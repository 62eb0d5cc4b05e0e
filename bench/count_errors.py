"""Where the embedded model miscounts (not a test): counting questions of the test split's first N
scenes, errors by the number of objects in the scene and by how far the answer is off.

    python bench/count_errors.py [--model weights/shapes-vlp] [--scenes 300] [--quantize int8]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import vqa  # noqa: E402
from vqa.data.splits import make_example  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--scenes", type=int, default=300)
    parser.add_argument("--quantize", default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = vqa.load(args.model, quantize=args.quantize)
    asked = collections.Counter()  # objects in the scene -> counting questions
    wrong = collections.Counter()  # objects in the scene -> wrong answers
    off_by = collections.Counter()  # answer minus truth -> wrong answers
    for index in range(args.scenes):
        example = make_example("test", index, model.config.image_size)
        objects = len(example.scene.objects)
        for question in example.questions:
            if question.family != "count":
                continue
            answer = model.answer(example.image, question.text).answer
            asked[objects] += 1
            if answer != question.answer:
                wrong[objects] += 1
                off_by[str(int(answer) - int(question.answer)) if answer.isdigit() else answer] += 1
    total = sum(asked.values())
    print(json.dumps({
        "questions": total,
        "accuracy": round(1 - sum(wrong.values()) / max(total, 1), 4),
        "wrong_by_objects_in_scene": {k: f"{wrong[k]}/{asked[k]}" for k in sorted(asked)},
        "answer_minus_truth": dict(off_by),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
