"""A picture of one architecture, drawn from its config: the towers, which layers see the text, the image
or both, where fusion starts, the heads on top and the objectives it was trained with. The family's ideas
(single or dual stream; early, mid or late fusion; encoder–decoder; dual encoder; MLIM's masking) are named
on it, so a class can put two members side by side and say what differs."""

from __future__ import annotations

import io
import threading

import matplotlib

matplotlib.use("Agg")  # pictures only, no screen
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402
from PIL import Image  # noqa: E402

from vqa.model import ShapesVLPConfig, list_architectures, load_architecture  # noqa: E402

TEXT_ONLY, IMAGE_ONLY, BOTH = "#bfdbfe", "#fed7aa", "#ddd6fe"
HEAD_COLOUR, SCORE_COLOUR = "#bbf7d0", "#fef08a"
HEAD_WORDS = {"classifier": "classifier\n(fixed answers)", "itm": "ITM\n(match?)", "itc": "ITC\n(similarity)",
              "lm": "LM\n(writes)", "patch": "patch\nattributes", "mlm": "MLM\n(hidden words)", "recon": "RECON\n(image back)"}
OBJECTIVE_WORDS = {"classifier": "VQA (classifier)", "generative": "answer LM", "caption": "caption LM", "prefix_lm": "PrefixLM",
                   "itc": "ITC", "itm": "ITM", "mlm": "MLM", "mvm": "MVM", "patch": "patch attributes",
                   "grounding": "word-region alignment", "recon": "RECON"}
# pyplot keeps global state: one figure at a time across the server's threads.
_DRAW_LOCK = threading.Lock()


def fusion_position(config: ShapesVLPConfig) -> str:
    """"early", "mid" or "late": where in the text tower the image first comes in."""
    if config.fusion_layer == 0:
        return "early"
    return "late" if config.fusion_layer == config.text_layers - 1 else "mid"


def architecture_concepts(config: ShapesVLPConfig, masking: str | None = None) -> list[str]:
    """The ideas of the field this architecture shows, in the words a lesson uses."""
    kind = config.fusion
    if kind == "cross_attention":
        concepts = ["dual encoder below, fused above (mixture of encoder-decoder)", f"{fusion_position(config)} fusion: text layer {config.fusion_layer} up reads the image"]
    elif kind == "merged":
        concepts = ["single stream: words and patches in one sequence", f"{fusion_position(config)} fusion"]
    elif kind == "co_attention":
        concepts = ["dual stream: two streams exchange co-attention", f"fusion from layer {config.fusion_layer}"]
    elif kind == "none":
        concepts = ["dual encoder: the towers never meet", "late fusion at the score (dot product)"]
    else:
        concepts = ["encoder-decoder: a causal decoder reads the image as it writes"]
    if config.image_embedder == "shallow_cnn":
        concepts.append("no vision transformer: a shallow CNN makes the patches")
    if masking == "modality_aware":
        concepts.append("modality-aware masking: words and image regions hidden together")
    return concepts


def _box(ax, x, y, w, h, text, colour, size=8):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.12", facecolor=colour, edgecolor="#334155", linewidth=0.8))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size, color="#0f172a")


def _arrow(ax, start, end, both=False):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="<|-|>" if both else "-|>", mutation_scale=9, color="#475569", linewidth=1))


def _column(ax, x, w, bottom, top, labels_and_colours):
    """Boxes stacked from `bottom` to `top`, first label lowest; returns each box's (x, y, w, h)."""
    n = len(labels_and_colours)
    if n == 0:
        return []
    step = (top - bottom) / n
    boxes = []
    for i, (label, colour) in enumerate(labels_and_colours):
        y = bottom + i * step + 0.06
        _box(ax, x, y, w, step - 0.12, label, colour)
        boxes.append((x, y, w, step - 0.12))
    return boxes


def draw_architecture(config: ShapesVLPConfig, name: str | None = None) -> Image.Image:
    """The diagram of `config` as a picture; the objectives, masking and models it stands for come from
    its architecture file when it was built from one."""
    spec = load_architecture(config.architecture) if config.architecture in list_architectures() else {}
    objectives, masking, stands_for = spec.get("objectives"), spec.get("masking"), spec.get("stands_for")
    with _DRAW_LOCK:
        fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=100)
        try:
            _draw(ax, config, masking)
            title = name or config.architecture or "model"
            ax.set_title(f"{title}" + (f"  ·  like {stands_for}" if stands_for else ""), fontsize=11, loc="left")
            concepts = architecture_concepts(config, masking)
            trained = [OBJECTIVE_WORDS.get(k, k) for k, v in (objectives or {}).items() if v > 0]
            footer = "\n".join(["▸ " + c for c in concepts] + (["Trained with: " + ", ".join(trained)] if trained else []))
            ax.text(0.0, -0.35, footer, ha="left", va="top", fontsize=8.5, color="#1e293b", transform=ax.transData)
            ax.set_xlim(-0.1, 10.1)
            ax.set_ylim(-0.45 - 0.42 * footer.count("\n"), 10.2)
            ax.axis("off")
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", bbox_inches="tight")
        finally:
            plt.close(fig)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def _draw(ax, config: ShapesVLPConfig, masking: str | None) -> None:
    grid = f"{config.grid_size}×{config.grid_size}"
    embedder = "shallow CNN" if config.image_embedder == "shallow_cnn" else "conv stem"
    bottom, top = 1.6, 8.0
    kind = config.fusion

    _box(ax, 0.2, 0.0, 3.4, 0.6, f"image {config.image_size}×{config.image_size} px", "#f1f5f9")
    _box(ax, 0.2, 0.8, 3.4, 0.6, f"{embedder} → {grid} patches", IMAGE_ONLY)
    text_x = 4.3  # left edge of the text column
    if kind != "decoder":
        _box(ax, text_x, 0.0, 3.2, 0.6, "question / caption words", "#f1f5f9")
        _box(ax, text_x, 0.8, 3.2, 0.6, "word embeddings", TEXT_ONLY)

    vision = [(f"image layer {i}\nself-attention", IMAGE_ONLY) for i in range(config.vision_layers)]
    if kind == "cross_attention":
        vision_boxes = _column(ax, 0.2, 3.4, bottom, top * 0.6, vision)
        text = [(f"text layer {i}" + ("\n+ cross-attention → image" if i >= config.fusion_layer else "\nwords only"),
                 BOTH if i >= config.fusion_layer else TEXT_ONLY) for i in range(config.text_layers)]
        text_boxes = _column(ax, text_x, 3.2, bottom, top, text)
        fused = text_boxes[config.fusion_layer]
        source = vision_boxes[-1] if vision_boxes else (0.2, 0.8, 3.4, 0.6)
        _arrow(ax, (source[0] + source[2], source[1] + source[3] / 2), (fused[0], fused[1] + fused[3] / 2))
        if config.decoder_layers and "lm" in config.heads:
            _column(ax, 7.9, 2.0, bottom, top * 0.75, [(f"decoder {i}\ncausal + cross", BOTH) for i in range(config.decoder_layers)])
            ax.text(8.9, top * 0.75 + 0.1, "writes answers,\ncaptions", ha="center", va="bottom", fontsize=7)
    elif kind == "merged":
        vision_boxes = _column(ax, 0.2, 3.4, bottom, bottom + 0.9 * len(vision), vision)
        start = bottom + 0.9 * len(vision) + 0.1
        merged = [(f"layer {i}: words + patches in one sequence" if i >= config.fusion_layer
                   else f"layer {i}: words and patches side by side, kept apart", BOTH if i >= config.fusion_layer else "#e2e8f0")
                  for i in range(config.text_layers)]
        _column(ax, 0.2, 7.3, start, top, merged)
        _arrow(ax, (5.9, 1.45), (5.9, start))
    elif kind == "co_attention":
        image_stream = vision + [(f"image stream {config.fusion_layer + i}\n+ co-attention", BOTH) for i in range(len(config.fused_layers))]
        image_boxes = _column(ax, 0.2, 3.4, bottom, top, image_stream)
        text = [(f"text layer {i}" + ("\n+ co-attention" if i >= config.fusion_layer else "\nwords only"),
                 BOTH if i >= config.fusion_layer else TEXT_ONLY) for i in range(config.text_layers)]
        text_boxes = _column(ax, text_x, 3.2, bottom, top, text)
        for i in range(len(config.fused_layers)):
            left = image_boxes[len(vision) + i]
            right = text_boxes[config.fusion_layer + i]
            _arrow(ax, (left[0] + left[2], left[1] + left[3] / 2), (right[0], right[1] + right[3] / 2), both=True)
    elif kind == "none":
        image_top = _column(ax, 0.2, 3.4, bottom, top - 0.2, vision)[-1]
        text_top = _column(ax, text_x, 3.2, bottom, top - 0.2, [(f"text layer {i}\nwords only", TEXT_ONLY) for i in range(config.text_layers)])[-1]
        _box(ax, 1.9, top + 0.1, 4.1, 0.55, "dot product of the two summaries", SCORE_COLOUR)
        for x, y, w, h in (image_top, text_top):
            _arrow(ax, (x + w / 2, y + h), (x + w / 2, top + 0.1))
    else:  # decoder
        vision_boxes = _column(ax, 0.2, 3.4, bottom, top * 0.6, vision)
        _box(ax, text_x, 0.0, 3.2, 0.6, "question words, then the answer", "#f1f5f9")
        decoder = _column(ax, text_x, 3.2, 0.8, top, [(f"decoder layer {i}\ncausal self-attn + cross → image", BOTH) for i in range(config.decoder_layers)])
        source = vision_boxes[-1] if vision_boxes else (0.2, 0.8, 3.4, 0.6)
        _arrow(ax, (source[0] + source[2], source[1] + source[3] / 2), (decoder[0][0], decoder[0][1] + decoder[0][3] / 2))

    heads = config.heads
    width = 9.8 / max(len(heads), 1)
    for i, head in enumerate(heads):
        _box(ax, 0.1 + i * width, 8.95, width - 0.15, 0.95, HEAD_WORDS.get(head, head), HEAD_COLOUR, size=7.5)
    ax.text(0.1, 10.0, "heads", fontsize=8, color="#166534", va="bottom")
    for colour, words, x in ((TEXT_ONLY, "sees words", 4.2), (IMAGE_ONLY, "sees the image", 6.0), (BOTH, "sees both", 8.2)):
        ax.add_patch(FancyBboxPatch((x, 10.05), 0.25, 0.2, boxstyle="square,pad=0", facecolor=colour, edgecolor="#334155", linewidth=0.5))
        ax.text(x + 0.32, 10.15, words, fontsize=7, va="center")
