"""Configuration of the embedded models: every size lives here, nowhere else.

One config describes every architecture of the family: `fusion` names how vision and language
meet (one module per kind in `vqa/model/fusion/`), `image_embedder` how pixels become patches, and
`heads` which outputs the model has. The named architectures are files in
`vqa/model/architectures/` that set these fields (see `vqa.model.factory`).
"""

from __future__ import annotations

from transformers import PretrainedConfig

FUSION_KINDS = ("cross_attention", "merged", "co_attention", "none", "decoder")
IMAGE_EMBEDDERS = ("conv_stem", "shallow_cnn")
# classifier: fixed answer vocabulary on the fused summary; itm: image-text match on the fused summary;
# itc: projections of the unimodal towers for contrastive similarity; lm: the causal text decoder (answers,
# captions); patch: attributes of the object under each image patch; mlm: masked words from the fused
# text states; recon: the whole image back from the fused image states (MLIM's deconvolution decoder).
HEADS = ("classifier", "itm", "itc", "lm", "patch", "mlm", "recon")
DEFAULT_HEADS = ("classifier", "itm", "itc", "lm", "patch")
# Heads that read a fused summary or fused text states: kinds where the towers never meet can't have them.
FUSED_HEADS = {"classifier", "itm", "mlm"}
FUSING_KINDS = ("cross_attention", "merged", "co_attention")


class ShapesVLPConfig(PretrainedConfig):
    """A small vision-language model of any of the family's architectures. The defaults are the
    shipped model: BLIP-style, a ViT with a convolutional stem, a text encoder whose layers from
    `fusion_layer` up cross-attend to the image, and a causal text decoder.

    The answer vocabulary of the classifier head is `id2label` / `label2id`, as for any
    transformers classification model.
    """

    model_type = "shapes-vlp"

    def __init__(
        self,
        architecture: str | None = None,  # the name of the file in vqa/model/architectures/ it was built from
        fusion: str = "cross_attention",
        image_embedder: str = "conv_stem",
        # How a picture of another shape than the square input is fitted to it (vqa/image_fit.py): "squash" or
        # "letterbox" (its proportions kept, the rest filled with the normalisation mean).
        image_fit: str = "squash",
        heads: list[str] | tuple[str, ...] = DEFAULT_HEADS,
        vocab_size: int = 4025,
        hidden_size: int = 192,
        num_attention_heads: int = 4,
        intermediate_size: int = 768,
        image_size: int = 96,
        patch_size: int = 8,  # the conv stem downsamples by this factor: grid = image_size // patch_size
        num_channels: int = 3,
        vision_layers: int = 2,
        text_layers: int = 4,
        fusion_layer: int = 1,  # text layers >= fusion_layer see the image (0 = early fusion); unused by "none" and "decoder"
        decoder_layers: int = 2,
        max_text_length: int = 64,  # long enough for a five-object caption
        itc_dim: int = 128,  # shared space of the image-text contrastive projections
        # Add a fixed 2D sine-cosine encoding of each patch's grid position to the vision tower's
        # output, so the text side reads where a patch is as well as what it shows (see VisionTransformer).
        output_position_encoding: bool = True,
        # A learned embedding that replaces masked patches (UNITER's mask embedding), for objectives that
        # hide part of the image: masked vision modelling and MLIM's reconstruction.
        image_mask_token: bool = False,
        # A frozen pretrained sentence encoder as the text towers' first stage (vqa/model/pretrained_text.py), by
        # name; None: the towers embed the package tokenizer's word pieces themselves. The decoder keeps its own.
        text_encoder: str | None = None,
        patch_attributes: dict[str, int] | None = None,  # attribute -> number of values, for the patch-attribute objective
        layer_norm_eps: float = 1e-6,
        dropout: float = 0.0,  # synthetic data never repeats a sample: no need to regularise
        initializer_range: float = 0.02,
        image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5),
        image_std: tuple[float, float, float] = (0.25, 0.25, 0.25),
        pad_token_id: int = 0,
        cls_token_id: int = 2,
        sep_token_id: int = 3,
        answer_start_token_id: int = 5,
        caption_start_token_id: int = 6,
        mask_token_id: int = 4,
        **kwargs,
    ):
        if fusion not in FUSION_KINDS:
            raise ValueError(f"fusion must be one of {', '.join(FUSION_KINDS)}, got {fusion!r}")
        from vqa.image_fit import FITS

        if image_fit not in FITS:
            raise ValueError(f"image_fit must be one of {', '.join(FITS)}, got {image_fit!r}")
        if image_embedder not in IMAGE_EMBEDDERS:
            raise ValueError(f"image_embedder must be one of {', '.join(IMAGE_EMBEDDERS)}, got {image_embedder!r}")
        heads = list(heads)
        unknown = set(heads) - set(HEADS)
        if unknown:
            raise ValueError(f"unknown heads {sorted(unknown)}: choose from {', '.join(HEADS)}")
        if fusion not in FUSING_KINDS and FUSED_HEADS & set(heads):
            raise ValueError(f"fusion {fusion!r} has no fused states for the heads {sorted(FUSED_HEADS & set(heads))}")
        if fusion == "decoder" and "itc" in heads:
            raise ValueError("fusion 'decoder' has no text tower for the itc head")
        if fusion == "decoder" and "lm" not in heads:
            raise ValueError("fusion 'decoder' answers through its decoder: it needs the lm head")
        if fusion == "none" and "itc" not in heads:
            raise ValueError("fusion 'none' (dual encoder) relates image and text only through the itc head")
        if "lm" in heads and decoder_layers < 1:
            raise ValueError("the lm head needs decoder_layers >= 1")
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_attention_heads {num_attention_heads}")
        if fusion in FUSING_KINDS and not 0 <= fusion_layer < text_layers:
            raise ValueError(f"fusion_layer must be in [0, {text_layers - 1}] (text_layers={text_layers}), got {fusion_layer}")
        if text_encoder is not None:
            from vqa.model.pretrained_text import PRETRAINED_TEXT_ENCODERS

            if text_encoder not in PRETRAINED_TEXT_ENCODERS:
                raise ValueError(f"unknown text encoder {text_encoder!r}: choose one of {', '.join(PRETRAINED_TEXT_ENCODERS)}")
            # its questions are word pieces of the encoder's tokenizer, which the decoder and the MLM head don't share
            if fusion == "decoder" or "mlm" in heads:
                raise ValueError("a pretrained text encoder needs a text tower whose words no decoder or MLM head reads back")
        if image_size % patch_size or patch_size & (patch_size - 1):
            raise ValueError("patch_size must be a power of two that divides image_size (the stem halves the image per conv)")
        self.architecture = architecture
        self.fusion = fusion
        self.image_embedder = image_embedder
        self.image_fit = image_fit
        self.heads = heads
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_channels = num_channels
        self.vision_layers = vision_layers
        self.text_layers = text_layers
        self.fusion_layer = fusion_layer
        self.decoder_layers = decoder_layers
        self.max_text_length = max_text_length
        self.itc_dim = itc_dim
        self.output_position_encoding = output_position_encoding
        self.image_mask_token = image_mask_token
        self.text_encoder = text_encoder
        # Sorted by name: the patch head's output is split in this order, and save_pretrained writes
        # the config with sorted keys, so any other order would change meaning across a save/load.
        self.patch_attributes = dict(sorted((patch_attributes or {"color": 12, "shape": 8, "size": 2}).items()))
        self.layer_norm_eps = layer_norm_eps
        self.dropout = dropout
        self.initializer_range = initializer_range
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)
        self.cls_token_id = cls_token_id
        self.answer_start_token_id = answer_start_token_id
        self.caption_start_token_id = caption_start_token_id
        self.mask_token_id = mask_token_id
        kwargs.setdefault("eos_token_id", sep_token_id)  # [SEP] ends generated answers and captions
        super().__init__(pad_token_id=pad_token_id, sep_token_id=sep_token_id, **kwargs)

    @property
    def grid_size(self) -> int:
        """Patches per image side."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**2

    @property
    def fused_layers(self) -> list[int]:
        """Indices of the layers where text meets the image: the text layers from the fusion layer up, the
        decoder's layers for "decoder", none for a dual encoder."""
        if self.fusion == "decoder":
            return list(range(self.decoder_layers))
        if self.fusion == "none":
            return []
        return list(range(self.fusion_layer, self.text_layers))

