"""Could the sentence encoder tell a question the model can answer from one outside its world? The probe run
before the question check on sentence embeddings was built (`vqa/domain.py` now has it, with its threshold
calibrated on generated validation questions).

    python bench/question_domain_probe.py

The model's question check (`vqa/domain.py`) marks a question as outside what the model learned when it uses a
word no training question used. With questions read by all-MiniLM-L6-v2, most such words are understood: the
shipped model answers 97.7 % of the `unseen_phrasing` questions right, yet the check marks 27 % of them. This
probe embeds the questions of 1,000 generated training scenes (re-worded ones included, as training draws them)
and prints, for generated test questions, `unseen_phrasing` questions and the out-of-world questions of
`bench/domain_check.py`, percentiles of each question's cosine similarity to its nearest training question, then
the out-of-world questions that come closest.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench.domain_check import OUT_OF_WORLD_QUESTIONS  # noqa: E402
from bench.minilm_wording_probe import sentence_embeddings  # noqa: E402
from vqa.data.splits import make_example  # noqa: E402

TRAIN_SCENES = 1000
HELD_OUT_SCENES = 300
PERCENTILES = (0, 1, 5, 25, 50)


def questions(split: str, scenes: int, **kwargs) -> list[str]:
    return sorted({q.text for i in range(scenes) for q in make_example(split, i, image_size=32, **kwargs).questions})


def main() -> None:
    train = sentence_embeddings(questions("train", TRAIN_SCENES, reworded_share=0.5))  # (N, 384)
    sets = {
        "generated test questions": questions("test", HELD_OUT_SCENES),
        "unseen_phrasing questions": questions("unseen_phrasing", HELD_OUT_SCENES),
        "out-of-world questions": list(OUT_OF_WORLD_QUESTIONS),
    }
    print(f"cosine to the nearest of {train.shape[0]} training questions; percentiles {PERCENTILES}")
    nearest = {}
    for name, texts in sets.items():
        nearest[name] = (sentence_embeddings(texts) @ train.T).max(1).values.numpy()  # (len(texts),)
        print(f"{name:28s} n={len(texts):5d}  " + "  ".join(f"{v:.3f}" for v in np.percentile(nearest[name], PERCENTILES)))
    print("out-of-world questions closest to a training question:")
    ranked = sorted(zip(nearest["out-of-world questions"], OUT_OF_WORLD_QUESTIONS), reverse=True)
    for similarity, text in ranked[:8]:
        print(f"  {similarity:.3f}  {text}")
    for threshold in (0.75, 0.80, 0.85):
        shares = {name: float((values >= threshold).mean()) for name, values in nearest.items()}
        print(f"at or above {threshold:.2f}: " + ", ".join(f"{name} {share:.3f}" for name, share in shares.items()))


if __name__ == "__main__":
    main()
