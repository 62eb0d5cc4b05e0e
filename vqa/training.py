"""Training the embedded model on shapes-world data, with 🤗 accelerate.

`python -m vqa train --preset full --out weights/shapes-vlp` (or `accelerate launch -m vqa train …`
on one or several GPUs: unchanged). Every step draws fresh scenes from the train
split's seed stream, so the model never sees a sample twice and the held-out
splits stay unseen. One step optimises all of the model's objectives at once:

- VQA classifier: cross-entropy over the answer vocabulary on the fused [CLS];
- generative VQA: the decoder writes "[ANS] answer [SEP]" attending to the fused question;
- captioning: the decoder writes "[CAP] caption [SEP]" attending to the image;
- ITC: contrastive alignment of image [CLS] and unimodal caption [CLS] (CLIP/BLIP);
- ITM: match / no-match on fused (image, caption) pairs with hard negatives mined from ITC (BLIP);
- patch attributes: each image patch predicts the colour, shape and size of the object
  under it (or "none"), from the generator's ground-truth masks. This is the object-
  attribute objective of region-based VLP models (LXMERT, UNITER) on patches. Measured
  here: without it the first 250 steps stayed on the answer prior (val accuracy 0.30),
  because perception had to be learned through the answer alone;
- word-region alignment: in the fusion layer, the words of each object phrase (in a
  matching caption, and the phrase a question names its objects by) attend to those
  objects' patches: UNITER's WRA and GLIP's word-region grounding, here with the
  generator's masks. A phrase that names nothing in the image ("is there a star?" with
  no star) attends to the image [CLS] instead, the "no object" slot. Measured: with
  caption phrases alone, 300 steps still left VQA on its prior. Because of this objective,
  pointing accuracy on held-out questions measures how well a trained grounding
  generalises, not an emergent one. The quick preset also aligns the question's own [CLS]
  for existence and counting questions (`cls_grounding_families`).

Two phases. Perception first: for `vision_warmup_steps` only the vision tower and the
patch head train, on the patch-attribute objective (the role a pretrained object detector
plays for LXMERT and UNITER). Measured: with the earlier recipe (everything jointly from
step 0, a one-convolution-per-stage stem, unweighted patch loss) patch shape accuracy was
still 0.26 after 1,500 steps, and every question that names an object by its shape (most
of them) stayed near chance. In the shipped `full` run, shape accuracy on validation object
patches was 0.87 after the 300 perception steps (3.2 minutes), dipped to 0.78 in the first 150
joint steps while the new objectives started, and was 0.94 by joint step 300 and 0.99 at the end.
Then everything trains jointly; its first `curriculum_steps` draw scenes of at most two objects.

No objective teaches left and right directly: the spatial questions are learned through the
answers, once the text side can read each patch's position (`output_position_encoding` in
the model config; the model card has the measurements).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vqa.attention_maps import peak_inside
from vqa.data.scenes import render_object_map
from vqa.data.questions import SINGLE_REFERENT_FAMILIES
from vqa.data.splits import make_example
from vqa.data.vocabulary import COLOR_NAMES, MAX_OBJECTS, SHAPES, SIZES, answer_vocabulary
from vqa.model import ShapesVLPConfig, ShapesVLPForVQA
from vqa.model.processing import ShapesVLPProcessor
from vqa.tokenizer import PACKAGE_TOKENIZER_DIR, load_tokenizer


# Train-split scene indices from here on feed the perception warm-up (the joint phase counts from 0).
PERCEPTION_SCENES_OFFSET = 10**12


@dataclass
class TrainConfig:
    preset: str = "full"
    steps: int = 1500  # joint steps, after the perception warm-up
    vision_warmup_steps: int = 300  # perception phase: vision tower + patch head on the patch-attribute objective
    images_per_step: int = 32
    questions_per_image: int = 4
    itm_images: int = 16  # ITM/ITC on a sub-batch: captions are long and these objectives only shape the representation
    curriculum_steps: int = 150
    curriculum_max_objects: int = 2
    learning_rate: float = 1e-3
    min_learning_rate: float = 3e-5
    warmup_steps: int = 100
    weight_decay: float = 0.05
    max_grad_norm: float = 1.0
    eval_every: int = 150
    eval_scenes: int = 60
    seed: int = 0
    # Patches on an object weigh this much more than background ones in the patch loss. Most
    # patches are background, so unweighted the "none" class dominates: measured (vision tower
    # alone, 200 steps) patch shape accuracy 0.19 unweighted, 0.81 with weight 10.
    patch_object_weight: float = 10.0
    # Question families whose [CLS] is also aligned, in the fusion layer, to the objects the question's
    # phrase names (or to "no object"): the classifier reads [CLS], so an existence answer is then one
    # look away.
    cls_grounding_families: tuple[str, ...] = ()
    loss_weights: dict = field(default_factory=lambda: {"classifier": 1.0, "generative": 1.0, "caption": 0.5, "itc": 0.2, "itm": 0.2, "patch": 0.5, "grounding": 0.2})
    model: dict = field(default_factory=dict)  # ShapesVLPConfig overrides
    domain_calibration: dict = field(default_factory=dict)  # vqa.domain.calibrate's scene counts (default: its own)


PRESETS = {
    # Sized to train in at most 60 minutes on 2 CPU cores (the shipped weights: 46.1 minutes). Before, 1,800
    # joint steps took 61-63 minutes on slower days, and their last 150 added 0.005 to validation accuracy.
    "full": TrainConfig(preset="full", steps=1650),
    # A classroom run in under 10 minutes on 2 CPU cores. Each change was compared on a GPU machine
    # (`bench/sweep_presets.py`; val accuracy, 100 scenes; all runs in `bench/results/quick_sweep_gpu.txt`).
    # The earlier quick preset (the full recipe for 200 + 200 steps) ended at 0.58 there, test accuracy 0.61 on the CPU.
    # - No ITM / ITC: they cost a third of a joint step on the CPU (1.67 -> 1.29 s) and no answer head reads them.
    #   The caption decoder stays (it costs little), so the quick model still captions.
    # - Grounding weighted 1.0 instead of 0.2: 0.58 -> 0.66 (no ITM / ITC, 330 joint steps).
    # - 64 px images: a joint step takes 0.76 s instead of 1.29, so 550 joint steps fit: 0.71.
    # - [CLS] grounding for existence and counting, the families still at chance (0.45-0.55): 0.71 -> 0.75.
    # - 8 questions per image instead of 4 (and no caption decoder): 0.95 after 450 joint steps, but at 1.24 s a
    #   step that is over 10 minutes.
    # - 380 such steps, fusion from layer 0 in 3 text layers (cheaper), and a cosine that ends at 5e-4 instead of
    #   3e-5: 0.92 and 0.95 for two seeds.
    # Existence and negation are learned suddenly, some 100 steps earlier or later from seed to seed: after
    # 330 joint steps, the nine runs of the variants just before the last ended between 0.73 and 0.89.
    "quick": TrainConfig(
        preset="quick", steps=380, vision_warmup_steps=250, questions_per_image=8, warmup_steps=30, curriculum_steps=40,
        learning_rate=1.5e-3, min_learning_rate=5e-4, eval_every=95, eval_scenes=40,
        loss_weights={"classifier": 1.0, "generative": 1.0, "caption": 0.5, "itc": 0.0, "itm": 0.0, "patch": 0.5, "grounding": 1.0},
        cls_grounding_families=("exist", "not_exist", "count"),
        model={"image_size": 64, "text_layers": 3, "fusion_layer": 0},
    ),
    # A few steps on a tiny model: for tests of the training loop itself.
    "smoke": TrainConfig(
        preset="smoke", steps=3, vision_warmup_steps=2, images_per_step=4, questions_per_image=2, itm_images=4, warmup_steps=1, curriculum_steps=1, eval_every=3, eval_scenes=3,
        domain_calibration={"train_scenes": 20, "val_scenes": 40, "question_scenes": 400},
        model={"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "image_size": 32, "patch_size": 8,
               "vision_layers": 1, "text_layers": 2, "fusion_layer": 1, "decoder_layers": 1, "itc_dim": 16},
    ),
}


def build_model(train_config: TrainConfig, tokenizer) -> ShapesVLPForVQA:
    labels = answer_vocabulary()
    config = ShapesVLPConfig(
        vocab_size=len(tokenizer),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        pad_token_id=tokenizer.pad_token_id,
        cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id,
        answer_start_token_id=tokenizer.convert_tokens_to_ids("[ANS]"),
        caption_start_token_id=tokenizer.convert_tokens_to_ids("[CAP]"),
        **{"patch_attributes": {name: len(values) for name, values in PATCH_ATTRIBUTE_VALUES.items()}, **train_config.model},
    )
    return ShapesVLPForVQA(config)


class BatchMaker:
    """Fresh training batches: `images_per_step` scenes, `questions_per_image` questions each."""

    def __init__(self, processor: ShapesVLPProcessor, train_config: TrainConfig, process_index: int = 0, num_processes: int = 1):
        self.processor = processor
        self.tc = train_config
        self.label2id = processor.config.label2id
        self.process_index = process_index
        self.num_processes = num_processes

    def scenes(self, step: int, first_index: int = 0, max_objects: int = MAX_OBJECTS) -> list:
        """This process's `images_per_step` training scenes for `step`, indices counted from `first_index`."""
        tc = self.tc
        first = first_index + (step * self.num_processes + self.process_index) * tc.images_per_step + tc.seed * 10_000_000
        return [
            make_example("train", first + i, image_size=self.processor.config.image_size, max_objects=max_objects)
            for i in range(tc.images_per_step)
        ]

    def stacked_patch_labels(self, examples: list) -> dict[str, torch.Tensor]:
        """{attribute: (B_img, N)} patch labels of the scenes, see `patch_labels`."""
        labels = [self.patch_labels(example) for example in examples]
        return {k: torch.stack([p[k] for p in labels]) for k in labels[0]}

    def perception_batch(self, step: int) -> dict:
        """Images and their patch labels only, for the perception warm-up. Its scenes come from
        an index range of their own, so the joint phase still sees fresh ones."""
        examples = self.scenes(step, first_index=PERCEPTION_SCENES_OFFSET)
        return {
            "pixel_values": self.processor.images([example.image for example in examples]),
            "patch_labels": self.stacked_patch_labels(examples),
        }

    def __call__(self, step: int) -> dict:
        tc = self.tc
        rng = np.random.default_rng([tc.seed, step, self.process_index])
        max_objects = tc.curriculum_max_objects if step < tc.curriculum_steps else MAX_OBJECTS
        examples = self.scenes(step, max_objects=max_objects)
        questions, answers, image_index, asked = [], [], [], []
        for i, example in enumerate(examples):
            chosen = rng.permutation(len(example.questions))[: tc.questions_per_image]
            for j in chosen:
                asked.append(example.questions[j])
                questions.append(example.questions[j].text)
                answers.append(example.questions[j].answer)
                image_index.append(i)
        captions = [example.captions[0] for example in examples]
        cfg = self.processor.config
        return {
            "pixel_values": self.processor.images([example.image for example in examples]),
            "question": self.processor.text(questions),
            "answer_ids": torch.tensor([self.label2id[a] for a in answers]),
            "answer_decoder": self.processor.decoder_targets(answers, cfg.answer_start_token_id),
            "image_index": torch.tensor(image_index),
            "caption_decoder": self.processor.decoder_targets(captions, cfg.caption_start_token_id),
            "caption_text": self.processor.text(captions),
            "patch_labels": self.stacked_patch_labels(examples),
            # every object phrase of the canonical caption, left to right as the caption lists them
            "caption_token_regions": self.phrase_token_regions(captions, [
                [(ex.scene.objects[i].describe(), (i,)) for i in sorted(range(len(ex.scene.objects)), key=lambda i: ex.scene.objects[i].x)]
                for ex in examples
            ]),
            "question_token_regions": self.question_token_regions(questions, asked),
        }

    def question_token_regions(self, texts: list[str], asked: list) -> torch.Tensor:
        """(B_q, T, 1 + MAX_OBJECTS) grounding targets of the questions' tokens: their phrase's words (see
        `question_phrase_regions`), and [CLS] too for the families in `cls_grounding_families`."""
        regions = self.question_phrase_regions(texts, asked)
        for b, question in enumerate(asked):
            if question.family in self.tc.cls_grounding_families and question.phrase:
                regions[b, 0] = False
                regions[b, 0, [i + 1 for i in question.phrase_objects] or [0]] = True
        return regions

    def question_phrase_regions(self, texts: list[str], asked: list) -> torch.Tensor:
        """(B_q, T, 1 + MAX_OBJECTS) where each question token should look in the fusion layer, see
        `phrase_token_regions`: the words of the phrase that names objects ("red squares") look at all of
        them, or at no region when the scene has none."""
        phrases = [[(q.phrase, q.phrase_objects)] if q.phrase else [] for q in asked]
        return self.phrase_token_regions(texts, phrases)

    def phrase_token_regions(self, texts: list[str], phrases: list[list[tuple[str, tuple[int, ...]]]]) -> torch.Tensor:
        """(B, T, 1 + MAX_OBJECTS) bool, True where token t of text b should look: region 0 is "no
        object" (the image [CLS], which every cross-attention can attend to), region i + 1 is object i.
        A token outside every phrase has no target (all False). `phrases[b]` lists (phrase, the objects
        it names) in the order they occur in `texts[b]`; T matches `processor.text(texts)`."""
        encoded = self.processor.tokenizer(
            texts, padding=True, truncation=True, max_length=self.processor.config.max_text_length,
            return_offsets_mapping=True, return_token_type_ids=False,
        )
        result = torch.zeros((len(texts), len(encoded["input_ids"][0]), 1 + MAX_OBJECTS), dtype=torch.bool)
        for b, (text, named) in enumerate(zip(texts, phrases)):
            spans, cursor = [], 0
            for phrase, objects in named:
                start = text.find(phrase, cursor)
                if start < 0:
                    continue
                regions = [i + 1 for i in objects] or [0]
                spans.append((start, start + len(phrase), regions))
                cursor = start + len(phrase)
            for t, (lo, hi) in enumerate(encoded["offset_mapping"][b]):
                for start, end, regions in spans:
                    if hi > lo and start <= lo and hi <= end:
                        result[b, t, regions] = True
        return result

    def patch_labels(self, example) -> dict[str, torch.Tensor]:
        """For each patch, the attribute values (index into the vocabulary) of the object covering at
        least a quarter of it, or the "none" class (= number of values). {attribute: (N,)}"""
        cfg = self.processor.config
        grid, patch = cfg.grid_size, cfg.patch_size
        object_map = render_object_map(example.scene, cfg.image_size)  # (S, S) 0 = background, i+1 = object i
        patches = object_map.reshape(grid, patch, grid, patch).transpose(0, 2, 1, 3).reshape(grid * grid, patch * patch)  # (N, P*P)
        counts = np.stack([(patches == i + 1).sum(1) for i in range(len(example.scene.objects))], axis=1)  # (N, objects)
        owner = counts.argmax(1)  # (N,)
        covered = counts.max(1) >= patch * patch / 4
        per_object = object_attribute_values(example.scene)
        labels = {"owner": torch.tensor(np.where(covered, owner, -1))}
        for attribute, n in cfg.patch_attributes.items():
            labels[attribute] = torch.tensor(np.where(covered, np.array(per_object[attribute])[owner], n))
        return labels


# What each patch learns about the object under it (attribute -> its values).
PATCH_ATTRIBUTE_VALUES = {"color": COLOR_NAMES, "shape": SHAPES, "size": SIZES}


def object_attribute_values(scene) -> dict[str, list[int]]:
    """{attribute: [value index of each object]} for every attribute in PATCH_ATTRIBUTE_VALUES."""
    return {name: [values.index(getattr(o, name)) for o in scene.objects] for name, values in PATCH_ATTRIBUTE_VALUES.items()}


def to_device(batch, device):
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch.to(device) if torch.is_tensor(batch) else batch


def grounding_loss(cross_attention: torch.Tensor, token_regions: torch.Tensor, patch_owners: torch.Tensor) -> torch.Tensor:
    """Word-region alignment: -log of the attention mass (heads averaged) that each word of an
    object phrase puts on the objects it names, or on the image [CLS] when it names none.

    cross_attention: (B, heads, T, 1+N) of the fusion layer; token_regions: (B, T, 1+MAX_OBJECTS) bool,
    see `BatchMaker.phrase_token_regions`; patch_owners: (B, N) object under each patch or -1.
    Supervised in the fusion layer (the first that cross-attends), not the last: the layers above
    must still route what a word found to [CLS] (measured: supervising the last layer left VQA on its prior).
    The "no object" target gives an existence question's words something to find when the answer is
    no: what they bring back from the image [CLS] then differs from what an object's patches give.
    """
    attention = cross_attention.mean(1)  # (B, T, 1+N)
    patch_regions = torch.where(patch_owners >= 0, patch_owners + 1, -1)  # (B, N): object i -> region i+1, background -1
    region_of_key = torch.cat([torch.zeros_like(patch_owners[:, :1]), patch_regions], dim=1)  # (B, 1+N): image [CLS] -> region 0
    index = region_of_key.clamp(min=0)[:, None, :].expand(-1, token_regions.shape[1], -1)  # (B, T, 1+N)
    on_target = torch.gather(token_regions, 2, index) & (region_of_key >= 0)[:, None, :]  # (B, T, 1+N); background is no one's target
    mass = (attention * on_target).sum(-1)  # (B, T)
    named = token_regions.any(-1)  # (B, T)
    if not named.any():
        return attention.sum() * 0.0
    return -(mass[named] + 1e-6).log().mean()


def patch_loss(model: ShapesVLPForVQA, image_embeds: torch.Tensor, patch_labels: dict, object_weight: float) -> torch.Tensor:
    """Patch-attribute objective: cross-entropy of each patch's colour / shape / size (or "none"),
    averaged over attributes, with patches on an object weighted `object_weight` times a background one."""
    patch_logits = model.patch_attribute_logits(image_embeds)  # {attribute: (B_img, N, values+1)}
    on_object = (patch_labels["owner"] >= 0).flatten().float()  # (B_img*N,)
    weights = 1.0 + (object_weight - 1.0) * on_object  # (B_img*N,)
    per_attribute = [
        (F.cross_entropy(logits.flatten(0, 1), patch_labels[name].flatten(), reduction="none") * weights).sum() / weights.sum()
        for name, logits in patch_logits.items()
    ]
    return sum(per_attribute) / len(per_attribute)


def perception_losses(model: ShapesVLPForVQA, batch: dict, tc: TrainConfig) -> dict[str, torch.Tensor]:
    """The warm-up phase's one objective: only the vision tower and the patch head get gradients."""
    image_embeds, _ = model.encode_image(batch["pixel_values"])  # (B_img, 1+N, H)
    patch = patch_loss(model, image_embeds, batch["patch_labels"], tc.patch_object_weight)
    return {"patch": patch, "total": patch}


def compute_losses(model: ShapesVLPForVQA, batch: dict, tc: TrainConfig) -> dict[str, torch.Tensor]:
    image_embeds, _ = model.encode_image(batch["pixel_values"])  # (B_img, 1+N, H)
    q = batch["question"]
    # each image's keys/values are projected once and shared by its questions_per_image questions
    out = model(input_ids=q["input_ids"], attention_mask=q["attention_mask"], image_embeds=image_embeds, image_index=batch["image_index"], output_attentions=True)
    losses = {"classifier": F.cross_entropy(out.answer_logits, batch["answer_ids"])}

    answer = batch["answer_decoder"]
    losses["generative"] = model.text_decoder(
        input_ids=answer["input_ids"], attention_mask=answer["attention_mask"], labels=answer["labels"],
        encoder_hidden_states=out.question_embeds, encoder_attention_mask=q["attention_mask"],
    ).loss

    weights = tc.loss_weights
    if weights["caption"]:
        caption = batch["caption_decoder"]
        losses["caption"] = model.text_decoder(
            input_ids=caption["input_ids"], attention_mask=caption["attention_mask"], labels=caption["labels"],
            encoder_hidden_states=image_embeds,
        ).loss

    losses["patch"] = patch_loss(model, image_embeds, batch["patch_labels"], tc.patch_object_weight)

    # Word-region alignment in the fusion layer: the phrase a question names its object by, and
    # (with ITM) the object phrases of the matching captions.
    question_owners = batch["patch_labels"]["owner"][batch["image_index"]]  # (B_q, N)
    grounding = [grounding_loss(out.cross_attentions[0], batch["question_token_regions"], question_owners)]

    if weights["itc"] or weights["itm"]:  # ITC and ITM on the first itm_images images and their captions
        n = min(tc.itm_images, image_embeds.shape[0])
        sub_images = image_embeds[:n]
        text = {k: v[:n] for k, v in batch["caption_text"].items()}
        similarity = model.image_text_similarity(sub_images, text["input_ids"], text["attention_mask"])  # (n, n)
        targets = torch.arange(n, device=similarity.device)
        losses["itc"] = (F.cross_entropy(similarity, targets) + F.cross_entropy(similarity.T, targets)) / 2
        with torch.no_grad():  # hard negatives: a caption the model finds similar but belongs to another image
            negative_weights = similarity.float().softmax(dim=1).fill_diagonal_(0) + 1e-6
            negative_weights.fill_diagonal_(0)
            negatives = torch.multinomial(negative_weights, 1).squeeze(1)  # (n,)
        itm_image_index = torch.cat([targets, targets])  # (2n,): each image with its caption, then with a negative
        itm_ids = torch.cat([text["input_ids"], text["input_ids"][negatives]])
        itm_mask = torch.cat([text["attention_mask"], text["attention_mask"][negatives]])
        itm_out = model(input_ids=itm_ids, attention_mask=itm_mask, image_embeds=sub_images, image_index=itm_image_index, output_attentions=True)
        itm_logits = itm_out.itm_logits  # (2n, 2)
        itm_targets = torch.cat([torch.ones(n), torch.zeros(n)]).long().to(itm_logits.device)
        losses["itm"] = F.cross_entropy(itm_logits, itm_targets)
        grounding.append(grounding_loss(itm_out.cross_attentions[0][:n], batch["caption_token_regions"][:n], batch["patch_labels"]["owner"][:n]))
    losses["grounding"] = sum(grounding) / len(grounding)
    losses["total"] = sum(weights[k] * v for k, v in losses.items())
    return losses


@torch.no_grad()
def quick_validation(model: ShapesVLPForVQA, processor: ShapesVLPProcessor, num_scenes: int) -> dict[str, float]:
    """Classifier and greedy generative accuracy on the first `num_scenes` val scenes, and pointing:
    the share of questions about one object where the fused [CLS]'s fusion-layer attention peaks
    inside that object (`vqa.evaluation`'s pointing accuracy, on patch centres)."""
    model.eval()
    device = model.device
    correct_cls = correct_gen = total = 0
    pointed = pointing_total = 0
    grid = processor.config.grid_size
    per_family: dict[str, list[int]] = {}
    for index in range(num_scenes):
        ex = make_example("val", index, image_size=processor.config.image_size)
        if not ex.questions:
            continue
        pixels = processor.images([ex.image]).to(device)
        image_embeds, _ = model.encode_image(pixels)
        q = to_device(processor.text([x.text for x in ex.questions]), device)
        same_image = torch.zeros(len(ex.questions), dtype=torch.long, device=device)  # (Q,): every question is about image 0
        out = model(input_ids=q["input_ids"], attention_mask=q["attention_mask"], image_embeds=image_embeds, image_index=same_image, output_attentions=True)
        cls_maps = out.cross_attentions[0][:, :, 0, 1:].mean(1).reshape(-1, grid, grid).cpu()  # (Q, grid, grid) [CLS], heads averaged
        for x, cls_map in zip(ex.questions, cls_maps.numpy()):
            if x.referent is not None and x.family in SINGLE_REFERENT_FAMILIES:
                pointed += peak_inside(cls_map, ex.scene.objects[x.referent].box)
                pointing_total += 1
        predicted = [model.config.id2label[i] for i in out.answer_logits.argmax(-1).tolist()]
        start = torch.full((len(ex.questions), 1), model.config.answer_start_token_id, device=device)
        generated = model.text_decoder.generate(
            input_ids=start, encoder_hidden_states=out.question_embeds, encoder_attention_mask=q["attention_mask"],
            max_new_tokens=4, do_sample=False, eos_token_id=model.config.sep_token_id, pad_token_id=model.config.pad_token_id,
        )
        written = processor.decode(generated)
        for x, p, g in zip(ex.questions, predicted, written):
            per_family.setdefault(x.family, []).append(int(p == x.answer))
            correct_cls += p == x.answer
            correct_gen += g == x.answer
            total += 1
    model.train()
    return {
        "val_classifier_accuracy": round(correct_cls / max(total, 1), 4),
        "val_generative_accuracy": round(correct_gen / max(total, 1), 4),
        "val_questions": total,
        "val_pointing_accuracy": round(pointed / max(pointing_total, 1), 4),
        "val_classifier_by_family": {f: round(sum(v) / len(v), 3) for f, v in sorted(per_family.items())},
    }


@torch.no_grad()
def patch_validation(model: ShapesVLPForVQA, processor: ShapesVLPProcessor, batches: "BatchMaker", num_scenes: int) -> dict[str, float]:
    """Patch-head accuracy per attribute on the object patches of the first `num_scenes` val scenes:
    how well the vision tower alone tells colours, shapes and sizes apart."""
    model.eval()
    correct: dict[str, int] = {}
    total = 0
    for index in range(num_scenes):
        example = make_example("val", index, image_size=processor.config.image_size)
        labels = to_device(batches.patch_labels(example), model.device)  # {attribute: (N,)}
        image_embeds, _ = model.encode_image(processor.images([example.image]).to(model.device))
        on_object = labels["owner"] >= 0  # (N,)
        for name, logits in model.patch_attribute_logits(image_embeds).items():
            correct[name] = correct.get(name, 0) + int((logits[0].argmax(-1)[on_object] == labels[name][on_object]).sum())
        total += int(on_object.sum())
    model.train()
    return {name: round(c / max(total, 1), 4) for name, c in correct.items()}


def lr_at(step: int, tc: TrainConfig) -> float:
    """`step` counts both phases. The perception phase: linear warm-up, then the peak rate.
    The joint phase starts its own linear warm-up (its text layers are fresh), then decays
    the rate on a cosine to min_learning_rate."""
    if step < tc.vision_warmup_steps:
        return tc.learning_rate * min(1.0, (step + 1) / tc.warmup_steps)
    step -= tc.vision_warmup_steps
    if step < tc.warmup_steps:
        return tc.learning_rate * (step + 1) / tc.warmup_steps
    progress = (step - tc.warmup_steps) / max(1, tc.steps - tc.warmup_steps)
    return tc.min_learning_rate + 0.5 * (tc.learning_rate - tc.min_learning_rate) * (1 + math.cos(math.pi * progress))


class TrainingObjectives(torch.nn.Module):
    """The model and its losses in one forward pass.

    With several processes the prepared (DistributedDataParallel) module is this one, so the losses are
    computed inside its forward and every gradient they produce is averaged across the processes; computed
    on the bare model, each process would train a model of its own."""

    def __init__(self, model: ShapesVLPForVQA, train_config: TrainConfig):
        super().__init__()
        self.model = model
        self.train_config = train_config

    def forward(self, batch: dict, perceiving: bool) -> dict[str, torch.Tensor]:
        if perceiving:
            return perception_losses(self.model, batch, self.train_config)
        return compute_losses(self.model, batch, self.train_config)


def train(train_config: TrainConfig, out_dir: str | Path, save_dtype: torch.dtype = torch.float16, progress: bool = True,
          replica_file: str | Path | None = None) -> dict:
    """Train, validate every `eval_every` steps, save model + processor + logs to `out_dir`.
    replica_file: a path with "{rank}" in it where every process saves its own copy of the trained parameters,
    to check that distributed training kept the copies identical."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, set_seed
    from tqdm.auto import tqdm

    # The perception phase trains the vision tower alone, and objectives weighted 0 are skipped: some
    # parameters get no gradient in a step, which DistributedDataParallel must be told to expect.
    # cpu=True where there is no GPU: accelerate then runs several processes (torchrun) over gloo instead of
    # leaving each one alone.
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    set_seed(train_config.seed)
    tokenizer = load_tokenizer(PACKAGE_TOKENIZER_DIR)
    model = build_model(train_config, tokenizer)
    processor = ShapesVLPProcessor.for_config(model.config, tokenizer)
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "embeddings" in n or "position" in n or "cls_token" in n]
    decay = [p for n, p in model.named_parameters() if not (p.ndim < 2 or "embeddings" in n or "position" in n or "cls_token" in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": train_config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=train_config.learning_rate, betas=(0.9, 0.98),
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_at(s, train_config) / train_config.learning_rate)
    objectives, optimizer, scheduler = accelerator.prepare(TrainingObjectives(model, train_config), optimizer, scheduler)
    inner = accelerator.unwrap_model(objectives).model  # the model itself: validation and saving read it
    batches = BatchMaker(processor, train_config, accelerator.process_index, accelerator.num_processes)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "train_log.jsonl"
    log_file = log_path.open("w") if accelerator.is_main_process else None
    start = time.time()
    total_steps = train_config.vision_warmup_steps + train_config.steps
    bar = tqdm(range(total_steps), disable=not (progress and accelerator.is_main_process), desc=f"train[{train_config.preset}]")
    objectives.train()
    running: dict[str, float] = {}
    for step in bar:
        perceiving = step < train_config.vision_warmup_steps
        joint_step = step - train_config.vision_warmup_steps
        batch = batches.perception_batch(step) if perceiving else batches(joint_step)
        losses = objectives(to_device(batch, accelerator.device), perceiving)
        accelerator.backward(losses["total"])
        accelerator.clip_grad_norm_(objectives.parameters(), train_config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        for k, v in losses.items():
            running[k] = 0.9 * running.get(k, v.item()) + 0.1 * v.item()
        bar.set_postfix({k: f"{v:.3f}" for k, v in running.items() if k in ("total", "classifier", "generative", "caption", "patch", "grounding")})
        perception_done = perceiving and step + 1 == train_config.vision_warmup_steps
        is_eval = not perceiving and ((joint_step + 1) % train_config.eval_every == 0 or step + 1 == total_steps)
        if (perception_done or is_eval) and accelerator.is_main_process:
            metrics = {"val_patch_accuracy": patch_validation(inner, processor, batches, train_config.eval_scenes)}
            if is_eval:
                metrics.update(quick_validation(inner, processor, train_config.eval_scenes))
            record = {"step": step + 1, "phase": "perception" if perceiving else "joint", "minutes": round((time.time() - start) / 60, 2), "lr": scheduler.get_last_lr()[0], **{f"loss_{k}": round(v, 4) for k, v in running.items()}, **metrics}
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
            bar.write(json.dumps(record))
            # a loadable snapshot at every evaluation: inspect a long run while it trains
            snapshot = out_dir / "checkpoint"
            inner.save_pretrained(snapshot)
            processor.save_pretrained(snapshot)
    accelerator.wait_for_everyone()
    summary = {"train_minutes": round((time.time() - start) / 60, 2), "total_steps": total_steps}
    if replica_file is not None:
        torch.save({name: p.detach().cpu() for name, p in inner.named_parameters()}, str(replica_file).format(rank=accelerator.process_index))
    if accelerator.is_main_process:
        final = inner
        final.to(save_dtype).save_pretrained(out_dir)
        processor.save_pretrained(out_dir)
        (out_dir / "training_config.json").write_text(json.dumps({**asdict(train_config), **summary}, indent=2))
        log_file.close()
        # what this model learned, measured on its own training data: the app says when a picture or a question lies outside
        from vqa.domain import write_calibration

        write_calibration(out_dir, **train_config.domain_calibration)
    return summary


def preset(name: str, **overrides) -> TrainConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})
