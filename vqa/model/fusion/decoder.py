"""Decoder fusion, the encoder–decoder (VisionEncoderDecoder: a ViT with a GPT-2 or BERT decoder): no text
encoder at all. The causal decoder reads the question as the start of its input and cross-attends to the
image in every layer, then writes the answer after [ANS]:

    image ─ image encoder ─────────────────────► image states
                                                   │ cross-attention (every decoder layer)
    [CLS] question [SEP] [ANS] ─ causal decoder ─► answer tokens

Generative answers and captions only: there is no fused summary for a classifier or ITM head.
"""

from __future__ import annotations

from vqa.model.outputs import FusionOutput

ATTENTION_KIND = "decoder cross-attention"


def decoder_fusion(decoder, input_ids, attention_mask, image_embeds, image_index=None, output_attentions=False) -> FusionOutput:
    """The decoder's pass over the question with the image. input_ids: (B, T); image_embeds: (B_img, 1+N, H)."""
    image = image_embeds if image_index is None else image_embeds[image_index]  # (B, 1+N, H)
    out = decoder(
        input_ids=input_ids, attention_mask=attention_mask, encoder_hidden_states=image,
        output_attentions=output_attentions, output_hidden_states=True,
    )
    return FusionOutput(
        text_states=out.hidden_states[-1],  # (B, T, H)
        image_states=image,
        text_to_image=out.cross_attentions if output_attentions else None,
        text_self_attentions=out.attentions if output_attentions else None,
    )
