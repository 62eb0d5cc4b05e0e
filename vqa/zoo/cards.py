"""Model cards for the zoo: one per member (what it stands for, recipe, minutes, figures, seed), and the
results table the zoo's README points to. Written from results.json, so they never disagree with it."""

from __future__ import annotations

from pathlib import Path

from vqa.data.questions import FAMILIES
from vqa.model import load_architecture


def fmt(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def write_member_card(folder: Path, name: str, member: dict) -> None:
    spec = load_architecture(name)
    test = member["test"]
    recipe = member.get("recipe", {})
    lines = [
        "---", "license: apache-2.0", "library_name: transformers", "tags: [visual-question-answering, vision-language, shapes-world, zoo]", "---", "",
        f"# {name}", "",
        f"Stands for **{spec['stands_for']}**. {spec['description']}", "",
        f"Part of the architecture zoo (`weights/zoo/README.md`): every member is trained on the same generated data "
        f"with the same schedule, sizes and CPU budget, and every member with a ViT image encoder starts from the same "
        f"pretrained vision tower. Architecture file: `vqa/model/architectures/{name}.json`.", "",
        "| | |", "|---|---|",
        f"| fusion | `{member['fusion']}`" + (f", from layer {member['fusion_layer']}" if member["fusion_layer"] is not None else "") + " |",
        f"| heads | {', '.join(member['heads'])} |",
        f"| objectives (loss weights) | {', '.join(f'{k} {v}' for k, v in member['objectives'].items() if v)} |",
        f"| parameters | {member['parameters'] / 1e6:.2f} million (stored in fp16) |",
        f"| training | {member['perception_steps']} perception + {member['joint_steps']} joint steps, {member['train_minutes']} minutes on 2 CPU cores, seed {recipe.get('seed', 0)} |",
        "| vision tower | " + (f"started from the zoo's pretrained tower (`weights/{recipe['vision_init']}`)" if recipe.get("vision_init")
                             else "learned in this member's own training") + " |",
        f"| best head | {member['best_head']} |",
        "", "## Measured", "",
        f"`python -m vqa evaluate --model weights/zoo/{name} --split test --num-scenes {test.get('scenes')}` "
        f"({test.get('questions')} questions):", "",
        "| metric | value |", "|---|---|",
    ]
    for head in ("classifier", "generative"):
        if f"{head}_accuracy" in test:
            lines.append(f"| test accuracy, {head} head | {fmt(test[f'{head}_accuracy'])} |")
    comp = test.get("compositional_accuracy") if test.get("compositional_accuracy") is not None else test.get("compositional_generative_accuracy")
    lines += [
        f"| compositional split (best available head) | {fmt(comp)} |",
        f"| pointing accuracy | {fmt(test.get('pointing_accuracy'))} |",
        f"| answer latency p50 ({member['best_head']}, 2 threads) | {member['answer_latency_ms']} ms |",
    ]
    if "masked_word_accuracy" in member:
        lines.append(f"| masked caption words restored (MLM head) | {fmt(member['masked_word_accuracy'])} |")
    recon = [c["loss_recon"] for c in member["curve"] if "loss_recon" in c]
    if recon:
        lines.append(f"| reconstruction loss (RECON, squared error per pixel) at each validation | {' → '.join(f'{v:.4f}' for v in recon)} |")
    lines += ["", "Per question family (best head): " + ", ".join(
        f"{f} {fmt(test['families'][f].get(member['best_head']))}" for f in FAMILIES if f in test["families"]) + "."]
    if "note" in member:
        lines += ["", f"It {member['note']}."]
    lines += ["", "A small synthetic world is not VQAv2: these figures compare architectures under one small budget here, "
              "nothing more.", ""]
    (folder / "README.md").write_text("\n".join(lines))


def write_zoo_readme_table(results: dict, out_dir: Path) -> None:
    """results.md: one row per member, from results.json."""
    lines = [
        f"Each member trained for at most {results['minutes_per_member']} minutes on 2 CPU cores; test split "
        f"({results['eval_scenes']} scenes) and compositional split. Written by `python -m vqa zoo` from `results.json`. "
        "A member with 0 perception steps started from the zoo's pretrained vision tower (`weights/vision/zoo`), "
        "or has no patch head to learn to see with.", "",
        "| member | stands for | best head | test | compositional | pointing | parameters | latency p50 | minutes | steps |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in results["members"].items():
        test = m["test"]
        comp = test.get("compositional_accuracy") if test.get("compositional_accuracy") is not None else test.get("compositional_generative_accuracy")
        lines.append(
            f"| `{name}` | {m['stands_for']} | {m['best_head']} | {fmt(m['test_accuracy'])} | {fmt(comp)} | {fmt(test.get('pointing_accuracy'))} "
            f"| {m['parameters'] / 1e6:.2f} M | {m['answer_latency_ms']} ms | {m['train_minutes']} | {m['perception_steps']} + {m['joint_steps']} |"
        )
    (out_dir / "results.md").write_text("\n".join(lines) + "\n")
