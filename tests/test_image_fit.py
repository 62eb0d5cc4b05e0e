"""Pictures of any shape in a square input (vqa/image_fit.py): a letterboxing model sees a circle on an elongated
picture as a circle, learns from training pages laid out exactly where its processor puts their pixels, and draws
its attention over the picture alone."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image, ImageDraw

import vqa
from vqa.data.scenes import RADIUS_RANGE, page_size, render, render_object_map
from vqa.data.splits import make_example
from vqa.data.style_augmentation import vary_style
from vqa.model import ShapesVLPConfig
from vqa.model.processing import ShapesVLPProcessor
from vqa.tokenizer import PACKAGE_TOKENIZER_DIR, load_tokenizer


def _processor(fit: str) -> ShapesVLPProcessor:
    return ShapesVLPProcessor.for_config(ShapesVLPConfig(image_size=96, image_fit=fit), load_tokenizer(PACKAGE_TOKENIZER_DIR))


def _circle_picture() -> Image.Image:
    """A black circle, 60 px across, on a white picture twice as wide as high."""
    picture = Image.new("RGB", (240, 120), (255, 255, 255))
    ImageDraw.Draw(picture).ellipse((90, 30, 150, 90), fill=(0, 0, 0))
    return picture


def _dark_extent(pixels) -> tuple[int, int]:
    """(width, height) in pixels of the dark blob in one normalised (3, S, S) input."""
    dark = pixels.mean(0).numpy() < -1.0  # (S, S): black is -2 after normalising, the mean fill 0, white +2
    rows, cols = np.flatnonzero(dark.any(1)), np.flatnonzero(dark.any(0))
    return cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1


def test_a_letterboxed_circle_stays_round_and_a_squashed_one_does_not():
    letterboxed = _processor("letterbox").images([_circle_picture()])[0]
    squashed = _processor("squash").images([_circle_picture()])[0]
    width, height = _dark_extent(letterboxed)
    assert abs(width - height) <= 1 and 22 <= width <= 26  # 60 px of 240 -> 24 of 96
    width, height = _dark_extent(squashed)
    assert height > 1.8 * width  # squeezed sideways into an upright ellipse
    # the bands above and below the picture are the fill, zero after normalising; the picture is white
    assert float(letterboxed[:, :20].abs().max()) < 0.05 and float(letterboxed[:, 30:60, 5].min()) > 1.9


def test_a_square_picture_is_the_same_input_either_way():
    picture = make_example("test", 0).image
    assert np.array_equal(_processor("letterbox").images([picture]).numpy(), _processor("squash").images([picture]).numpy())


def _elongated_examples(count: int):
    for index in range(count):
        example = make_example("train", index, restyled_share=1.0, elongated_share=1.0)
        yield example


def test_elongated_training_pages_keep_every_answer_and_every_shape_on_the_page():
    aspects = []
    for example in _elongated_examples(30):
        scene, picture = example.scene, example.image
        aspects.append(scene.aspect)
        assert picture.size == page_size(scene, 96) and max(picture.size) == 96
        short = min(picture.size)
        for k, obj in enumerate(scene.objects, start=1):
            # sizes are named by the shorter side: a large shape on a long page is still large
            low, high = RADIUS_RANGE[obj.size]
            assert low - 1e-9 <= obj.radius <= high + 1e-9
            drawn = render_object_map(scene, 96) == k
            assert drawn.sum() > 0.5 * np.pi * (obj.radius * short) ** 2  # whole on the page, not cut off
    assert min(aspects) < 0.7 and max(aspects) > 1.4  # tall and wide pages both


def test_the_object_map_of_an_elongated_page_lies_where_the_processor_puts_its_pixels():
    """Patch and grounding targets come from the object map: it must cover the objects the model is shown."""
    processor = _processor("letterbox")
    for example in _elongated_examples(12):
        scene = example.scene
        flat = type(scene)(**{**scene.__dict__, "smooth": False, "outline": "none"})  # exact edges to compare
        pixels = processor.images([render(flat, 96)])[0]  # (3, 96, 96)
        page_colour = (np.asarray(flat.background, dtype=np.float32) / 255 - 0.5) / 0.25
        drawn = np.abs(pixels.numpy() - page_colour[:, None, None]).max(0) > 0.2  # (96, 96): not the page...
        drawn &= pixels.abs().max(0).values.numpy() > 0.02  # ...and not the filled bands either (128 of 255: 0.008)
        target = render_object_map(flat, 96) > 0
        assert (drawn & target).sum() / (drawn | target).sum() > 0.9


def test_training_refuses_elongated_pages_for_a_model_that_squashes(tmp_path):
    from vqa.training import preset, train

    smoke = preset("smoke")
    squashing = preset("smoke", elongated_share=0.5, model={**smoke.model, "image_fit": "squash"})
    with pytest.raises(ValueError, match="letterbox"):
        train(squashing, tmp_path / "refused", progress=False)


def test_attention_of_a_letterboxed_picture_is_drawn_over_the_picture_alone(tiny_model_dir, tmp_path):
    folder = tmp_path / "letterboxing"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "image_fit": "letterbox"}))
    model = vqa.load(folder)
    grid = model.config.image_size // model.config.patch_size
    wide = model.explain(_circle_picture(), "what shape is it?")
    gh, gw = wide.cross.shape[-2:]
    assert gw == 4 * grid and abs(gw / gh - 2) < 0.15  # the picture's own proportions, bands dropped
    square = model.explain(make_example("test", 0).image, "what shape is it?")
    assert square.cross.shape[-2:] == (grid, grid)
    assert model.ask(_circle_picture(), "what shape is it?").classifier.answer  # and it answers
    # the picture check reads the picture's own patches: grey bands look alike whatever the picture shows
    assert model.patch_states(_circle_picture()).shape[0] == grid * grid // 2
    assert model.patch_states(make_example("test", 0).image).shape[0] == grid * grid
