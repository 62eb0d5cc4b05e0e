"""The embedded vision-language models: one model core, every architecture of the family a config."""

from vqa.model.configuration import ShapesVLPConfig
from vqa.model.factory import architecture_config, create_model, list_architectures, load_architecture
from vqa.model.modeling import ShapesVLPForVQA, ShapesVLPTextDecoder
from vqa.model.outputs import FusionOutput, ShapesVLPOutput

__all__ = [
    "FusionOutput", "ShapesVLPConfig", "ShapesVLPForVQA", "ShapesVLPOutput", "ShapesVLPTextDecoder",
    "architecture_config", "create_model", "list_architectures", "load_architecture",
]
