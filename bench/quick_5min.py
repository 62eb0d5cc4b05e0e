"""The quick preset for a 5-minute budget, from a vision tower made as the shipped one was:

    python bench/quick_5min.py OUT [TOWER_STEPS] [MODEL_NAME]

makes OUT/tower with `python -m vqa pretrain-vision --preset quick --steps TOWER_STEPS` (default 2000) unless it is
there, then trains OUT/MODEL_NAME (default "model") on the clock, with a step ceiling far above what fits and a
validation every quarter of the time; evaluate it with
`python -m vqa evaluate --model OUT/MODEL_NAME --split test --num-scenes 300 --quantize none --json`.
The figures are in bench/results/quick_preset_history.md.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from vqa import cli  # noqa: E402
from vqa.training import preset, train  # noqa: E402

MINUTES = 5.0
STEP_CEILING = 3200  # far above what fits, so that the clock ends the run


def main() -> int:
    out = Path(sys.argv[1])
    tower_steps = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    model_name = sys.argv[3] if len(sys.argv) > 3 else "model"
    tower = out / "tower"
    if not (tower / "vision_tower.safetensors").exists():
        cli.main(["pretrain-vision", "--preset", "quick", "--steps", str(tower_steps), "--out", str(tower), "--no-progress"])
    recipe = replace(preset("quick"), vision_init=str(tower), minutes=MINUTES, steps=STEP_CEILING, eval_every=STEP_CEILING // 4)
    print("train", json.dumps(train(recipe, out / model_name, progress=False)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
