"""Two checkpoints behind one backbone entry ("idA+idB"), e.g. BLIP VQA + BLIP captioning.

Each request goes to the first part that can serve it, in the order given: with
"blip-vqa-base+blip-image-captioning-base", answers and attention maps come from the
VQA model and captions from the captioning model. Each part keeps its own image cache
(their vision encoders have different weights, so encodings cannot be shared).
"""

from __future__ import annotations

from vqa.backbones.base import Backbone
from vqa.backbones.hub.common import human_count
from vqa.results import ModelInfo


class PairedBackbone(Backbone):
    def __init__(self, parts: list[Backbone], name: str):
        super().__init__(name, parts[0].quantization)
        self.parts = parts
        self.capabilities = frozenset().union(*(p.capabilities for p in parts))
        # Each part counts its parameters from its config, so the total is the same whatever the quantization.
        self.num_parameters = sum(p.num_parameters for p in parts)
        families = list(dict.fromkeys(p.family for p in parts))
        self.family = "+".join(families)

    def part_for(self, capability: str) -> Backbone:
        """The first part that has `capability` (the base class already checked one does)."""
        return next(p for p in self.parts if capability in p.capabilities)

    def _classify(self, image, question, top_k, candidates):
        return self.part_for("classifier")._classify(image, question, top_k=top_k, candidates=candidates)

    def _generate_answer(self, image, question, **decoding):
        return self.part_for("generative")._generate_answer(image, question, **decoding)

    def _caption(self, image, **decoding):
        return self.part_for("caption")._caption(image, **decoding)

    def _explain(self, image, question, answer):
        return self.part_for("explain")._explain(image, question, answer=answer)

    def _match(self, images, texts):
        return self.part_for("itm")._match(images, texts)

    def score_texts(self, image, texts):
        return self.part_for("itm").score_texts(image, texts)

    def memory_bytes(self) -> int:
        return sum(p.memory_bytes() for p in self.parts)

    def clear_caches(self) -> None:
        for part in self.parts:
            part.clear_caches()

    def info(self) -> ModelInfo:
        infos = [p.info() for p in self.parts]
        routes = {cap: self.part_for(cap).name for cap in sorted(self.capabilities)}
        facts = {"parts": " + ".join(i.name for i in infos), "parameters": human_count(self.num_parameters),
                 **{f"{cap} from": name for cap, name in routes.items()}}
        for i in infos:
            facts.update({f"{i.name}: {k}": v for k, v in i.facts.items()})
        notes = [f"Two checkpoints in one entry; each request goes to the first part that can serve it "
                 f"({', '.join(f'{c} → {n}' for c, n in routes.items())})."]
        notes += [f"{i.name}: {n}" for i in infos for n in i.notes]
        return ModelInfo(name=self.name, family=self.family, description=" | ".join(i.description for i in infos),
                         facts=facts, capabilities=sorted(self.capabilities), quantization=self.quantization,
                         notes=notes)
