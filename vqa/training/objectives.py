"""The training objectives, as a registry keyed by the loss weight that switches each one on.

A recipe's `loss_weights` (or its architecture's `objectives`) says which objectives train and how much
each counts: `{"classifier": 1.0, "mlm": 0.5}`. Adding an objective is one function decorated with
`@objective(name, needs=...)` and one weight key; an ablation is one number set to 0.

| key | objective | stands for |
|---|---|---|
| `classifier` | cross-entropy over the answer vocabulary on the fused summary | VQA as classification |
| `generative` | the decoder writes "[ANS] answer [SEP]" | BLIP's answer decoder |
| `caption` | the decoder writes "[CAP] caption [SEP]" from the image | LM |
| `prefix_lm` | the decoder reads the first words of a caption bidirectionally and writes the rest | SimVLM's PrefixLM |
| `itc` | contrastive alignment of image [CLS] and unimodal caption [CLS] | CLIP, ALBEF, BLIP |
| `itm` | match / no match of fused (image, caption) pairs, hard negatives mined from ITC when the model has it | UNITER, ALBEF, BLIP |
| `mlm` | masked caption words predicted from the fused text states | BERT with the image: VisualBERT, UNITER, MLIM |
| `mvm` | masked patches' colour, shape and size predicted from the fused image states | UNITER's and LXMERT's masked region classification |
| `patch` | each patch's colour, shape and size (or "none") from the image encoder alone | LXMERT's object attributes, on patches |
| `grounding` | in the first fused layer, the words of an object phrase attend to that object | UNITER's word-region alignment, GLIP |
| `recon` | the whole image back from the fused image states, squared error per pixel | MLIM's RECON |

Why the patch and grounding objectives (the model card has the measurements): without the patch objective,
perception has to be learned through the answers alone, and the first steps stay on the answer prior; without
grounding, VQA also stays on its prior for hundreds of steps. A phrase that names nothing in the image ("is
there a star?" with no star) attends to the image [CLS], the "no object" slot. Because grounding is trained,
pointing accuracy on held-out questions measures how well a trained grounding generalises, not an emergent one.

Masking. With `masking="per_objective"` MLM hides caption words only and MVM patches only (UNITER masks one
modality at a time). With `"modality_aware"` (MLIM) MLM and RECON share one masked pass, and each sample draws
one of `MASKING_REGIMES`: most of the image hidden and the text kept, most of the text hidden and the image
kept, or a little of both, so that neither modality can be learned while ignoring the other.

Every objective reads the batch (`vqa.training.targets`) and the model's passes through `Step`, which runs each
pass at most once per step and reads the model only through its public methods and output types.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import torch
import torch.nn.functional as F

from vqa.model import ShapesVLPForVQA, ShapesVLPOutput
from vqa.training.recipes import TrainConfig, loss_weights, masking

TEXT_MASK_RATE = 0.15  # BERT's share of masked words
IMAGE_MASK_RATE = 0.3  # share of patches hidden for masked vision modelling
# Modality-aware masking (MLIM): (share of words hidden, share of patches hidden), one regime per sample.
MASKING_REGIMES = {"image_heavy": (0.0, 0.8), "text_heavy": (0.8, 0.0), "both_light": (0.15, 0.15)}
MASKING_SCHEMES = ("per_objective", "modality_aware")


@dataclass(frozen=True)
class Objective:
    name: str
    loss: Callable[["Step"], torch.Tensor]
    needs: tuple[str, ...]  # the model heads it trains
    fusions: tuple[str, ...] | None  # the fusion kinds whose passes it reads; None: any
    fusion_need: str  # what those fusion kinds have, for the refusal's message


OBJECTIVES: dict[str, Objective] = {}


# Fusion kinds whose text and image states have met in an encoder (the decoder's meet only in its own pass).
FUSED = ("cross_attention", "merged", "co_attention")
FUSED_NEED = "text and image states that have met"


def objective(name: str, needs: tuple[str, ...] = (), fusions: tuple[str, ...] | None = None, fusion_need: str = FUSED_NEED):
    """Register a loss function under the weight key `name`."""
    def register(loss: Callable[["Step"], torch.Tensor]):
        OBJECTIVES[name] = Objective(name, loss, needs, fusions, fusion_need)
        return loss
    return register


def check_objectives(model: ShapesVLPForVQA, weights: dict[str, float], masking_scheme: str = "per_objective") -> None:
    """Refuse, before any training, objectives that are unknown or that the architecture has no heads for."""
    unknown = set(weights) - set(OBJECTIVES)
    if unknown:
        raise ValueError(f"unknown objectives {sorted(unknown)}: choose from {', '.join(sorted(OBJECTIVES))}")
    if masking_scheme not in MASKING_SCHEMES:
        raise ValueError(f"masking must be one of {', '.join(MASKING_SCHEMES)}, got {masking_scheme!r}")
    config = model.config
    for name, weight in weights.items():
        if not weight:
            continue
        spec = OBJECTIVES[name]
        missing = [head for head in spec.needs if not model.has_head(head)]
        if missing:
            raise ValueError(f"objective {name!r} needs the {', '.join(missing)} head, which architecture {config.architecture or config.fusion!r} does not have")
        if spec.fusions is not None and config.fusion not in spec.fusions:
            raise ValueError(f"objective {name!r} needs {spec.fusion_need}; fusion {config.fusion!r} has none")
        if name in ("mvm", "recon") and not config.image_mask_token:
            raise ValueError(f"objective {name!r} hides patches: the model needs image_mask_token")


# ----- the shared passes ------------------------------------------------------------------
class Step:
    """One training batch and the model passes its objectives share, each run at most once."""

    def __init__(self, model: ShapesVLPForVQA, batch: dict, train_config: TrainConfig):
        self.model = model
        self.batch = batch
        self.tc = train_config
        self.weights = loss_weights(train_config)
        self.masking = masking(train_config)
        # the batch's own random stream: the same draws whichever process or micro-step computes it
        self.generator = torch.Generator(device=batch["pixel_values"].device)
        self.generator.manual_seed(batch.get("generator_seed", train_config.seed))

    @cached_property
    def image_embeds(self) -> torch.Tensor:
        return self.model.encode_image(self.batch["pixel_values"])[0]  # (B_img, 1+N, H)

    @cached_property
    def questions(self) -> ShapesVLPOutput:
        """Every question with its image; each image is encoded once and shared by its questions."""
        q = self.batch["question"]
        return self.model(
            input_ids=q["input_ids"], attention_mask=q["attention_mask"], image_embeds=self.image_embeds,
            image_index=self.batch["image_index"], output_attentions=True,
        )

    @cached_property
    def pair_count(self) -> int:
        """ITC and ITM run on the first `itm_images` images and their captions: they only shape the representation."""
        return min(self.tc.itm_images, self.image_embeds.shape[0])

    @cached_property
    def captions(self) -> dict[str, torch.Tensor]:
        return {k: v[: self.pair_count] for k, v in self.batch["caption_text"].items()}

    @cached_property
    def caption_similarity(self) -> torch.Tensor:
        """(n, n) ITC similarities of the first n images and their captions."""
        text = self.captions
        return self.model.image_text_similarity(self.image_embeds[: self.pair_count], text["input_ids"], text["attention_mask"])

    @cached_property
    def matching(self) -> ShapesVLPOutput:
        """Each of the n images with its own caption, then with another image's: 2n fused pairs."""
        n = self.pair_count
        own = torch.arange(n, device=self.image_embeds.device)
        if self.model.has_head("itc"):
            with torch.no_grad():  # hard negatives: a caption the model finds similar but belongs to another image
                negative_weights = self.caption_similarity.float().softmax(dim=1) + 1e-6
                negative_weights.fill_diagonal_(0)
                negatives = torch.multinomial(negative_weights, 1, generator=self.generator).squeeze(1)  # (n,)
        else:  # any other image's caption
            negatives = (own + torch.randint(1, n, (n,), device=own.device, generator=self.generator)) % n
        text = self.captions
        return self.model(
            input_ids=torch.cat([text["input_ids"], text["input_ids"][negatives]]),
            attention_mask=torch.cat([text["attention_mask"], text["attention_mask"][negatives]]),
            image_embeds=self.image_embeds[:n], image_index=torch.cat([own, own]), output_attentions=True,
        )

    def masked_pass(self, text_rate: torch.Tensor, image_rate: torch.Tensor) -> dict:
        """Every image with its caption, a share of each sample's words and patches hidden.
        text_rate, image_rate: (B_img,) the share for each sample."""
        ids = self.batch["caption_text"]["input_ids"]  # (B_img, T)
        mask = self.batch["caption_text"]["attention_mask"]
        config = self.model.config
        text_rate, image_rate = text_rate.to(ids.device), image_rate.to(ids.device)
        maskable = mask.bool() & (ids != config.cls_token_id) & (ids != config.sep_token_id)  # (B_img, T)
        hidden_words = maskable & (torch.rand(ids.shape, device=ids.device, generator=self.generator) < text_rate[:, None])  # (B_img, T)
        hidden_patches = None
        if image_rate.any():
            grid_cells = config.num_patches
            hidden_patches = torch.rand((ids.shape[0], grid_cells), device=ids.device, generator=self.generator) < image_rate[:, None]  # (B_img, N)
        out = self.model(
            pixel_values=self.batch["pixel_values"], input_ids=ids.masked_fill(hidden_words, config.mask_token_id),
            attention_mask=mask, patch_mask=hidden_patches,
            image_embeds=None if hidden_patches is not None else self.image_embeds,  # nothing hidden: reuse the encoding
        )
        return {"out": out, "word_targets": ids.masked_fill(~hidden_words, -100), "hidden_patches": hidden_patches}

    @cached_property
    def words_hidden(self) -> dict:
        """The pass MLM reads: caption words hidden (all modalities' regimes under modality-aware masking)."""
        if self.masking == "modality_aware":
            return self.modality_aware
        B = self.batch["pixel_values"].shape[0]
        return self.masked_pass(torch.full((B,), TEXT_MASK_RATE), torch.zeros(B))

    @cached_property
    def patches_hidden(self) -> dict:
        """The pass MVM and RECON read: patches hidden."""
        if self.masking == "modality_aware":
            return self.modality_aware
        B = self.batch["pixel_values"].shape[0]
        return self.masked_pass(torch.zeros(B), torch.full((B,), IMAGE_MASK_RATE))

    @cached_property
    def modality_aware(self) -> dict:
        B = self.batch["pixel_values"].shape[0]
        regimes = torch.tensor(list(MASKING_REGIMES.values()))  # (regimes, 2)
        chosen = regimes[torch.randint(len(regimes), (B,), generator=self.generator, device=self.generator.device).cpu()]  # (B, 2)
        return self.masked_pass(chosen[:, 0], chosen[:, 1])


# ----- losses shared by several objectives ---------------------------------------------------
def grounding_loss(text_to_image: torch.Tensor, token_regions: torch.Tensor, patch_owners: torch.Tensor) -> torch.Tensor:
    """Word-region alignment: -log of the attention mass (heads averaged) that each word of an
    object phrase puts on the objects it names, or on the image [CLS] when it names none.

    text_to_image: (B, heads, T, 1+N) of the first fused layer; token_regions: (B, T, 1+MAX_OBJECTS) bool,
    see `BatchMaker.phrase_token_regions`; patch_owners: (B, N) object under each patch or -1.
    Supervised in the first fused layer, not the last: the layers above must still route what a word
    found to [CLS] (supervising the last layer left VQA on its prior). The "no object" target gives an
    existence question's words something to find when the answer is no: what they bring back from the
    image [CLS] then differs from what an object's patches give.
    """
    attention = text_to_image.mean(1)  # (B, T, 1+N)
    patch_regions = torch.where(patch_owners >= 0, patch_owners + 1, -1)  # (B, N): object i -> region i+1, background -1
    region_of_key = torch.cat([torch.zeros_like(patch_owners[:, :1]), patch_regions], dim=1)  # (B, 1+N): image [CLS] -> region 0
    index = region_of_key.clamp(min=0)[:, None, :].expand(-1, token_regions.shape[1], -1)  # (B, T, 1+N)
    on_target = torch.gather(token_regions, 2, index) & (region_of_key >= 0)[:, None, :]  # (B, T, 1+N); background is no one's target
    mass = (attention * on_target).sum(-1)  # (B, T)
    named = token_regions.any(-1)  # (B, T)
    if not named.any():
        return attention.sum() * 0.0
    return -(mass[named] + 1e-6).log().mean()


def patch_loss(model: ShapesVLPForVQA, image_states: torch.Tensor, patch_labels: dict, object_weight: float,
               only: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of each patch's colour / shape / size (or "none"), averaged over attributes, with patches
    on an object weighted `object_weight` times a background one (most patches are background, so unweighted
    the "none" class would dominate). only: (B, N) bool, the patches to score (all when None)."""
    patch_logits = model.patch_attribute_logits(image_states)  # {attribute: (B, N, values+1)}
    on_object = (patch_labels["owner"] >= 0).flatten().float()  # (B*N,)
    weights = 1.0 + (object_weight - 1.0) * on_object  # (B*N,)
    if only is not None:
        weights = weights * only.flatten().float()
    per_attribute = [
        (F.cross_entropy(logits.flatten(0, 1), patch_labels[name].flatten(), reduction="none") * weights).sum() / weights.sum().clamp_min(1e-6)
        for name, logits in patch_logits.items()
    ]
    return sum(per_attribute) / len(per_attribute)


# ----- the objectives ------------------------------------------------------------------------
@objective("classifier", needs=("classifier",))
def classifier_objective(step: Step) -> torch.Tensor:
    return F.cross_entropy(step.questions.answer_logits, step.batch["answer_ids"])


@objective("generative", needs=("lm",))
def generative_objective(step: Step) -> torch.Tensor:
    q, out = step.batch["question"], step.questions
    inputs = step.model.answer_decoder_inputs(q["input_ids"], q["attention_mask"], out.text_states, out.image_states, answer=step.batch["answer_decoder"])
    return step.model.text_decoder_loss(**inputs)


@objective("caption", needs=("lm",))
def caption_objective(step: Step) -> torch.Tensor:
    return step.model.text_decoder_loss(**step.batch["caption_decoder"], encoder_hidden_states=step.image_embeds)


@objective("prefix_lm", needs=("lm",))
def prefix_lm_objective(step: Step) -> torch.Tensor:
    """A random number of the caption's first words is the prefix, read bidirectionally; the loss is on the rest."""
    caption = step.batch["caption_decoder"]
    shortest = int(caption["attention_mask"].sum(1).min())  # [CAP] + words + [SEP] of the shortest caption
    prefix = int(torch.randint(2, max(shortest - 1, 3), (), generator=step.generator, device=step.generator.device))  # [CAP] and a word or more, a word or more left
    labels = caption["labels"].clone()
    labels[:, :prefix] = -100
    return step.model.text_decoder_loss(**{**caption, "labels": labels}, encoder_hidden_states=step.image_embeds, prefix_length=prefix)


@objective("itc", needs=("itc",))
def itc_objective(step: Step) -> torch.Tensor:
    similarity = step.caption_similarity  # (n, n)
    targets = torch.arange(similarity.shape[0], device=similarity.device)
    return (F.cross_entropy(similarity, targets) + F.cross_entropy(similarity.T, targets)) / 2


@objective("itm", needs=("itm",), fusions=FUSED)
def itm_objective(step: Step) -> torch.Tensor:
    logits = step.matching.itm_logits  # (2n, 2)
    n = step.pair_count
    targets = torch.cat([torch.ones(n), torch.zeros(n)]).long().to(logits.device)
    return F.cross_entropy(logits, targets)


@objective("mlm", needs=("mlm",), fusions=FUSED)
def mlm_objective(step: Step) -> torch.Tensor:
    masked = step.words_hidden
    logits = step.model.mlm_logits(masked["out"].text_states)  # (B_img, T, vocab)
    targets = masked["word_targets"]  # (B_img, T), -100 where a word was not hidden
    if not (targets >= 0).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)


@objective("mvm", needs=("patch",), fusions=FUSED)
def mvm_objective(step: Step) -> torch.Tensor:
    masked = step.patches_hidden
    hidden = masked["hidden_patches"]
    if hidden is None or not hidden.any():
        return masked["out"].image_states.sum() * 0.0
    return patch_loss(step.model, masked["out"].image_states, step.batch["patch_labels"], step.tc.patch_object_weight, only=hidden)


@objective("recon", needs=("recon",))
def recon_objective(step: Step) -> torch.Tensor:
    """Squared error over the whole image, hidden patches or not (MLIM)."""
    config = step.model.config
    mean = torch.tensor(config.image_mean, device=step.batch["pixel_values"].device)[:, None, None]
    std = torch.tensor(config.image_std, device=mean.device)[:, None, None]
    pixels = (step.batch["pixel_values"] * std + mean).clamp(0, 1)  # (B_img, C, S, S) back to [0, 1]
    return F.mse_loss(step.model.reconstruct(step.patches_hidden["out"].image_states), pixels)


@objective("patch", needs=("patch",))
def patch_objective(step: Step) -> torch.Tensor:
    return patch_loss(step.model, step.image_embeds, step.batch["patch_labels"], step.tc.patch_object_weight)


@objective("grounding", fusions=FUSED + ("decoder",), fusion_need="words that attend to the image")
def grounding_objective(step: Step) -> torch.Tensor:
    """The phrase a question names its objects by, and (when ITM trains) the object phrases of the matching captions.
    An encoder-decoder's words attend to the image from its decoder, where the question is read causally: the words
    of a phrase have read the phrase by its last word, and the answer, written after the question, reads them."""
    owners = step.batch["patch_labels"]["owner"]  # (B_img, N)
    question_owners = owners[step.batch["image_index"]]  # (B_q, N)
    losses = [grounding_loss(step.questions.text_to_image[0], step.batch["question_token_regions"], question_owners)]
    if step.weights.get("itm"):
        n = step.pair_count
        losses.append(grounding_loss(step.matching.text_to_image[0][:n], step.batch["caption_token_regions"][:n], owners[:n]))
    loss = sum(losses) / len(losses)
    if step.tc.cls_grounding_every_layer:
        # [CLS] alone in the layers above the first: aligned in the first alone, left/right questions' [CLS] was not learned
        cls_regions = step.batch["question_token_regions"].clone()  # (B_q, T, 1+MAX_OBJECTS)
        cls_regions[:, 1:] = False
        later = step.questions.text_to_image[1:]
        if later:
            loss = loss + sum(grounding_loss(layer, cls_regions, question_owners) for layer in later) / len(later)
    return loss


# ----- putting them together -----------------------------------------------------------------
def compute_losses(model: ShapesVLPForVQA, batch: dict, train_config: TrainConfig) -> dict[str, torch.Tensor]:
    """{objective: loss} for every objective with a non-zero weight, and their weighted sum as "total"."""
    step = Step(model, batch, train_config)
    losses = {name: OBJECTIVES[name].loss(step) for name, weight in step.weights.items() if weight}
    losses["total"] = sum(step.weights[name] * loss for name, loss in losses.items())
    return losses


def perception_losses(model: ShapesVLPForVQA, batch: dict, train_config: TrainConfig) -> dict[str, torch.Tensor]:
    """The warm-up phase's one objective: only the vision tower and the patch head get gradients."""
    image_embeds, _ = model.encode_image(batch["pixel_values"])  # (B_img, 1+N, H)
    patch = patch_loss(model, image_embeds, batch["patch_labels"], train_config.patch_object_weight)
    return {"patch": patch, "total": patch}


class TrainingObjectives(torch.nn.Module):
    """The model and its losses in one forward pass.

    With several processes the prepared (DistributedDataParallel) module is this one, so the losses are
    computed inside its forward and every gradient they produce is averaged across the processes; computed
    on the bare model, each process would train a model of its own."""

    def __init__(self, model: ShapesVLPForVQA, train_config: TrainConfig):
        super().__init__()
        self.model = model
        self.train_config = train_config

    def forward(self, batch: dict, perceiving: bool) -> dict[str, torch.Tensor]:
        if perceiving:
            return perception_losses(self.model, batch, self.train_config)
        return compute_losses(self.model, batch, self.train_config)
