"""Quick checks during training, on the first validation scenes: answer accuracy of each head the
model has, pointing, and how well the image encoder alone tells patches apart."""

from __future__ import annotations

import torch

from vqa.attention_maps import peak_inside
from vqa.data.questions import SINGLE_REFERENT_FAMILIES
from vqa.data.splits import make_example
from vqa.model import ShapesVLPForVQA
from vqa.model.processing import ShapesVLPProcessor
from vqa.training.targets import BatchMaker, to_device


@torch.no_grad()
def quick_validation(model: ShapesVLPForVQA, processor: ShapesVLPProcessor, num_scenes: int) -> dict[str, float]:
    """Classifier and greedy generative accuracy (for the heads the model has) on the first `num_scenes`
    val scenes, and pointing: the share of questions about one object where the [CLS] token's attention
    in the first fused layer peaks inside that object (`vqa.evaluation`'s pointing accuracy, on patch centres)."""
    model.eval()
    device = model.device
    config = model.config
    correct_cls = correct_gen = total = 0
    pointed = pointing_total = 0
    grid = config.grid_size
    per_family: dict[str, list[int]] = {}
    for index in range(num_scenes):
        ex = make_example("val", index, image_size=config.image_size)
        if not ex.questions:
            continue
        pixels = processor.images([ex.image]).to(device)
        image_embeds, _ = model.encode_image(pixels)
        q = to_device(processor.text([x.text for x in ex.questions]), device)
        same_image = torch.zeros(len(ex.questions), dtype=torch.long, device=device)  # (Q,): every question is about image 0
        out = model(input_ids=q["input_ids"], attention_mask=q["attention_mask"], image_embeds=image_embeds, image_index=same_image, output_attentions=True)
        if config.fused_layers:
            cls_maps = out.text_to_image[0][:, :, 0, 1:].mean(1).reshape(-1, grid, grid).cpu()  # (Q, grid, grid) [CLS], heads averaged
            for x, cls_map in zip(ex.questions, cls_maps.numpy()):
                if x.referent is not None and x.family in SINGLE_REFERENT_FAMILIES:
                    pointed += peak_inside(cls_map, ex.scene.objects[x.referent].box)
                    pointing_total += 1
        predicted = [None] * len(ex.questions)
        if model.has_head("classifier"):
            predicted = [config.id2label[i] for i in out.answer_logits.argmax(-1).tolist()]
        written = [None] * len(ex.questions)
        if model.has_head("lm"):
            prompt = model.answer_decoder_inputs(q["input_ids"], q["attention_mask"], out.text_states, out.image_states)
            generated = model.text_decoder.generate(
                **prompt, max_new_tokens=4, do_sample=False, eos_token_id=config.sep_token_id, pad_token_id=config.pad_token_id,
            )
            written = processor.decode(generated[:, prompt["input_ids"].shape[1]:])
        for x, p, g in zip(ex.questions, predicted, written):
            if p is not None or g is not None:  # the classifier's answer where there is one, else the written one
                per_family.setdefault(x.family, []).append(int((p if p is not None else g) == x.answer))
            correct_cls += p == x.answer
            correct_gen += g == x.answer
            total += 1
    model.train()
    metrics = {"val_questions": total, "val_classifier_by_family": {f: round(sum(v) / len(v), 3) for f, v in sorted(per_family.items())}}
    if model.has_head("classifier"):
        metrics["val_classifier_accuracy"] = round(correct_cls / max(total, 1), 4)
    if model.has_head("lm"):
        metrics["val_generative_accuracy"] = round(correct_gen / max(total, 1), 4)
    if config.fused_layers:
        metrics["val_pointing_accuracy"] = round(pointed / max(pointing_total, 1), 4)
    return metrics


@torch.no_grad()
def patch_validation(model: ShapesVLPForVQA, processor: ShapesVLPProcessor, batches: BatchMaker, num_scenes: int) -> dict[str, float]:
    """Patch-head accuracy per attribute on the object patches of the first `num_scenes` val scenes:
    how well the vision tower alone tells colours, shapes and sizes apart. Empty without a patch head."""
    if not model.has_head("patch"):
        return {}
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
