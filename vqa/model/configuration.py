"""Configuration of the embedded model: every size lives here, nowhere else."""

from __future__ import annotations

from transformers import PretrainedConfig


class ShapesVLPConfig(PretrainedConfig):
    """A small BLIP-style model: ViT (with a convolutional stem), a text encoder whose
    layers from `fusion_layer` up cross-attend to the image, and a causal text decoder.

    The answer vocabulary of the classifier head is `id2label` / `label2id`, as for any
    transformers classification model.
    """

    model_type = "shapes-vlp"

    def __init__(
        self,
        vocab_size: int = 4025,
        hidden_size: int = 192,
        num_attention_heads: int = 4,
        intermediate_size: int = 768,
        image_size: int = 96,
        patch_size: int = 8,  # the conv stem downsamples by this factor: grid = image_size // patch_size
        num_channels: int = 3,
        vision_layers: int = 2,
        text_layers: int = 4,
        fusion_layer: int = 1,  # text layers >= fusion_layer cross-attend to the image (0 = early fusion)
        decoder_layers: int = 2,
        max_text_length: int = 64,  # long enough for a five-object caption
        itc_dim: int = 128,  # shared space of the image-text contrastive projections
        # Add a fixed 2D sine-cosine encoding of each patch's grid position to the vision tower's
        # output, so the text side reads where a patch is as well as what it shows (see VisionTransformer).
        output_position_encoding: bool = True,
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
        **kwargs,
    ):
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_attention_heads {num_attention_heads}")
        if not 0 <= fusion_layer < text_layers:
            raise ValueError(f"fusion_layer must be in [0, {text_layers - 1}] (text_layers={text_layers}), got {fusion_layer}")
        if image_size % patch_size or patch_size & (patch_size - 1):
            raise ValueError("patch_size must be a power of two that divides image_size (the stem halves the image per conv)")
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
        """Indices of the text layers that have cross-attention."""
        return list(range(self.fusion_layer, self.text_layers))
