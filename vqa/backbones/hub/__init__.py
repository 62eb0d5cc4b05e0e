"""Hub backbones: BLIP, ViLT, VisionEncoderDecoder and CLIP checkpoints behind the `Backbone` API.

`load_hub_backbone(name_or_path, quantize=None, progress=None)` loads a hub id or a local
folder (or two joined by "+"); `HUB_MODELS` lists the checkpoints the app offers;
`hub_availability(name)` says whether one can be loaded here, without loading it.
One module per family; `loader.py` finds, checks and quantizes checkpoints.
"""

from vqa.backbones.hub.availability import Availability, hub_availability
from vqa.backbones.hub.catalog import HUB_MODELS, PAIR_SEPARATOR
from vqa.backbones.hub.loader import load_hub_backbone

__all__ = ["HUB_MODELS", "PAIR_SEPARATOR", "Availability", "hub_availability", "load_hub_backbone"]
