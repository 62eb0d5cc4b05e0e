"""BLIP ITM re-ranking at base size: many candidate texts scored against one picture, on CPU.

The checkpoint is `BlipForImageTextRetrieval(BlipConfig())` (BLIP-base sizes, random weights), built and
loaded as bench_hub_blip.py does. Re-ranking reads every candidate text with the picture through the
text encoder's 12 cross-attention layers. Timed, median of --runs, caches cleared before each run:
  (a) the backbone's ITM (`_match`, what `search` and the classifier head call): the picture's
      cross-attention keys and values projected once and shared by every text;
  (b) the same text encoder given the picture's encoding for each text, projecting its keys and values
      again per text (what the backbone did before);
and the largest difference between their match probabilities.

    python bench/bench_hub_blip_itm.py [--candidates 30] [--runs 3] [--threads N]

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import torch  # noqa: E402
from transformers import BlipForImageTextRetrieval  # noqa: E402

from bench.bench_hub_blip import build_checkpoint, scene, timed  # noqa: E402
from vqa.backbones.hub import load_hub_backbone  # noqa: E402

COLOURS = ("red", "blue", "green", "yellow", "black", "white")
SHAPES = ("circle", "square", "triangle", "star", "ellipse")


def recompute_per_text(backbone, image, texts: list[str]) -> torch.Tensor:
    """(n,) match probabilities with the picture's keys and values projected again for every text."""
    image_embeds = backbone.encode_image(image)  # (1, 1+N, D), from the cache after the first call
    enc = backbone.tokenize(texts, backbone.max_text_length)
    states = image_embeds.expand(len(texts), -1, -1)
    with torch.inference_mode():
        out = backbone.model.text_encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], encoder_hidden_states=states,
                                          encoder_attention_mask=torch.ones(states.shape[:-1], dtype=torch.long))
        return torch.softmax(backbone.model.itm_head(out.last_hidden_state[:, 0, :]).float(), dim=-1)[:, 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    texts = [f"a {size} {colour} {shape}" for size in ("small", "large") for colour in COLOURS for shape in SHAPES][: args.candidates]
    image = scene()
    with tempfile.TemporaryDirectory() as tmp:
        parameters = build_checkpoint(Path(tmp), BlipForImageTextRetrieval)
        backbone = load_hub_backbone(tmp)
        shared_ms, per_text_ms, difference = [], [], 0.0
        for _ in range(args.runs):
            backbone.clear_caches()
            backbone.encode_image(image)  # both sides start from the picture's encoding
            ms, shared = timed(lambda: backbone._match([image], texts)[0])
            shared_ms.append(ms)
            ms, per_text = timed(lambda: recompute_per_text(backbone, image, texts))
            per_text_ms.append(ms)
            difference = max(difference, float((torch.as_tensor(shared) - per_text).abs().max()))
    row = {"parameters": parameters, "candidates": len(texts), "threads": torch.get_num_threads(),
           "shared_keys_values_ms": round(statistics.median(shared_ms)), "per_text_keys_values_ms": round(statistics.median(per_text_ms)),
           "max_probability_difference": difference}
    print(f"BLIP ITM, {parameters / 1e6:.0f} M parameters, {len(texts)} candidate texts, {row['threads']} threads, median of {args.runs}")
    print(f"  keys and values shared:        {row['shared_keys_values_ms']:>7} ms")
    print(f"  keys and values per text:      {row['per_text_keys_values_ms']:>7} ms")
    print(f"  largest probability difference: {difference:.2e}")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
