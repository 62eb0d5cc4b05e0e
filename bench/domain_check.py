"""How often the model says a picture or a question lies outside what it learned (vqa/domain.py).

    pip install -r bench/requirements.txt       # scikit-image and scikit-learn: their sample photographs
    python bench/domain_check.py [--model weights/shapes-vlp] [--quantize int8]

Four sets, each with the share judged in domain (`Answers.in_domain`):
- real photographs with natural questions: the sample photographs that scikit-image, scikit-learn and
  matplotlib ship (astronaut, cat, coffee, rocket, the moon, a flower…), each asked two questions
  a visitor would ask of it (target: at most 10 % in domain);
- out-of-world questions on generated test scenes: animals, people, greetings, comparisons, words the
  generator never uses (target: at most 20 % in domain);
- the same photographs asked "what color is the circle?", words the model knows: the picture check alone;
- the generated test split's own questions (target: at least 98 % in domain);
- the `unseen_phrasing` split's questions, worded in ways the generator never writes (target: at least 95 % in
  domain for a model that reads questions with a sentence encoder, which understands most of their words);
- flat shapes drawn by another routine: plain white or tinted backgrounds, with or without outlines,
  other sizes and aspect ratios (target: at least 95 % in domain).
Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SKIMAGE_PHOTOS = ("astronaut", "brick", "camera", "cat", "coffee", "coins", "grass", "gravel", "hubble_deep_field", "moon",
                  "rocket", "retina", "cell", "page", "text", "immunohistochemistry", "microaneurysms")
PHOTO_QUESTIONS = ("what is in this picture?", "what animal is this?", "how many people are there?", "what color is it?",
                   "is there a person?", "what is the man holding?", "is it daytime?", "is there a circle?")
OUT_OF_WORLD_QUESTIONS = (
    "what animal is this?", "how many cats are there?", "is there a person?", "is there a rocket?", "hello",
    "what's on the left?", "is the circle bigger than the square?", "who made this picture?", "what time is it?",
    "is it raining?", "what is the weather like?", "how old is the man?", "what is written here?", "is this a dog?",
    "what language is this?", "thank you!", "how many people can you see?", "what is the capital of france?",
    "which one is the biggest?", "is the square happy?", "what is the sum of the shapes?", "do you like circles?",
    "what is the meaning of this?", "where was this taken?", "can you draw a cat?", "is the triangle heavier than the star?",
    "what country is this?", "how much does it cost?", "why is the circle red?", "what is behind the square?",
    "is there a car?", "what is the tallest shape?", "are the shapes moving?", "what sound does it make?",
    "how far apart are the shapes?", "is the picture beautiful?", "what fruit is this?", "name the animal.",
    "is anyone smiling?", "what brand is it?",
)
OTHER_STYLE_COLORS = {"red": (215, 35, 35), "blue": (35, 70, 215), "green": (35, 160, 70), "yellow": (240, 215, 35),
                      "orange": (245, 140, 25), "purple": (135, 55, 170), "black": (20, 20, 20), "pink": (240, 120, 180)}
OTHER_STYLE_BACKGROUNDS = ((255, 255, 255), (244, 244, 244), (255, 248, 225), (228, 240, 255), (235, 250, 235))


def photographs() -> dict[str, Image.Image]:
    """Every sample photograph the installed packages ship, by name."""
    import matplotlib.cbook
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = {}
    for name in SKIMAGE_PHOTOS:
        try:
            array = np.asarray(getattr(skimage.data, name)())
        except Exception as exc:  # noqa: BLE001 - a sample that needs a download is left out, and said so
            print(f"left out {name}: {type(exc).__name__}", file=sys.stderr)
            continue
        if array.ndim == 2:
            array = np.stack([array] * 3, -1)
        photos[name] = Image.fromarray(array[..., :3].astype(np.uint8))
    for name, array in zip(("china", "flower"), load_sample_images().images):
        photos[name] = Image.fromarray(array)
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as image:
        photos["grace_hopper"] = image.convert("RGB")
    return photos


def other_style_scene(index: int) -> Image.Image:
    """Flat shapes by a second drawing routine: what a person might draw in a paint program."""
    rng = np.random.default_rng(10_000 + index)
    width = int(rng.integers(48, 257))
    height = int(width * rng.uniform(0.6, 1.0))
    image = Image.new("RGB", (width, height), OTHER_STYLE_BACKGROUNDS[index % len(OTHER_STYLE_BACKGROUNDS)])
    draw = ImageDraw.Draw(image)
    outline = (0, 0, 0) if index % 2 else None
    for _ in range(int(rng.integers(1, 5))):
        colour = list(OTHER_STYLE_COLORS.values())[int(rng.integers(len(OTHER_STYLE_COLORS)))]
        r = rng.uniform(0.08, 0.2) * min(width, height)
        x, y = rng.uniform(r, width - r), rng.uniform(r, height - r)
        kind = int(rng.integers(3))
        if kind == 0:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour, outline=outline, width=2)
        elif kind == 1:
            draw.rectangle((x - r, y - r, x + r, y + r), fill=colour, outline=outline, width=2)
        else:
            draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=colour, outline=outline)
    return image


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "weights" / "shapes-vlp"), help="model folder (default: weights/shapes-vlp)")
    parser.add_argument("--quantize", default="int8", choices=["none", "int8"], help="weights to answer with (default int8, as the app)")
    parser.add_argument("--test-scenes", type=int, default=300, help="generated test scenes for the in-domain rate (default 300)")
    parser.add_argument("--phrasing-scenes", type=int, default=300, help="unseen_phrasing scenes (default 300)")
    parser.add_argument("--other-style", type=int, default=200, help="scenes drawn by the other routine (default 200)")
    parser.add_argument("--oow-scenes", type=int, default=10, help="test scenes each out-of-world question is asked about (default 10)")
    args = parser.parse_args(argv)

    import vqa
    from vqa.data.splits import make_example

    model = vqa.load(args.model, quantize=None if args.quantize == "none" else args.quantize)
    image_size = model.config.image_size

    photos = photographs()
    photo_verdicts = [model.ask(image, PHOTO_QUESTIONS[(2 * i + k) % len(PHOTO_QUESTIONS)]).in_domain
                      for i, image in enumerate(photos.values()) for k in range(2)]
    # words it knows, so that the picture check alone decides
    photo_alone = [model.ask(image, "what color is the circle?").in_domain for image in photos.values()]
    oow = [model.ask(make_example("test", i, image_size).image, q).in_domain for q in OUT_OF_WORLD_QUESTIONS for i in range(args.oow_scenes)]
    test = [model.ask(ex.image, q.text).in_domain for ex in (make_example("test", i, image_size) for i in range(args.test_scenes)) for q in ex.questions]
    phrasing = [model.ask(ex.image, q.text).in_domain for ex in (make_example("unseen_phrasing", i, image_size) for i in range(args.phrasing_scenes))
                for q in ex.questions]
    style = [model.ask(other_style_scene(i), "what color is the circle?").in_domain for i in range(args.other_style)]
    missed = [f"{name}: {q}" for (name, image), k in ((item, k) for item in photos.items() for k in range(2))
              for q in [PHOTO_QUESTIONS[(2 * list(photos).index(name) + k) % len(PHOTO_QUESTIONS)]] if model.ask(image, q).in_domain]
    oow_missed = sorted({q for q in OUT_OF_WORLD_QUESTIONS if model.ask(make_example("test", 0, image_size).image, q).in_domain})

    rows = [
        ("real photographs, natural questions", len(photo_verdicts), float(np.mean(photo_verdicts)), "<= 0.10"),
        ("real photographs, a shapes question", len(photo_alone), float(np.mean(photo_alone)), ""),
        ("out-of-world questions, test scenes", len(oow), float(np.mean(oow)), "<= 0.20"),
        ("generated test questions", len(test), float(np.mean(test)), ">= 0.98"),
        ("unseen_phrasing questions", len(phrasing), float(np.mean(phrasing)), ">= 0.95"),
        ("flat shapes drawn in another style", len(style), float(np.mean(style)), ">= 0.95"),
    ]
    print(f"in-domain rate · {Path(args.model).name} ({args.quantize}) · {len(photos)} photographs")
    print(f"{'set':<40} {'n':>6} {'in domain':>10} {'target':>9}")
    for name, n, rate, target in rows:
        print(f"{name:<40} {n:>6} {rate:>10.3f} {target:>9}")
    if missed:
        print("photographs judged in domain:", "; ".join(missed))
    if oow_missed:
        print("out-of-world questions judged in domain:", "; ".join(oow_missed))
    result = {"benchmark": "domain_check", "model": Path(args.model).name, "quantize": args.quantize, "photographs": sorted(photos),
              **{name: {"n": n, "in_domain_rate": round(rate, 4)} for name, n, rate, _ in rows}}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
