"""ViLT: one transformer over the concatenation of word tokens and image patches
(single-stream early fusion), with a classifier over a fixed answer vocabulary.

- Answers: ViLT's VQA head was trained with binary cross-entropy against soft VQA
  scores, so each answer gets an independent sigmoid score. They are reported as they
  are: they do not sum to 1, and several answers can score high at once.
- Cached image encoding: the patch embeddings (with position and [CLS] added, the output
  of `ViltEmbeddings.visual_embed`) are computed once per image and passed back as
  `image_embeds`; the transformer itself must run per question, since text and patches
  attend to each other from the first layer.
- Attention: ViLT has no cross-attention. Its self-attention is one square over
  text + image tokens; the text-rows × patch-columns block is cut out and each patch
  column placed on the grid by ViLT's patch index. ViLT resizes images keeping their
  aspect ratio, so the grid comes from the embeddings output, not from the config.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import ViltForQuestionAnswering

from vqa.backbones.hub.common import HubBackbone, clean_texts, normalise_rows, seeded, stack_layers
from vqa.errors import InputError
from vqa.results import Answer, AttentionMaps


@dataclass
class ViltImageEncoding:
    embeds: torch.Tensor  # (1, 1 + n_patches, D): image [CLS] + patches, position embeddings added
    mask: torch.Tensor  # (1, 1 + n_patches): 1 for real patches, 0 for padding
    patch_index: torch.Tensor  # (1, n_patches, 2): (row, col) of each patch on the grid
    grid: tuple[int, int]  # (rows, cols) of the patch grid of this image


class ViltVqaBackbone(HubBackbone):
    family = "vilt"
    fusion = "single-stream early fusion (ViLT)"
    capabilities = frozenset({"classifier", "explain"})
    model_class = ViltForQuestionAnswering
    description = ("ViLT: words and image patches go through one transformer together from the first layer; a "
                   "classifier picks from a fixed list of answers.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.labels = [self.config.id2label[i] for i in range(len(self.config.id2label))]
        self.notes.append(
            f"Scores are independent sigmoid probabilities over {len(self.labels)} fixed answers (ViLT was trained "
            "with binary cross-entropy on soft VQA targets): they do not sum to 1.")
        self.notes.append("No generative head: ViLT can only pick answers from its fixed vocabulary.")

    @torch.inference_mode()
    def _encode_image(self, image) -> ViltImageEncoding:
        inputs = self.image_processor(images=image, return_tensors="pt")
        embeddings = self.model.vilt.embeddings
        with seeded(0):  # past max_image_length ViLT samples patches at random: keep the choice reproducible
            embeds, mask, (patch_index, grid) = embeddings.visual_embed(
                inputs["pixel_values"], inputs["pixel_mask"], max_image_length=self.config.max_image_length)
        return ViltImageEncoding(embeds, mask, patch_index, (int(grid[0]), int(grid[1])))

    def _forward(self, image, question: str, output_attentions: bool = False):
        encoding = self.encode_image(image)
        text = self.tokenize(question, self.config.max_position_embeddings)
        out = self.model(**text, image_embeds=encoding.embeds, pixel_mask=encoding.mask,
                         output_attentions=output_attentions)
        return text, encoding, out

    @torch.inference_mode()
    def _classify(self, image, question, top_k, candidates) -> Answer:
        _, _, out = self._forward(image, question)
        probs = torch.sigmoid(out.logits[0].float())  # (num_labels,)
        index = list(range(len(self.labels)))
        if candidates:
            wanted = {c.lower() for c in clean_texts(candidates)}
            index = [i for i, label in enumerate(self.labels) if label.lower() in wanted]
            if not index:
                raise InputError(f"None of the candidates is in ViLT's answer vocabulary of {len(self.labels)} "
                                 "answers; leave candidates empty to use the whole vocabulary.")
        chosen = sorted(index, key=lambda i: float(probs[i]), reverse=True)[:top_k]
        pairs = [(self.labels[i], float(probs[i])) for i in chosen]
        return Answer(answer=pairs[0][0], score=pairs[0][1], candidates=pairs, head="classifier")

    @torch.inference_mode()
    def _explain(self, image, question, answer) -> AttentionMaps:
        text, encoding, out = self._forward(image, question, output_attentions=True)
        n_text = text["input_ids"].shape[1]
        attn = stack_layers(out.attentions).float()  # (layers, heads, text + 1 + patches, same)
        block = attn[:, :, :n_text, n_text + 1:]  # text rows × patch columns (image [CLS] dropped)
        gh, gw = encoding.grid
        real = encoding.mask[0, 1:].bool()  # padding patches carry no image
        rows, cols = encoding.patch_index[0, real, 0], encoding.patch_index[0, real, 1]
        grid = torch.zeros(*block.shape[:3], gh * gw)
        grid.index_add_(-1, rows * gw + cols, block[..., real])
        cross = normalise_rows(grid.reshape(*block.shape[:3], gh, gw).numpy())
        return self.attention_maps(
            cross, self.token_strings(text["input_ids"][0]), image, "self-attention text→image block",
            "ViLT has no cross-attention: these are the question-token rows × image-patch columns of its joint "
            "self-attention, renormalised over the patches.",
            text_self=attn[:, :, :n_text, :n_text].numpy(), answer=answer,
            extra={"grid_from": "ViLT embeddings (the image is resized keeping its aspect ratio)"},
        )

    def facts(self) -> dict[str, str]:
        c = self.config
        return {
            "transformer": f"{c.num_hidden_layers} layers, hidden {c.hidden_size}, {c.num_attention_heads} heads, "
                           "over text tokens and image patches together",
            "patch size": f"{c.patch_size} px (grid depends on the image's aspect ratio; "
                          f"{c.image_size // c.patch_size} × {c.image_size // c.patch_size} for a square "
                          f"{c.image_size} px image)",
            "answers": f"{len(self.labels)} fixed answers, sigmoid scores",
            "max question length": f"{c.max_position_embeddings} tokens",
        }
