"""Quick checks during training, on the first validation scenes: answer accuracy of each head the
model has, pointing, and how well the image encoder alone tells patches apart.

With several processes each one checks its share of the scenes (every `num_shards`-th), and the counts
are summed across processes before they become rates: no process waits idle while another validates."""

from __future__ import annotations

import torch

from vqa.attention_maps import peak_inside
from vqa.data.questions import FAMILIES, SINGLE_REFERENT_FAMILIES
from vqa.data.splits import make_example
from vqa.model import ShapesVLPForVQA
from vqa.model.outputs import patch_attention_grids
from vqa.model.processing import ShapesVLPProcessor
from vqa.training.targets import BatchMaker, to_device


def answer_counts(model: ShapesVLPForVQA, processor: ShapesVLPProcessor, num_scenes: int, shard: int = 0, num_shards: int = 1) -> dict[str, float]:
    """Counts over this shard's val scenes (of the first `num_scenes`): questions answered right by the classifier
    and by greedy generation (for the heads the model has), per family, and pointing: questions about one object
    where the [CLS] token's attention, averaged over the fused layers, peaks inside that object (`vqa.evaluation`'s
    pointing accuracy, on patch centres). The same keys on every shard, so they can be summed across processes."""
    config = model.config
    counts = {"questions": 0.0, "classifier": 0.0, "generative": 0.0, "pointed": 0.0, "pointing_questions": 0.0}
    counts |= {f"{family}/{what}": 0.0 for family in FAMILIES for what in ("right", "asked")}
    device, grid = model.device, config.grid_size
    for index in range(shard, num_scenes, num_shards):
        ex = make_example("val", index, image_size=config.image_size)
        if not ex.questions:
            continue
        image_embeds, _ = model.encode_image(processor.images([ex.image]).to(device))
        q = to_device(processor.text([x.text for x in ex.questions]), device)
        same_image = torch.zeros(len(ex.questions), dtype=torch.long, device=device)  # (Q,): every question is about image 0
        out = model(input_ids=q["input_ids"], attention_mask=q["attention_mask"], image_embeds=image_embeds, image_index=same_image, output_attentions=True)
        if config.fused_layers:
            # [CLS] to the patches, layers and heads averaged, as `attention_maps.pointing_map` reads the app's maps
            cls_to_image = torch.stack(out.text_to_image)[:, :, :, 0]  # (L, Q, heads, 1+N)
            cls_maps = patch_attention_grids(cls_to_image, grid).mean((0, 2)).cpu()  # (Q, grid, grid)
            for x, cls_map in zip(ex.questions, cls_maps.numpy()):
                if x.referent is not None and x.family in SINGLE_REFERENT_FAMILIES:
                    counts["pointed"] += peak_inside(cls_map, ex.scene.page_box(x.referent))
                    counts["pointing_questions"] += 1
        predicted = [None] * len(ex.questions)
        if model.has_head("classifier"):
            predicted = [config.id2label[i] for i in out.answer_logits.argmax(-1).tolist()]
        written = [None] * len(ex.questions)
        if model.has_head("lm"):
            prompt = model.answer_decoder_inputs(q["input_ids"], q["attention_mask"], out.text_states, out.image_states)
            generated = model.generate_text(
                **prompt, max_new_tokens=4, do_sample=False, eos_token_id=config.sep_token_id, pad_token_id=config.pad_token_id,
            )
            written = processor.decode(generated[:, prompt["input_ids"].shape[1]:])
        for x, p, g in zip(ex.questions, predicted, written):
            counts["questions"] += 1
            counts["classifier"] += p == x.answer
            counts["generative"] += g == x.answer
            if p is not None or g is not None:  # the classifier's answer where there is one, else the written one
                counts[f"{x.family}/asked"] += 1
                counts[f"{x.family}/right"] += (p if p is not None else g) == x.answer
    return counts


def answer_metrics(model: ShapesVLPForVQA, counts: dict[str, float]) -> dict:
    """The log's validation fields from (summed) `answer_counts`."""
    total = max(counts["questions"], 1)
    metrics = {
        "val_questions": int(counts["questions"]),
        "val_classifier_by_family": {
            family: round(counts[f"{family}/right"] / counts[f"{family}/asked"], 3) for family in FAMILIES if counts[f"{family}/asked"]
        },
    }
    if model.has_head("classifier"):
        metrics["val_classifier_accuracy"] = round(counts["classifier"] / total, 4)
    if model.has_head("lm"):
        metrics["val_generative_accuracy"] = round(counts["generative"] / total, 4)
    if model.config.fused_layers:
        metrics["val_pointing_accuracy"] = round(counts["pointed"] / max(counts["pointing_questions"], 1), 4)
    return metrics


def patch_counts(model: ShapesVLPForVQA, processor: ShapesVLPProcessor, batches: BatchMaker, num_scenes: int, shard: int = 0,
                 num_shards: int = 1) -> dict[str, float]:
    """Object patches of this shard's val scenes whose colour, shape and size the patch head gets right: how well
    the vision tower alone tells them apart. Empty without a patch head."""
    if not model.has_head("patch"):
        return {}
    counts = {"patches": 0.0} | {name: 0.0 for name in model.config.patch_attributes}
    for index in range(shard, num_scenes, num_shards):
        example = make_example("val", index, image_size=processor.config.image_size)
        labels = to_device(batches.patch_labels(example), model.device)  # {attribute: (N,)}
        image_embeds, _ = model.encode_image(processor.images([example.image]).to(model.device))
        on_object = labels["owner"] >= 0  # (N,)
        for name, logits in model.patch_attribute_logits(image_embeds).items():
            counts[name] += int((logits[0].argmax(-1)[on_object] == labels[name][on_object]).sum())
        counts["patches"] += int(on_object.sum())
    return counts


def patch_metrics(counts: dict[str, float]) -> dict[str, float]:
    return {name: round(c / max(counts["patches"], 1), 4) for name, c in counts.items() if name != "patches"}


@torch.no_grad()
def validate(model: ShapesVLPForVQA, processor: ShapesVLPProcessor, batches: BatchMaker, num_scenes: int, answers: bool,
             sum_across_processes=lambda counts: counts, shard: int = 0, num_shards: int = 1) -> dict:
    """The log's validation fields: patch accuracy, and (with `answers`) answer accuracy and pointing.
    `sum_across_processes` takes a tensor of this process's counts and returns the sum over all processes."""
    model.eval()
    patches = patch_counts(model, processor, batches, num_scenes, shard, num_shards)
    asked = answer_counts(model, processor, num_scenes, shard, num_shards) if answers else {}
    keys = [("patch", k) for k in patches] + [("answer", k) for k in asked]
    local = torch.tensor([patches[k] if part == "patch" else asked[k] for part, k in keys], dtype=torch.float64, device=model.device)
    summed = dict(zip(keys, sum_across_processes(local).tolist())) if keys else {}
    model.train()
    metrics = {"val_patch_accuracy": patch_metrics({k: v for (part, k), v in summed.items() if part == "patch"}) if patches else {}}
    if answers:
        metrics.update(answer_metrics(model, {k: v for (part, k), v in summed.items() if part == "answer"}))
    return metrics
