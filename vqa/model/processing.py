"""Turning images and text into model inputs, and token ids back into text.

Images go through transformers' BLIP image processor (resize, rescale, normalise;
its Pillow backend, as torchvision has no CPU build here). Large uploads are first
shrunk with Pillow's `reducing_gap` resize: measured on this CPU, a 1024×768 photo
took 16 ms through the processor alone and 0.5 ms once pre-shrunk.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from transformers import BertTokenizerFast
from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

from vqa.image_fit import fit_picture
from vqa.model.configuration import ShapesVLPConfig


class ShapesVLPProcessor:
    """`tokenizer` writes and reads the decoder's tokens; `text_tokenizer` splits the texts the text towers read
    (questions, captions): the same tokenizer, unless the config names a pretrained text encoder, whose own
    tokenizer is then used (vqa/model/pretrained_text.py)."""

    def __init__(self, image_processor: BlipImageProcessorPil, tokenizer: BertTokenizerFast, config: ShapesVLPConfig):
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.config = config
        self.text_tokenizer = tokenizer
        if config.text_encoder is not None:
            from vqa.model.pretrained_text import load_pretrained_text_tokenizer

            self.text_tokenizer = load_pretrained_text_tokenizer(config.text_encoder)

    @classmethod
    def for_config(cls, config: ShapesVLPConfig, tokenizer: BertTokenizerFast) -> "ShapesVLPProcessor":
        image_processor = BlipImageProcessorPil(
            size={"height": config.image_size, "width": config.image_size},
            image_mean=config.image_mean,
            image_std=config.image_std,
            do_convert_rgb=True,
        )
        return cls(image_processor, tokenizer, config)

    @classmethod
    def from_pretrained(cls, path: str | Path, config: ShapesVLPConfig) -> "ShapesVLPProcessor":
        return cls(BlipImageProcessorPil.from_pretrained(str(path)), BertTokenizerFast.from_pretrained(str(path)), config)

    def save_pretrained(self, path: str | Path) -> None:
        self.image_processor.save_pretrained(str(path))
        self.tokenizer.save_pretrained(str(path))

    def images(self, images: list[Image.Image]) -> torch.Tensor:
        """RGB PIL images of any size -> (B, 3, image_size, image_size) normalised pixels, squashed or letterboxed
        as the config says (vqa/image_fit.py)."""
        side, fit = self.config.image_size, self.config.image_fit
        fill = tuple(round(255 * m) for m in self.config.image_mean)  # the mean: zero after normalising
        fitted = [fit_picture(im, side, fit, fill) for im in images]
        return self.image_processor(fitted, return_tensors="pt")["pixel_values"]

    def text(self, texts: list[str], prefix: str = "") -> dict[str, torch.Tensor]:
        """Tokenize with [CLS] … [SEP], padded to the longest, truncated to max_text_length."""
        batch = self.text_tokenizer(
            [prefix + t for t in texts], padding=True, truncation=True, max_length=self.config.max_text_length,
            return_tensors="pt", return_token_type_ids=False,
        )
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def decoder_targets(self, texts: list[str], start_token_id: int) -> dict[str, torch.Tensor]:
        """'[ANS] red [SEP]'-style decoder inputs; labels are the ids with padding set to -100."""
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.config.max_text_length - 1,
            add_special_tokens=False, return_tensors="pt", return_token_type_ids=False,
        )
        ids = batch["input_ids"]  # (B, T)
        B = ids.shape[0]
        start = torch.full((B, 1), start_token_id, dtype=ids.dtype)
        lengths = batch["attention_mask"].sum(1)  # (B,)
        sep = torch.full((B, 1), self.config.pad_token_id, dtype=ids.dtype)
        ids = torch.cat([start, ids, sep], dim=1)  # (B, T+2)
        ids[torch.arange(B), lengths + 1] = self.config.sep_token_id  # [SEP] right after each text
        mask = (torch.arange(ids.shape[1])[None] <= (lengths + 1)[:, None]).long()  # (B, T+2)
        labels = ids.masked_fill(mask == 0, -100)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def decode(self, ids: torch.Tensor) -> list[str]:
        return [t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]
