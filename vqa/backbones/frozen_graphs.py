"""TorchScript graphs of the embedded model's two hot paths: encoding an image, and fusing a
question with it for the answer heads.

Why: one answer on a 96 px image runs a few hundred small operators, and on a CPU the Python
around each call (module calls, argument checks, dispatch) costs about as much as the operator
itself. A traced graph records the operators once and runs them without Python; freezing inlines
the weights and folds each BatchNorm into the convolution before it. Measured with
`python bench/bench_model.py --scenes 20 --latency-images 20 --repeats 6 --schemes none int8 --eager`
(2 threads; p50 of one classifier answer on a new image, preprocessing included):

| scheme | eager | graphs |
|---|---|---|
| fp32 | 12.1 ms | 10.2 ms |
| int8 | 8.3 ms | 5.5 ms |

int8 gains more: its operators are faster, so the Python around them was a larger share. The int8
outputs are identical; fp32 ones differ by at most 3e-7, from the folded BatchNorm's rounding.

`torch.jit.trace` and `torch.jit.freeze` are deprecated in favour of `torch.compile`, but here
`torch.compile` (inductor, dynamic shapes) took 28 s to compile the fusion path and then ran the int8
model slower than eager (4.8 against 3.1 ms): its graph breaks around the quantized operators.
So this module uses them while the pinned PyTorch has them. If tracing fails (a PyTorch without
TorchScript, a model it cannot trace), `build` returns None and the backbone runs the eager model,
which gives the same answers.

The model names its own hot paths (`ShapesVLPForVQA.traceable_paths`). Only the paths without attention
weights are traced. `explain()`, generation and training run the
eager model.
"""

from __future__ import annotations

import logging
import warnings

import torch
from PIL import Image

from vqa.model import ShapesVLPForVQA
from vqa.model.processing import ShapesVLPProcessor

logger = logging.getLogger(__name__)


class FrozenGraphs:
    """`encode_image(pixels)` -> image embeddings; `answer(input_ids, attention_mask, image_embeds)` ->
    (answer logits, fused text states), or None for an architecture without a classifier head; its text embedding
    runs eagerly before the graph (a pretrained text encoder cannot be traced here). Shapes
    follow the inputs: the traced operators read the batch size and question length from them, so one
    trace serves every question length."""

    def __init__(self, model: ShapesVLPForVQA, processor: ShapesVLPProcessor):
        side = processor.config.image_size
        pixels = processor.images([Image.new("RGB", (side, side), "white")])  # (1, C, S, S)
        question = processor.text(["what color is the circle left of the square?"])
        paths = model.traceable_paths()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # trace/freeze: see the module docstring
            # The image-size check in VisionTransformer.forward becomes a constant of the graph. The
            # processor resizes every image to that size, so the graph never sees another one.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            image_embeds = model.encode_image(pixels)[0]
            self.encode_image = torch.jit.freeze(torch.jit.trace(paths["encode_image"].eval(), (pixels,), check_trace=False))
            self.answer = None
            if "answer" in paths:
                fuse = torch.jit.freeze(torch.jit.trace(
                    paths["answer"].eval(), (model.embed_text(question["input_ids"]), question["attention_mask"], image_embeds),
                    check_trace=False,
                ))
                self.answer = lambda input_ids, attention_mask, image_embeds: fuse(model.embed_text(input_ids), attention_mask, image_embeds)


def build(model: ShapesVLPForVQA, processor: ShapesVLPProcessor) -> FrozenGraphs | None:
    """Graphs of `model` (fp32 or PyTorch int8), or None where tracing is not possible here."""
    try:
        return FrozenGraphs(model, processor)
    except Exception as exc:  # the eager model gives the same results, only slower
        logger.warning("Running the eager model: tracing failed (%s: %s)", type(exc).__name__, exc)
        return None
