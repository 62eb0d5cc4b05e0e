"""Training and measuring the zoo: `python -m vqa zoo [--members ...] [--minutes-per-member N]`.

Each member is trained by the same accelerate loop as every model here (`vqa.training.train`, so one GPU
or several run it unchanged), then evaluated on the test and compositional splits, timed, and written to
`results.json` beside the members, with the plots of `vqa.zoo.plots` and a model card per member."""

from __future__ import annotations

import json
import shutil
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import torch

import vqa
from vqa.data.splits import make_example
from vqa.evaluation import evaluate
from vqa.model import load_architecture
from vqa.training import train
from vqa.training.budget import fit_to_budget
from vqa.zoo.members import MEMBERS, member_recipe

LATENCY_IMAGES = 20


def best_head(report: dict) -> tuple[str, float]:
    """The head with the higher test accuracy, and that accuracy."""
    heads = {head: report[f"{head}_accuracy"] for head in ("classifier", "generative") if f"{head}_accuracy" in report}
    head = max(heads, key=heads.get)
    return head, heads[head]


def answer_latency_ms(backbone, head: str, image_size: int) -> float:
    """p50 of one answer with `head` on a new picture and question each time, preprocessing included."""
    times = []
    for index in range(LATENCY_IMAGES):
        example = make_example("test", 10_000 + index, image_size=image_size)
        backbone.clear_caches()
        start = time.perf_counter()
        backbone.answer(example.image, example.questions[0].text, head=head)
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 2)


@torch.no_grad()
def masked_word_accuracy(backbone, num_scenes: int) -> float:
    """Share of caption words hidden behind [MASK] (one in seven, spread evenly) that the MLM head restores
    from the rest of the caption and the whole image, on val scenes."""
    model, processor, config = backbone.model, backbone.processor, backbone.config
    right = total = 0
    for index in range(num_scenes):
        example = make_example("val", index, image_size=config.image_size)
        text = processor.text([example.captions[0]])
        ids = text["input_ids"]  # (1, T)
        hidden = torch.zeros_like(ids, dtype=torch.bool)
        hidden[:, 1:-1:7] = True  # every seventh word, never [CLS] or [SEP]
        out = model(pixel_values=processor.images([example.image]), input_ids=ids.masked_fill(hidden, config.mask_token_id),
                    attention_mask=text["attention_mask"])
        predicted = model.mlm_logits(out.text_states).argmax(-1)  # (1, T)
        right += int((predicted[hidden] == ids[hidden]).sum())
        total += int(hidden.sum())
    return round(right / max(total, 1), 4)


def validation_curve(folder: Path) -> list[dict]:
    """(minutes, validation accuracy of the best head, losses) at each evaluation of the training log."""
    curve = []
    for line in (folder / "train_log.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("phase") != "joint":
            continue
        accuracies = [record[k] for k in ("val_classifier_accuracy", "val_generative_accuracy") if k in record]
        accuracy = max(accuracies) if accuracies else None  # None: the member has no answer head to validate
        curve.append({"step": record["step"], "minutes": record["minutes"], "val_accuracy": accuracy,
                      **{k: v for k, v in record.items() if k.startswith("loss_")}})
    return curve


def measure_member(name: str, folder: Path, eval_scenes: int) -> dict:
    """Test and compositional accuracy, pointing, latency and size of the trained member in `folder`."""
    backbone = vqa.load(folder)
    config = backbone.config
    report = evaluate(backbone, split="test", num_scenes=eval_scenes, compositional_scenes=max(1, eval_scenes // 2))
    head, accuracy = best_head(report)
    spec = load_architecture(name)
    training = json.loads((folder / "training_config.json").read_text())
    result = {
        "stands_for": spec["stands_for"], "fusion": config.fusion, "fusion_layer": config.fusion_layer if config.fusion in ("cross_attention", "merged", "co_attention") else None,
        "heads": config.heads, "objectives": training["loss_weights"], "parameters": backbone.num_parameters,
        "train_minutes": training["train_minutes"], "perception_steps": training["vision_warmup_steps"],
        "joint_steps": training.get("steps_done", training["total_steps"]) - training["vision_warmup_steps"],
        "best_head": head, "test_accuracy": accuracy, "answer_latency_ms": answer_latency_ms(backbone, head, 96),
        "test": report, "curve": validation_curve(folder),
    }
    if "mlm" in config.heads:
        result["masked_word_accuracy"] = masked_word_accuracy(backbone, num_scenes=min(eval_scenes, 60))
    if config.fusion == "none":
        result["note"] = "answers by scoring every answer, written after the question as a statement, against the picture (contrastive similarity)"
    return result


def train_zoo(members: list[str] | None = None, minutes_per_member: float = 8.0, out_dir: str | Path = "weights/zoo",
              base: str = "quick", eval_scenes: int = 100, progress: bool = True) -> dict:
    """Train, measure and describe each member; write results.json, the plots and the model cards."""
    from tqdm.auto import tqdm

    from vqa.zoo.cards import write_member_card

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {"members": {}}
    results.update({"minutes_per_member": minutes_per_member, "base_recipe": base, "eval_scenes": eval_scenes,
                    "threads": torch.get_num_threads()})
    for name in tqdm(members or MEMBERS, desc="zoo", disable=not progress):
        recipe = fit_to_budget(member_recipe(name, base), minutes_per_member)
        folder = out_dir / name
        train(recipe, folder, progress=progress)
        if (folder / "checkpoint").exists():  # the loop's snapshot at each evaluation: the trained member replaces it
            shutil.rmtree(folder / "checkpoint")
        results["members"][name] = measure_member(name, folder, eval_scenes)
        results["members"][name]["recipe"] = asdict(recipe)
        write_member_card(folder, name, results["members"][name])
        results_path.write_text(json.dumps(results, indent=1))
    redraw(out_dir)
    return results


def redraw(out_dir: str | Path = "weights/zoo") -> None:
    """Rewrite the plots, the results table and the member cards from results.json, without training."""
    from vqa.zoo.cards import write_member_card, write_zoo_readme_table
    from vqa.zoo.plots import write_plots

    out_dir = Path(out_dir)
    results = json.loads((out_dir / "results.json").read_text())
    for name, member in results["members"].items():
        write_member_card(out_dir / name, name, member)
    write_plots(results, out_dir)
    write_zoo_readme_table(results, out_dir)
