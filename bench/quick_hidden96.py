"""The quick recipe at the zoo's width (hidden 96) from a vision tower made at that width, for a 5-minute budget:

    python bench/quick_hidden96.py OUT [TOWER_STEPS] [MODEL_NAME]

makes OUT/tower (the quick recipe's perception phase at that width, TOWER_STEPS steps, default 2000) unless it is
there, then trains OUT/MODEL_NAME (default "model") on the clock; evaluate it with
`python -m vqa evaluate --model OUT/MODEL_NAME --split test --num-scenes 300 --quantize none --json`.
The figures are in bench/results/quick_preset_history.md.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from vqa.model import ShapesVLPForVQA
from vqa.training import preset, train
from vqa.training.vision_tower import save_vision_tower

WIDTH = {"hidden_size": 96, "num_attention_heads": 4, "intermediate_size": 384}  # the zoo's (vqa.zoo.members.ZOO_SIZES)
MINUTES = 5.0
STEP_CEILING = 3200  # far above what fits, so that the clock ends the run


def main() -> int:
    out = Path(sys.argv[1])
    tower_steps = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    model_name = sys.argv[3] if len(sys.argv) > 3 else "model"
    out.mkdir(parents=True, exist_ok=True)
    scratch = preset("quick-scratch")
    sizes = {**scratch.model, **WIDTH}
    if not (out / "tower" / "vision_tower.safetensors").exists():
        perception = replace(scratch, steps=0, vision_warmup_steps=tower_steps, vision_init=None, model=sizes)
        summary = train(perception, out / "tower_model", save_dtype=torch.float32, progress=False)
        record = json.loads((out / "tower_model" / "train_log.jsonl").read_text().splitlines()[-1])
        print("tower", json.dumps({**summary, "val_patch_accuracy": record["val_patch_accuracy"]}), flush=True)
        save_vision_tower(ShapesVLPForVQA.from_pretrained(out / "tower_model"), out / "tower",
                          {"perception_steps": tower_steps, "val_patch_accuracy": record["val_patch_accuracy"]})
    recipe = replace(preset("quick"), model=sizes, vision_init=str(out / "tower"), minutes=MINUTES, steps=STEP_CEILING,
                     eval_every=STEP_CEILING // 4)
    print("train", json.dumps(train(recipe, out / model_name, progress=False)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
