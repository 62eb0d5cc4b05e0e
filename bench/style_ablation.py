"""Which choices of the other drawing style cost a model its answers: `unseen_style` re-drawn with some of
its choices pinned to the generator's.

    python bench/style_ablation.py [--model weights/shapes-vlp] [--scenes 120]

Variants, each on the same scenes and questions (classifier head, fp32):
- `as drawn`: the split itself;
- `square pages`: every page square (the split draws pages from square to nearly twice as long as high);
- `square pages, generator's angles`: also every hexagon with a flat top and every square and rectangle
  upright, as the generator draws them (the split turns squares and rectangles by up to 12 degrees and
  stands hexagons on a corner).
Prints one line per variant: accuracy, answers of the wrong kind and accuracy per family.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import vqa  # noqa: E402
import vqa.data.splits as splits  # noqa: E402
from vqa.data import unseen_style  # noqa: E402
from vqa.evaluation import _records_from_split, evaluate_records  # noqa: E402

VARIANTS = ("as drawn", "square pages", "square pages, generator's angles")


class SquarePages:
    """The split's random stream, except that the draw of a page's proportions always gives a square page."""

    def __init__(self, rng):
        self.rng, self.uniform_calls = rng, 0

    def uniform(self, low=0.0, high=1.0, size=None):
        self.uniform_calls += 1
        return 1.0 if self.uniform_calls == 1 else self.rng.uniform(low, high, size)

    def __getattr__(self, name):
        return getattr(self.rng, name)


def generator_angles(draw_one):
    def draw(draw, obj, *args):
        if obj.shape == "hexagon":
            obj = replace(obj, rotation=obj.rotation + 30)
        elif obj.shape in ("square", "rectangle"):
            obj = replace(obj, rotation=0.0)
        draw_one(draw, obj, *args)
    return draw


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "weights" / "shapes-vlp"))
    parser.add_argument("--scenes", type=int, default=120)
    args = parser.parse_args(argv)
    model = vqa.load(args.model)
    render, draw_one = unseen_style.render_other_style, unseen_style._draw
    results = []
    for variant in VARIANTS:
        splits.render_other_style = render if variant == "as drawn" else (lambda scene, rng: render(scene, SquarePages(rng)))
        unseen_style._draw = generator_angles(draw_one) if "angles" in variant else draw_one
        try:
            report = evaluate_records(model, _records_from_split("unseen_style", args.scenes, 96), heads=("classifier",),
                                      pointing=False, captions=False)
        finally:
            splits.render_other_style, unseen_style._draw = render, draw_one
        row = {"variant": variant, "scenes": args.scenes, "accuracy": report["classifier_accuracy"],
               "wrong_kind": report.get("classifier_wrong_kind_rate"),
               "families": {family: values["classifier"] for family, values in report["families"].items()}}
        print(json.dumps(row))
        results.append(row)
    return results


if __name__ == "__main__":
    main()
