"""Write the example gallery: generated shapes-world scenes with one question each.

    python demo/make_examples.py            # -> demo/examples/*.png + examples.json

The scenes come from the held-out "test" split (never seen in training) at the
training resolution (96 px), so each PNG is a few kilobytes. The same (split,
index) always renders the same picture, so re-running this changes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python demo/make_examples.py` from anywhere
    sys.path.insert(0, str(ROOT))

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
INDEX_FILE = "examples.json"
SPLIT = "test"
IMAGE_SIZE = 96
# One question family per example, in this order, so the gallery shows every kind of question.
FAMILY_ORDER = ("color", "shape", "count", "exist", "spatial_color", "size", "spatial_shape", "not_exist")


def make_examples(out_dir: str | Path = EXAMPLES_DIR, count: int = 8, split: str = SPLIT, image_size: int = IMAGE_SIZE) -> list[dict]:
    """Save `count` scenes as PNGs and their questions to out_dir/examples.json; return the records."""
    from vqa.data.splits import make_example

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for index in range(count):
        example = make_example(split, index, image_size)
        by_family = {q.family: q for q in example.questions}
        wanted = FAMILY_ORDER[index % len(FAMILY_ORDER)]
        question = by_family.get(wanted) or next(
            (by_family[f] for f in FAMILY_ORDER if f in by_family), example.questions[0]
        )
        name = f"{split}_{index:03d}.png"
        example.image.save(out_dir / name, optimize=True)
        records.append({"image": name, "question": question.text, "answer": question.answer, "family": question.family})
    (out_dir / INDEX_FILE).write_text(json.dumps(records, indent=1) + "\n")
    return records


def load_examples(folder: str | Path = EXAMPLES_DIR) -> list[dict]:
    """The saved records with absolute image paths; [] when the gallery was never generated."""
    folder = Path(folder)
    try:
        records = json.loads((folder / INDEX_FILE).read_text())
    except (OSError, ValueError):
        return []
    return [{**r, "image": str(folder / r["image"])} for r in records if (folder / r["image"]).is_file()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(EXAMPLES_DIR))
    parser.add_argument("--count", type=int, default=8)
    args = parser.parse_args(argv)
    for record in make_examples(args.out, args.count):
        print(f"{record['image']}: {record['question']}  ->  {record['answer']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
