"""Hub checkpoints the app offers in its model dropdown.

Sizes are the approximate fp32 safetensors download. Any other checkpoint of a
supported family loads too (`load_hub_backbone("owner/name")` or a local folder).
"""

from __future__ import annotations

#: Joins two checkpoints into one backbone entry: "idA+idB" (see `load_hub_backbone`).
PAIR_SEPARATOR = "+"

HUB_MODELS: list[dict[str, str]] = [
    {
        "id": "Salesforce/blip-vqa-base",
        "family": "blip",
        "does": "answers questions: generated answers, or ranks candidate answers; cross-attention maps",
        "size": "≈1.5 GB",
    },
    {
        "id": "Salesforce/blip-image-captioning-base",
        "family": "blip",
        "does": "writes captions (optionally continuing a prompt); cross-attention maps per caption word",
        "size": "≈1.0 GB",
    },
    {
        "id": "Salesforce/blip-itm-base-coco",
        "family": "blip",
        "does": "image-text matching (ITM) and similarity (ITC); ranks candidate answers or captions",
        "size": "≈0.9 GB",
    },
    {
        "id": "dandelin/vilt-b32-finetuned-vqa",
        "family": "vilt",
        "does": "answers questions from 3,129 fixed answers (sigmoid scores); text→image attention block",
        "size": "≈0.47 GB",
    },
    {
        "id": "nlpconnect/vit-gpt2-image-captioning",
        "family": "vision-encoder-decoder",
        "does": "writes captions (ViT encoder + GPT-2 decoder); cannot answer questions",
        "size": "≈1.0 GB",
    },
    {
        "id": "openai/clip-vit-base-patch32",
        "family": "clip",
        "does": "image-text similarity; zero-shot ranking of candidate answers; gradient maps (no fusion layer)",
        "size": "≈0.6 GB",
    },
    {
        "id": "Salesforce/blip-vqa-base" + PAIR_SEPARATOR + "Salesforce/blip-image-captioning-base",
        "family": "blip",
        "does": "BLIP VQA for answers and attention maps + BLIP captioning for captions, in one entry",
        "size": "≈2.5 GB",
    },
]
