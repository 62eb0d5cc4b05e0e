"""The zoo's plots, drawn with matplotlib from results.json: what each member answers right per question
family, how fast each learns, what moving the fusion layer does, and what each costs."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vqa.data.questions import FAMILIES  # noqa: E402

FAMILY_LABELS = {"exist": "exists", "not_exist": "not exists", "color": "colour", "shape": "shape", "size": "size",
                 "count": "count", "spatial_color": "left/right colour", "spatial_shape": "left/right shape"}


def family_accuracy(results: dict, path: Path) -> None:
    """Members × question families, the best head's test accuracy in each cell."""
    names = list(results["members"])
    grid = np.array([[results["members"][n]["test"]["families"].get(f, {}).get(results["members"][n]["best_head"], np.nan)
                      for f in FAMILIES] for n in names])  # (members, families)
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(names) + 1.6))
    image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(FAMILIES)), [FAMILY_LABELS.get(f, f) for f in FAMILIES], rotation=25, ha="right")
    ax.set_yticks(range(len(names)), [f"{n} ({results['members'][n]['best_head']})" for n in names])
    for (row, col), value in np.ndenumerate(grid):
        if not np.isnan(value):
            ax.text(col, row, f"{value:.2f}", ha="center", va="center", color="white" if value < 0.6 else "black", fontsize=8)
    fig.colorbar(image, ax=ax, label="test accuracy")
    ax.set_title("Test accuracy per question family (each member's best head)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def learning_curves(results: dict, path: Path) -> None:
    """Validation accuracy against minutes of training, one line per member."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, member in results["members"].items():
        curve = member["curve"]
        if curve and {"classifier", "lm"} & set(member["heads"]):  # a dual encoder is not validated on answers while it trains
            ax.plot([c["minutes"] for c in curve], [c["val_accuracy"] for c in curve], marker="o", label=name)
    ax.set_xlabel("minutes of training (2 CPU cores)")
    ax.set_ylabel("validation accuracy (best head)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("How fast each architecture learns the shapes world")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fusion_layer_sweep(results: dict, path: Path) -> None:
    """Test accuracy and pointing of the three `med-*` members against where fusion starts."""
    members = sorted(((m["fusion_layer"], name, m) for name, m in results["members"].items() if name.startswith("med-")), key=lambda t: t[0])
    if not members:
        return
    layers = [layer for layer, _, _ in members]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(layers, [m["test_accuracy"] for _, _, m in members], marker="o", label="test accuracy")
    ax.plot(layers, [m["test"].get("pointing_accuracy", np.nan) for _, _, m in members], marker="s", label="pointing accuracy")
    for layer, name, m in members:
        ax.annotate(name, (layer, m["test_accuracy"]), textcoords="offset points", xytext=(0, 8), ha="center", fontsize=8)
    ax.set_xticks(layers)
    ax.set_xlabel("fusion layer (first of 4 text layers that cross-attends to the image)")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Early, mid and late fusion (BLIP / ALBEF)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def costs(results: dict, path: Path) -> None:
    """Parameters, answer latency and pointing accuracy per member."""
    names = list(results["members"])
    members = [results["members"][n] for n in names]
    panels = [
        ("parameters (millions)", [m["parameters"] / 1e6 for m in members]),
        ("answer latency p50 (ms)", [m["answer_latency_ms"] for m in members]),
        ("pointing accuracy", [m["test"].get("pointing_accuracy", 0.0) for m in members]),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, (label, values) in zip(axes, panels):
        ax.barh(names, values, color="#4c72b0")
        ax.set_xlabel(label)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("What each member costs, and where it looks")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


PLOTS = {"family_accuracy.png": family_accuracy, "learning_curves.png": learning_curves,
         "fusion_layer.png": fusion_layer_sweep, "costs.png": costs}


def write_plots(results: dict, out_dir: Path) -> list[Path]:
    written = []
    for filename, draw in PLOTS.items():
        draw(results, out_dir / filename)
        if (out_dir / filename).exists():
            written.append(out_dir / filename)
    return written


def plot_captions(results: dict) -> dict[str, str]:
    """Two or three plain sentences per plot for a student, with the figures read from `results`."""
    members = results["members"]
    answering = {n: m for n, m in members.items() if {"classifier", "lm"} & set(m["heads"])}
    best = max(answering, key=lambda n: answering[n]["test_accuracy"])
    family_means = {f: np.nanmean([m["test"]["families"].get(f, {}).get(m["best_head"], np.nan) for m in answering.values()]) for f in FAMILIES}
    hardest = min(family_means, key=family_means.get)
    captions = {
        "family_accuracy.png": (
            "Each row is one architecture, each column one kind of question; the brighter the cell, the more answers were right. "
            f"{best} is the brightest row ({answering[best]['test_accuracy']:.0%} of all test questions). "
            f"The darkest column, “{FAMILY_LABELS.get(hardest, hardest)}” questions ({family_means[hardest]:.0%} on average), is where most architectures still struggle."
        ),
    }
    climbing = [n for n, m in answering.items() if len(m["curve"]) >= 2 and (m["curve"][-1]["val_accuracy"] or 0) - (m["curve"][-2]["val_accuracy"] or 0) > 0.02]
    minutes = results.get("minutes_per_member")
    captions["learning_curves.png"] = (
        f"Every architecture got the same {minutes:g} minutes of training; each dot is a check on questions it never trained on. "
        "A steep line learns fast; a line that is still climbing at the right edge would gain from more time"
        + (f": {', '.join(climbing)}." if climbing else ".")
    )
    med = sorted(((m["fusion_layer"], n, m["test_accuracy"]) for n, m in members.items() if n.startswith("med-")), key=lambda t: t[0])
    if med:
        points = ", ".join(f"layer {layer} ({name}): {accuracy:.0%}" for layer, name, accuracy in med)
        captions["fusion_layer.png"] = (
            "Three copies of the same BLIP-style model that differ in one thing: the first text layer that looks at the image. "
            f"Test accuracy: {points}. Each was trained once, so a difference of a few points can be the luck of "
            "the random start rather than the fusion layer."
        )
    cheapest = min(members, key=lambda n: members[n]["parameters"])
    captions["costs.png"] = (
        f"Size, speed and where each model looks. {cheapest} is the smallest ({members[cheapest]['parameters'] / 1e6:.1f} M parameters). "
        "Pointing accuracy counts how often the brightest spot of the attention map lands on the object the question is about."
    )
    return captions
