"""Tiny random hub-style checkpoints, written to a folder with `save_pretrained`.

Each builder writes what a real hub repository holds (config.json, safetensors
weights, tokenizer files, an image processor config) so the tests load it
through the real `load_hub_backbone` path, offline. Tokenizers are built from
vocabularies written here: nothing is downloaded.

Sizes follow the transformers test suite: hidden 32, 2 layers, 30 px images.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from tokenizers.pre_tokenizers import ByteLevel
from transformers import (
    BertTokenizer,
    BlipConfig,
    BlipForConditionalGeneration,
    BlipForImageTextRetrieval,
    BlipForQuestionAnswering,
    BlipImageProcessorPil,
    BlipProcessor,
    CLIPConfig,
    CLIPImageProcessorPil,
    CLIPModel,
    CLIPProcessor,
    CLIPTokenizer,
    GPT2Config,
    GPT2Tokenizer,
    ViltConfig,
    ViltForQuestionAnswering,
    ViltImageProcessorPil,
    ViltProcessor,
    VisionEncoderDecoderConfig,
    VisionEncoderDecoderModel,
    ViTConfig,
    ViTImageProcessorPil,
)

WORDS = (
    "what is the color of shape there how many are a an in on picture photo image this "
    "red blue green yellow white black circle square triangle star small large yes no 0 1 2 3 4 5 ? ."
).split()
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
ANSWERS = ["yes", "no", "red", "blue", "green", "circle", "square", "2", "3"]

# Shared by every tiny model: sizes the transformers tests use for BLIP / ViLT / CLIP.
TINY = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)
IMAGE_SIZE, PATCH_SIZE = 30, 2


def write_bert_vocab(folder: Path, words: list[str] | tuple[str, ...] = WORDS, size: int | None = None) -> Path:
    """A WordPiece vocab.txt: specials, the words, then filler entries up to `size`."""
    entries = BERT_SPECIALS + [w for w in words if w not in BERT_SPECIALS]
    if size is not None:
        entries += [f"[unused{i}]" for i in range(size - len(entries))]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "vocab.txt"
    path.write_text("\n".join(entries) + "\n")
    return path


def bert_tokenizer(folder: Path, with_decoder_bos: bool = False, size: int | None = None) -> BertTokenizer:
    """A BERT WordPiece tokenizer; BLIP adds a [DEC] token that starts the decoder."""
    tokenizer = BertTokenizer(vocab=str(write_bert_vocab(folder, size=size)))
    if with_decoder_bos:
        tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    return tokenizer


def _byte_level_vocab(suffix: str = "") -> tuple[dict[str, int], list[str]]:
    """The 256 byte symbols (GPT-2 / CLIP alphabet), plus merges that spell a few words."""
    alphabet = sorted(ByteLevel.alphabet())
    vocab: dict[str, int] = {}
    for symbol in alphabet:
        vocab[symbol] = len(vocab)
    if suffix:
        for symbol in alphabet:
            vocab[symbol + suffix] = len(vocab)
    merges = []
    for word in ("red", "blue", "circle", "square", "the", "photo"):
        prefix = word[0]
        for i, ch in enumerate(word[1:], start=1):
            last = i == len(word) - 1
            right = ch + suffix if last else ch
            merges.append(f"{prefix} {right}")
            prefix = prefix + right
            vocab.setdefault(prefix, len(vocab))
    return vocab, merges


def gpt2_tokenizer(folder: Path) -> GPT2Tokenizer:
    """A byte-level BPE tokenizer (GPT-2 style) from a locally written vocab and merges."""
    vocab, merges = _byte_level_vocab()
    vocab["<|endoftext|>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = GPT2Tokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))
    tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def clip_tokenizer(folder: Path) -> CLIPTokenizer:
    """CLIP's BPE (end-of-word `</w>` symbols) from a locally written vocab and merges."""
    vocab, merges = _byte_level_vocab(suffix="</w>")
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return CLIPTokenizer(vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"))


def _blip_config(tokenizer, hidden: int = 32, **vision) -> BlipConfig:
    sizes = dict(TINY, hidden_size=hidden, intermediate_size=hidden + 5)
    text = dict(
        sizes, vocab_size=len(tokenizer), max_position_embeddings=64, bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id, sep_token_id=tokenizer.sep_token_id, eos_token_id=tokenizer.sep_token_id,
    )
    vision_config = dict(sizes, image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, **vision)
    return BlipConfig(text_config=text, vision_config=vision_config, image_text_hidden_size=16, projection_dim=16)


def make_blip(folder: Path, task: str = "vqa", hidden: int = 32, seed: int = 0) -> Path:
    """Tiny BLIP: task "vqa" (BlipForQuestionAnswering), "caption" or "itm"."""
    folder = Path(folder)
    tokenizer = bert_tokenizer(folder / "_vocab", with_decoder_bos=True)
    config = _blip_config(tokenizer, hidden=hidden)
    model_class = {"vqa": BlipForQuestionAnswering, "caption": BlipForConditionalGeneration,
                   "itm": BlipForImageTextRetrieval}[task]
    torch.manual_seed(seed)
    model = model_class(config).eval()
    model.save_pretrained(folder)
    processor = BlipProcessor(image_processor=BlipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
                              tokenizer=tokenizer)
    processor.save_pretrained(folder)
    return folder


def make_vilt(folder: Path, seed: int = 0, hidden: int = 32) -> Path:
    """Tiny ViLT VQA classifier over ANSWERS; images resized to a 30 px short side, so the grid varies."""
    folder = Path(folder)
    tokenizer = bert_tokenizer(folder / "_vocab")
    config = ViltConfig(
        **dict(TINY, hidden_size=hidden, intermediate_size=hidden + 5), vocab_size=len(tokenizer),
        max_position_embeddings=40, image_size=IMAGE_SIZE, patch_size=PATCH_SIZE,
        id2label=dict(enumerate(ANSWERS)), label2id={a: i for i, a in enumerate(ANSWERS)},
        architectures=["ViltForQuestionAnswering"],
    )
    torch.manual_seed(seed)
    model = ViltForQuestionAnswering(config).eval()
    model.save_pretrained(folder)
    # size_divisor = patch size: the default 32 would round a 30 px side down to nothing.
    image_processor = ViltImageProcessorPil(size={"shortest_edge": IMAGE_SIZE}, size_divisor=PATCH_SIZE)
    ViltProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def make_vision_encoder_decoder(folder: Path, seed: int = 0) -> Path:
    """Tiny ViT encoder + GPT-2 decoder with cross-attention (the nlpconnect/vit-gpt2 layout)."""
    folder = Path(folder)
    tokenizer = gpt2_tokenizer(folder / "_vocab")
    encoder = ViTConfig(**TINY, image_size=IMAGE_SIZE, patch_size=PATCH_SIZE)
    # GPT-2 pads with its end-of-text token, which is also the decoder's start token (as in nlpconnect's model).
    decoder = GPT2Config(
        vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=64, add_cross_attention=True,
        is_decoder=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id = tokenizer.bos_token_id
    config.pad_token_id = tokenizer.eos_token_id
    config.eos_token_id = tokenizer.eos_token_id
    torch.manual_seed(seed)
    model = VisionEncoderDecoderModel(config=config).eval()
    # Released captioners carry their own generation settings (nlpconnect's card uses max_length 16, 4 beams).
    model.generation_config.max_length = 16
    model.generation_config.num_beams = 4
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    ViTImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(folder)
    return folder


def make_clip(folder: Path, seed: int = 0, hidden: int = 32) -> Path:
    """Tiny CLIP dual encoder; hidden=64 gives layers that nf4's CPU kernel packs."""
    folder = Path(folder)
    tokenizer = clip_tokenizer(folder / "_vocab")
    sizes = dict(TINY, hidden_size=hidden, intermediate_size=2 * hidden)
    config = CLIPConfig(
        text_config=dict(sizes, vocab_size=len(tokenizer), max_position_embeddings=77,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(sizes, image_size=IMAGE_SIZE, patch_size=PATCH_SIZE),
        projection_dim=16,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    model.save_pretrained(folder)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE},
                                            crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def make_pickle_only(folder: Path) -> Path:
    """A folder that holds only `pytorch_model.bin` (pickle) weights next to a valid BLIP config."""
    folder = Path(folder)
    config = _blip_config(bert_tokenizer(folder / "_vocab", with_decoder_bos=True))
    config.architectures = ["BlipForQuestionAnswering"]
    config.save_pretrained(folder)
    torch.save({}, folder / "pytorch_model.bin")
    return folder


def put_in_hf_cache(checkpoint: Path, cache: Path, repo_id: str, commit: str = "0" * 40) -> Path:
    """Copy a checkpoint folder into a Hugging Face hub cache as `repo_id` (the layout `hf download` writes:
    models--owner--name/snapshots/<commit>/... and refs/main holding the commit). Returns the snapshot folder."""
    repo = Path(cache) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    shutil.copytree(checkpoint, snapshot, ignore=shutil.ignore_patterns("_vocab"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot
