"""The embedded vision-language model (BLIP-style multimodal mixture of encoder-decoder)."""

from vqa.model.configuration import ShapesVLPConfig
from vqa.model.modeling import ShapesVLPForVQA, ShapesVLPTextDecoder

__all__ = ["ShapesVLPConfig", "ShapesVLPForVQA", "ShapesVLPTextDecoder"]
