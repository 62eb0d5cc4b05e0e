"""The objectives registry: each objective trains what it says (its loss falls when a tiny model over-fits
one batch), and a recipe asking for an objective its architecture can't train is refused before training."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from vqa.model.processing import ShapesVLPProcessor
from vqa.tokenizer import PACKAGE_TOKENIZER_DIR, load_tokenizer
from vqa.training import OBJECTIVES, BatchMaker, build_model, compute_losses, preset
from vqa.training.objectives import check_objectives

TINY = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "image_size": 32, "patch_size": 8,
        "vision_layers": 1, "text_layers": 2, "itc_dim": 16}

# (objective, an architecture that has what it trains); some objectives twice, where kinds take different paths
CASES = [
    ("classifier", "med-mid"), ("generative", "med-mid"), ("generative", "encoder-decoder"), ("caption", "encoder-decoder"),
    ("prefix_lm", "encoder-decoder"), ("itc", "dual-encoder"), ("itm", "med-mid"), ("itm", "single-stream"),
    ("mlm", "single-stream"), ("mlm", "mlim"), ("mvm", "dual-stream"), ("patch", "med-mid"),
    ("grounding", "med-mid"), ("grounding", "single-stream"), ("grounding", "dual-stream"),
    ("grounding", "encoder-decoder"), ("recon", "mlim"),
]


def test_every_registered_objective_is_exercised_here():
    assert {name for name, _ in CASES} == set(OBJECTIVES)


def tiny_recipe(objective: str, architecture: str):
    model = {**TINY, "fusion_layer": 1 if architecture != "single-stream" else 0, "decoder_layers": 2}
    return replace(preset("smoke"), architecture=architecture, loss_weights={objective: 1.0}, model=model, images_per_step=4,
                   questions_per_image=2, itm_images=4, curriculum_steps=0)


@pytest.mark.parametrize("objective,architecture", CASES)
def test_each_objective_lowers_its_loss_when_over_fitting_a_tiny_batch(objective, architecture):
    torch.manual_seed(0)
    recipe = tiny_recipe(objective, architecture)
    model = build_model(recipe)
    check_objectives(model, recipe.loss_weights)
    batch = BatchMaker(ShapesVLPProcessor.for_config(model.config, load_tokenizer(PACKAGE_TOKENIZER_DIR)), recipe)(0)
    # at 3e-3 the ITM loss oscillated, and where it stood after 40 steps depended on the CPU's thread count
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def loss_now() -> float:
        torch.manual_seed(1)  # the same masks and negatives as in training: one fixed batch to over-fit
        with torch.no_grad():
            return compute_losses(model.eval(), batch, recipe)[objective].item()

    before = loss_now()
    for _ in range(40):
        torch.manual_seed(1)
        losses = compute_losses(model.train(), batch, recipe)
        assert set(losses) == {objective, "total"}  # only the weighted objective ran
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()
    after = loss_now()
    assert after < 0.8 * before, (before, after)


@pytest.mark.parametrize("objective,architecture,message", [
    ("mlm", "shapes-vlp", "needs the mlm head"),
    ("classifier", "dual-encoder", "needs the classifier head"),
    ("grounding", "dual-encoder", "words that attend to the image"),
    ("telepathy", "shapes-vlp", "unknown objectives"),
])
def test_an_objective_the_architecture_cannot_train_is_refused(objective, architecture, message):
    recipe = tiny_recipe(objective, architecture)
    with pytest.raises(ValueError, match=message):
        check_objectives(build_model(recipe), recipe.loss_weights)


def test_masked_vision_modelling_needs_the_mask_embedding():
    recipe = tiny_recipe("mvm", "dual-stream")
    recipe = replace(recipe, model={**recipe.model, "image_mask_token": False})
    with pytest.raises(ValueError, match="image_mask_token"):
        check_objectives(build_model(recipe), recipe.loss_weights)


def test_modality_aware_masking_hides_one_modality_heavily_per_sample():
    """MLIM's regimes: over many samples, some keep every word and hide most patches, some the reverse."""
    from vqa.training.objectives import Step

    torch.manual_seed(0)
    recipe = replace(tiny_recipe("mlm", "mlim"), images_per_step=16)
    model = build_model(recipe)
    batch = BatchMaker(ShapesVLPProcessor.for_config(model.config, load_tokenizer(PACKAGE_TOKENIZER_DIR)), recipe)(0)
    masked = Step(model, batch, recipe).modality_aware
    words = batch["caption_text"]["attention_mask"].sum(1) - 2  # maskable words per caption
    word_share = (masked["word_targets"] >= 0).sum(1) / words  # (B,)
    patch_share = masked["hidden_patches"].float().mean(1)  # (B,)
    image_heavy = (word_share == 0) & (patch_share > 0.5)
    text_heavy = (word_share > 0.5) & (patch_share == 0)
    assert image_heavy.any() and text_heavy.any()
    assert not ((word_share > 0.5) & (patch_share > 0.5)).any()  # never both heavily
