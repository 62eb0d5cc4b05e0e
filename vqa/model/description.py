"""An architecture in words, from its config: the facts the app's model card shows and the sentence
under its attention maps."""

from __future__ import annotations

from vqa.model.configuration import ShapesVLPConfig

ARCHITECTURE_WORDS = {
    "cross_attention": "BLIP-style mixture of encoder-decoder: a vision transformer, a text encoder fused with the image by cross-attention",
    "merged": "single stream: question tokens and image patches in one transformer, told apart by a modality-type embedding",
    "co_attention": "dual stream: a text stream and an image stream that exchange cross-attention (co-attention)",
    "none": "dual encoder: an image tower and a text tower that meet only in a shared contrastive space (late fusion)",
    "decoder": "encoder-decoder: an image encoder and a causal text decoder that reads the question and cross-attends to the image",
}
FIT_WORDS = {
    "squash": "a picture of another shape is squashed to the square",
    "letterbox": "a picture of another shape keeps its proportions, the rest of the square filled with grey",
}
EMBEDDER_WORDS = {"conv_stem": "a convolutional stem", "shallow_cnn": "a shallow CNN of 2×2 stride-2 convolutions"}


def fusion_depth(config: ShapesVLPConfig) -> str:
    """Early, mid or late fusion, by where the first fused layer sits in the text stack."""
    if config.fusion_layer == 0:
        return "early"
    return "late" if config.fusion_layer == config.text_layers - 1 else "mid"


def describe(config: ShapesVLPConfig) -> dict[str, str]:
    """{fact: words} about the model's parts."""
    c = config
    facts = {
        "Architecture": ARCHITECTURE_WORDS[c.fusion] + (", and a text decoder" if c.fusion != "decoder" and "lm" in c.heads else ""),
        "Image input": f"{c.image_size}×{c.image_size} pixels ({FIT_WORDS[c.image_fit]}), cut into a {c.grid_size}×{c.grid_size} grid of {c.patch_size}×{c.patch_size} patches by {EMBEDDER_WORDS[c.image_embedder]}",
        "Vision encoder": f"{c.vision_layers} transformer layers",
    }
    last = c.text_layers - 1
    if c.fusion == "cross_attention":
        facts["Text encoder"] = f"{c.text_layers} layers; layers {c.fusion_layer}–{last} look at the image (cross-attention), layers below read the question alone"
    elif c.fusion == "merged":
        facts["Merged layers"] = f"{c.text_layers} layers over text and image together" + (
            f"; layers below {c.fusion_layer} keep the two apart" if c.fusion_layer else "")
    elif c.fusion == "co_attention":
        facts["Streams"] = f"a text stream of {c.text_layers} layers; layers {c.fusion_layer}–{last} exchange cross-attention with an image stream"
    elif c.fusion == "none":
        facts["Text encoder"] = f"{c.text_layers} layers that never see the image"
    if c.text_encoder is not None:
        facts["Question words"] = f"read first by the frozen pretrained sentence encoder {c.text_encoder}, whose token states are projected into the text layers"
    if c.fusion in ("cross_attention", "merged", "co_attention"):
        facts["Fusion layer"] = f"{c.fusion_layer} ({fusion_depth(c)} fusion)"
    if "lm" in c.heads:
        facts["Text decoder"] = f"{c.decoder_layers} causal layers that write answers and captions"
    facts["Hidden size / heads"] = f"{c.hidden_size} / {c.num_attention_heads} attention heads"
    return facts


def describe_attention(config: ShapesVLPConfig) -> str:
    """One sentence saying what this architecture's attention maps are."""
    grid = f"{config.grid_size}×{config.grid_size}"
    layers = ", ".join(map(str, config.fused_layers))
    if config.fusion == "cross_attention":
        return (f"Cross-attention of the text encoder's fusion layers ({layers}) from each question token onto the {grid} "
                "image patches; the image [CLS] column is left out and rows renormalised.")
    if config.fusion == "merged":
        return (f"The text-to-image block of the merged self-attention in layers {layers}: each question token's attention "
                f"over the {grid} image patches, renormalised to sum to 1 over the image.")
    if config.fusion == "co_attention":
        return (f"Co-attention of the text stream onto the image stream in the connection layers ({layers}), over the {grid} "
                "image patches; the image [CLS] column is left out and rows renormalised.")
    if config.fusion == "decoder":
        return (f"Cross-attention of the text decoder's layers ({layers}) from each question token onto the {grid} image "
                "patches, while it reads the question.")
    return ("Not attention: a dual encoder's towers never attend to each other. Each question token's projected state is "
            f"compared with each of the {grid} image patches in the contrastive space (softmax of the similarities).")
