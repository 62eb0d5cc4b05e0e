"""Training batches and their targets: fresh scenes every step, the questions asked about them, and what
each objective is scored against (answers, decoder targets, patch attributes, which image regions each
word of a phrase names). The objectives themselves are in `vqa.training.objectives`."""

from __future__ import annotations

import numpy as np
import torch

from vqa.data.questions import SINGLE_REFERENT_FAMILIES
from vqa.data.scenes import render_object_map
from vqa.data.splits import make_example
from vqa.data.vocabulary import MAX_OBJECTS, PATCH_ATTRIBUTE_VALUES
from vqa.model.processing import ShapesVLPProcessor
from vqa.training.recipes import TrainConfig

# Train-split scene indices from here on feed the perception warm-up (the joint phase counts from 0).
PERCEPTION_SCENES_OFFSET = 10**12


class BatchMaker:
    """Fresh training batches: `images_per_step` scenes, `questions_per_image` questions each.

    One optimiser step's global batch is `num_processes × gradient_accumulation_steps` shards; shard
    `micro × num_processes + process_index` is what one process computes in one micro-step. Its scenes, its
    questions and the random draws of its objectives (`generator_seed`) depend only on the step and the shard,
    so two processes and one process accumulating two micro-batches train on the same global batch."""

    def __init__(self, processor: ShapesVLPProcessor, train_config: TrainConfig, process_index: int = 0, num_processes: int = 1):
        self.processor = processor
        self.tc = train_config
        self.label2id = processor.config.label2id
        self.process_index = process_index
        self.num_processes = num_processes

    def shard(self, micro: int) -> int:
        return micro * self.num_processes + self.process_index

    def scenes(self, step: int, first_index: int = 0, max_objects: int = MAX_OBJECTS, micro: int = 0) -> list:
        """This shard's `images_per_step` training scenes for `step`, indices counted from `first_index`."""
        tc = self.tc
        shards = self.num_processes * tc.gradient_accumulation_steps
        first = first_index + (step * shards + self.shard(micro)) * tc.images_per_step + tc.seed * 10_000_000
        return [
            make_example("train", first + i, image_size=self.processor.config.image_size, max_objects=max_objects,
                         reworded_share=tc.reworded_share, restyled_share=tc.restyled_share,
                         elongated_share=tc.elongated_share)
            for i in range(tc.images_per_step)
        ]

    def stacked_patch_labels(self, examples: list) -> dict[str, torch.Tensor]:
        """{attribute: (B_img, N)} patch labels of the scenes, see `patch_labels`."""
        labels = [self.patch_labels(example) for example in examples]
        return {k: torch.stack([p[k] for p in labels]) for k in labels[0]}

    def perception_batch(self, step: int, micro: int = 0) -> dict:
        """Images and their patch labels only, for the perception warm-up. Its scenes come from
        an index range of their own, so the joint phase still sees fresh ones."""
        examples = self.scenes(step, first_index=PERCEPTION_SCENES_OFFSET, micro=micro)
        return {
            "pixel_values": self.processor.images([example.image for example in examples]),
            "patch_labels": self.stacked_patch_labels(examples),
        }

    def __call__(self, step: int, micro: int = 0) -> dict:
        tc = self.tc
        shard = self.shard(micro)
        rng = np.random.default_rng([tc.seed, step, shard])
        max_objects = tc.curriculum_max_objects if step < tc.curriculum_steps else MAX_OBJECTS
        examples = self.scenes(step, max_objects=max_objects, micro=micro)
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
            # masks and negatives drawn by the objectives come from a generator seeded with this
            "generator_seed": int(np.random.SeedSequence([tc.seed, step, shard]).generate_state(1)[0]),
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
        `question_phrase_regions`), and [CLS] too for the families in `cls_grounding_families`: the object
        a question about one object is about, else the objects its phrase names."""
        regions = self.question_phrase_regions(texts, asked)
        if self.processor.config.fusion == "decoder":
            return regions  # a causal decoder's [CLS] comes before the question: it cannot know what is asked
        for b, question in enumerate(asked):
            if question.family not in self.tc.cls_grounding_families:
                continue
            if question.family in SINGLE_REFERENT_FAMILIES and question.referent is not None:
                # the object the answer is about: a spatial question's phrase names its anchor, not this
                objects = (question.referent,)
            elif question.phrase:
                objects = question.phrase_objects
            else:
                continue
            regions[b, 0] = False
            regions[b, 0, [i + 1 for i in objects] or [0]] = True
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
        encoded = self.processor.text_tokenizer(
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


def object_attribute_values(scene) -> dict[str, list[int]]:
    """{attribute: [value index of each object]} for every attribute in PATCH_ATTRIBUTE_VALUES."""
    return {name: [values.index(getattr(o, name)) for o in scene.objects] for name, values in PATCH_ATTRIBUTE_VALUES.items()}


def to_device(batch, device):
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch.to(device) if torch.is_tensor(batch) else batch
