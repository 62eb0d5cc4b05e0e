"""The shipped architecture (cross-attention fusion): head shapes, fusion layer, attention outputs, save/load.
Every other fusion kind is tested in test_architectures.py."""

from __future__ import annotations

import pytest
import torch

from vqa.model import ShapesVLPConfig, ShapesVLPForVQA

ANSWERS = ["yes", "no", "red", "circle", "3"]


def tiny_config(**overrides) -> ShapesVLPConfig:
    sizes = dict(vocab_size=50, hidden_size=32, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8,
                 vision_layers=1, text_layers=3, fusion_layer=1, decoder_layers=1, itc_dim=16, max_text_length=16,
                 id2label=dict(enumerate(ANSWERS)), label2id={a: i for i, a in enumerate(ANSWERS)})
    sizes.update(overrides)
    return ShapesVLPConfig(**sizes)


@pytest.fixture()
def inputs():
    torch.manual_seed(0)
    return torch.randn(2, 3, 32, 32), torch.randint(7, 50, (2, 6)), torch.ones(2, 6, dtype=torch.long)


def test_every_head_has_the_documented_shape(inputs):
    config = tiny_config()
    model = ShapesVLPForVQA(config).eval()
    pixels, ids, mask = inputs
    out = model(pixels, ids, mask, output_attentions=True)
    n = config.num_patches
    assert out.answer_logits.shape == (2, len(ANSWERS))
    assert out.itm_logits.shape == (2, 2)
    assert out.image_embeds.shape == (2, 1 + n, config.hidden_size)
    assert out.text_states.shape == (2, 6, config.hidden_size)
    assert len(out.vision_attentions) == config.vision_layers
    assert out.vision_attentions[0].shape == (2, config.num_attention_heads, 1 + n, 1 + n)
    assert len(out.text_self_attentions) == len(config.fused_layers)
    assert out.text_to_image[0].shape == (2, config.num_attention_heads, 6, 1 + n)
    torch.testing.assert_close(out.text_to_image[0].sum(-1), torch.ones(2, config.num_attention_heads, 6))
    similarity = model.image_text_similarity(out.image_embeds, ids, mask)
    assert similarity.shape == (2, 2)
    decoded = model.text_decoder(input_ids=ids, attention_mask=mask, encoder_hidden_states=out.image_embeds, output_attentions=True)
    assert decoded.logits.shape == (2, 6, config.vocab_size)
    assert decoded.cross_attentions[0].shape == (2, config.num_attention_heads, 6, 1 + n)
    # causal: no token attends to a later one
    assert torch.all(decoded.attentions[0].triu(diagonal=1) == 0)


def test_sdpa_path_matches_explicit_attention(inputs):
    model = ShapesVLPForVQA(tiny_config()).eval()
    fast = model(*inputs).answer_logits
    explicit = model(*inputs, output_attentions=True).answer_logits
    torch.testing.assert_close(fast, explicit, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("output_attentions", [False, True])
def test_questions_sharing_an_image_match_one_copy_per_question(inputs, output_attentions):
    """image_index (several questions, one image's keys/values) gives what copying the image per question gives."""
    model = ShapesVLPForVQA(tiny_config()).eval()
    pixels, ids, mask = inputs
    image_index = torch.tensor([1, 0, 1, 1])  # four questions about two images
    ids, mask = torch.cat([ids, ids]), torch.cat([mask, mask])
    with torch.no_grad():
        image_embeds, _ = model.encode_image(pixels)
        shared = model(input_ids=ids, attention_mask=mask, image_embeds=image_embeds, image_index=image_index, output_attentions=output_attentions)
        copied = model(input_ids=ids, attention_mask=mask, image_embeds=image_embeds[image_index], output_attentions=output_attentions)
    torch.testing.assert_close(shared.answer_logits, copied.answer_logits)
    torch.testing.assert_close(shared.text_states, copied.text_states)
    if output_attentions:
        torch.testing.assert_close(shared.text_to_image[0], copied.text_to_image[0])


def test_fused_projections_give_the_same_outputs(inputs):
    """fuse_projections (used before int8 quantization) changes how the projections are computed, not the answers."""
    model = ShapesVLPForVQA(tiny_config()).eval()
    with torch.no_grad():
        before = model(*inputs, output_attentions=True)
        for module in model.modules():
            if hasattr(module, "self_attention"):
                module.self_attention.fuse_projections(cross_attention=False)
                if module.cross_attention is not None:
                    module.cross_attention.fuse_projections(cross_attention=True)
        after = model(*inputs, output_attentions=True)
    assert not any(name.endswith(".key") for name, _ in model.named_modules())
    torch.testing.assert_close(after.answer_logits, before.answer_logits)
    torch.testing.assert_close(after.text_to_image[0], before.text_to_image[0])
    torch.testing.assert_close(after.text_self_attentions[0], before.text_self_attentions[0])


@pytest.mark.parametrize("fusion_layer", [0, 1, 2])
def test_fusion_layer_decides_which_layers_cross_attend(inputs, fusion_layer):
    config = tiny_config(fusion_layer=fusion_layer)
    model = ShapesVLPForVQA(config).eval()
    has_cross = [layer.cross_attention is not None for layer in model.fusion.layers]
    assert has_cross == [i >= fusion_layer for i in range(config.text_layers)]
    out = model(*inputs, output_attentions=True)
    assert len(out.text_to_image) == config.text_layers - fusion_layer
    # the image reaches the answer only through those layers: changing it changes the answer logits
    pixels, ids, mask = inputs
    assert not torch.allclose(out.answer_logits, model(pixels.flip(-1), ids, mask).answer_logits)


def test_invalid_fusion_layer_is_rejected():
    with pytest.raises(ValueError, match="fusion_layer"):
        tiny_config(fusion_layer=3)


def test_wrong_image_size_gets_a_clear_error(inputs):
    model = ShapesVLPForVQA(tiny_config()).eval()
    with pytest.raises(ValueError, match="image processor"):
        model(torch.randn(1, 3, 40, 40), inputs[1][:1], inputs[2][:1])


def test_image_features_carry_each_patch_position(inputs):
    """With output_position_encoding, the text side reads a patch's grid position on top of its
    content: the same fixed offset for any image, a different one for each patch, none for [CLS]."""
    with_encoding = ShapesVLPForVQA(tiny_config()).eval()
    without = ShapesVLPForVQA(tiny_config(output_position_encoding=False)).eval()
    without.load_state_dict(with_encoding.state_dict())
    pixels = inputs[0]
    offset = with_encoding.encode_image(pixels)[0] - without.encode_image(pixels)[0]  # (B, 1+N, H)
    torch.testing.assert_close(offset[0], offset[1])  # independent of the image
    assert offset[:, 0].abs().max() == 0  # [CLS] has no position
    patches = offset[0, 1:]  # (N, H)
    assert torch.cdist(patches, patches).fill_diagonal_(1.0).min() > 0.1  # every patch its own position


def test_save_and_load_round_trip_uses_safetensors(tmp_path, inputs):
    model = ShapesVLPForVQA(tiny_config()).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin"))
    loaded = ShapesVLPForVQA.from_pretrained(tmp_path).eval()
    assert loaded.config.fusion_layer == model.config.fusion_layer
    assert loaded.config.id2label == model.config.id2label
    torch.testing.assert_close(loaded(*inputs).answer_logits, model(*inputs).answer_logits)


def test_decoder_generates_with_transformers_generate(inputs):
    model = ShapesVLPForVQA(tiny_config()).eval()
    states = model(*inputs).text_states
    start = torch.full((2, 1), model.config.answer_start_token_id)
    for kwargs in ({"do_sample": False}, {"do_sample": False, "num_beams": 3}, {"do_sample": True, "top_p": 0.9}):
        out = model.text_decoder.generate(input_ids=start, encoder_hidden_states=states, encoder_attention_mask=inputs[2],
                                          max_new_tokens=3, eos_token_id=3, pad_token_id=0, **kwargs)
        assert out.shape[0] == 2 and 2 <= out.shape[1] <= 4
        assert torch.all(out[:, 0] == model.config.answer_start_token_id)
