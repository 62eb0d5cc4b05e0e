"""Every architecture of the family through the one model core, on tiny configs: the output contract,
where the image enters, save/load, the backbone (fp32 and int8) and the traced fast path."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import vqa
from vqa.errors import UnsupportedError
from vqa.model import ShapesVLPForVQA, architecture_config, create_model, list_architectures
from vqa.model.fusion import ATTENTION_KINDS
from vqa.model.processing import ShapesVLPProcessor
from vqa.tokenizer import PACKAGE_TOKENIZER_DIR, load_tokenizer

TINY = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8, itc_dim=16, max_text_length=24)
FAMILY = ["med-early", "med-mid", "med-late", "single-stream", "dual-stream", "dual-encoder", "encoder-decoder", "mlim"]


def tiny(name: str, **overrides) -> ShapesVLPForVQA:
    torch.manual_seed(0)
    return create_model(name, **{**TINY, **overrides}).eval()


@pytest.fixture(scope="module")
def inputs():
    torch.manual_seed(0)
    ids = torch.randint(7, 4000, (3, 6))
    ids[:, 0], ids[:, -1] = 2, 3  # [CLS] … [SEP]
    mask = torch.ones_like(ids)
    mask[2, 4:] = 0  # one shorter question
    return torch.randn(2, 3, 32, 32), ids, mask, torch.tensor([0, 1, 1])  # three questions about two images


def test_every_listed_architecture_is_tested_and_each_is_a_different_model():
    """Every architecture a user can pick is exercised by this file's tests (the shipped one by test_model.py),
    and no two names build the same model: each differs in how or where the image enters, or in its heads."""
    names = list_architectures()
    assert set(names) == set(FAMILY) | {"shapes-vlp"}
    built = {}
    for name in names:
        c = tiny(name).config
        built[name] = (c.fusion, c.fusion_layer, tuple(c.heads), c.image_embedder)
    assert len(set(built.values())) == len(names), built


@pytest.mark.parametrize("name", FAMILY)
def test_every_fusion_kind_returns_the_one_output_contract(name, inputs):
    model = tiny(name)
    c = model.config
    pixels, ids, mask, image_index = inputs
    image_embeds, _ = model.encode_image(pixels)
    out = model(input_ids=ids, attention_mask=mask, image_embeds=image_embeds, image_index=image_index, output_attentions=True)
    n, B, T = c.num_patches, ids.shape[0], ids.shape[1]
    assert out.text_states.shape == (B, T, c.hidden_size)
    assert out.image_states.shape == (B, 1 + n, c.hidden_size)  # one row per question, not per image
    assert len(out.text_to_image) == max(1, len(c.fused_layers))
    heads = 1 if c.fusion == "none" else c.num_attention_heads  # the dual encoder's similarity map is one "head"
    for attention in out.text_to_image:
        assert attention.shape == (B, heads, T, 1 + n)
        torch.testing.assert_close(attention.sum(-1), torch.ones(B, heads, T))  # a distribution over the image
    assert ATTENTION_KINDS[c.fusion] == model.attention_kind
    assert (out.answer_logits is not None) == ("classifier" in c.heads)
    if "classifier" in c.heads:
        assert out.answer_logits.shape == (B, len(c.id2label))
        assert out.pooled.shape == (B, c.hidden_size)
    # a forward and backward pass leaves every gradient finite (timm's check of every registered model)
    model.train()
    out = model(pixel_values=pixels, input_ids=ids, attention_mask=mask, image_index=image_index)
    total = out.text_states.sum() + out.image_states.sum() + (0 if out.answer_logits is None else out.answer_logits.sum())
    total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", FAMILY)
def test_the_image_reaches_the_text_only_where_the_architecture_says(name, inputs):
    """Changing the picture changes the text states of every kind that fuses, and never a dual encoder's."""
    model = tiny(name)
    pixels, ids, mask, image_index = inputs
    with torch.no_grad():
        before = model(pixel_values=pixels, input_ids=ids, attention_mask=mask, image_index=image_index).text_states
        after = model(pixel_values=pixels.flip(-1), input_ids=ids, attention_mask=mask, image_index=image_index).text_states
    if model.config.fusion == "none":
        torch.testing.assert_close(before, after)
    else:
        assert not torch.allclose(before, after)


@pytest.mark.parametrize("fusion", ["merged", "co_attention", "cross_attention"])
@pytest.mark.parametrize("fusion_layer", [0, 2])
def test_fusion_layer_decides_which_layers_see_the_image(fusion, fusion_layer, inputs):
    """Below the fusion layer the text states do not depend on the image; from it up they do."""
    name = {"merged": "single-stream", "co_attention": "dual-stream", "cross_attention": "med-mid"}[fusion]
    model = tiny(name, text_layers=3, fusion_layer=fusion_layer)
    layers = model.fusion.layers if fusion != "co_attention" else model.fusion.text_layers
    pixels, ids, mask, image_index = inputs
    T = ids.shape[1]

    def text_outputs(pixel_values):
        captured = []
        hooks = [layer.register_forward_hook(lambda m, a, out: captured.append(out[0][:, :T])) for layer in layers]
        with torch.no_grad():
            out = model(pixel_values=pixel_values, input_ids=ids, attention_mask=mask, image_index=image_index, output_attentions=True)
        for hook in hooks:
            hook.remove()
        return captured, out

    first, out = text_outputs(pixels)
    second, _ = text_outputs(pixels.flip(-1))
    assert len(out.text_to_image) == 3 - fusion_layer
    for index, (a, b) in enumerate(zip(first, second)):
        assert torch.allclose(a, b) == (index < fusion_layer), index


@pytest.mark.parametrize("name", FAMILY)
def test_save_and_load_round_trip_keeps_the_architecture(name, inputs, tmp_path):
    model = tiny(name)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin"))
    loaded = ShapesVLPForVQA.from_pretrained(tmp_path).eval()
    assert (loaded.config.fusion, loaded.config.heads, loaded.config.image_embedder) == (model.config.fusion, model.config.heads, model.config.image_embedder)
    pixels, ids, mask, image_index = inputs
    with torch.no_grad():
        expected = model(pixel_values=pixels, input_ids=ids, attention_mask=mask, image_index=image_index)
        got = loaded(pixel_values=pixels, input_ids=ids, attention_mask=mask, image_index=image_index)
    torch.testing.assert_close(got.text_states, expected.text_states)
    torch.testing.assert_close(got.image_states, expected.image_states)


def test_architecture_files_are_checked():
    with pytest.raises(ValueError, match="unknown architecture 'vilbert'.*single-stream"):
        create_model("vilbert")
    with pytest.raises(ValueError, match="has no fused states"):
        architecture_config("dual-encoder", heads=["itc", "classifier"])
    with pytest.raises(ValueError, match="needs the lm head"):
        architecture_config("encoder-decoder", heads=["patch"])
    # any field can be overridden, and only that field changes
    default, wider = architecture_config("med-late").to_dict(), architecture_config("med-late", hidden_size=64).to_dict()
    assert {k for k in default.keys() | wider.keys() if default.get(k) != wider.get(k)} == {"hidden_size"}
    with torch.no_grad():
        image_embeds, _ = tiny("med-late", hidden_size=64).encode_image(torch.randn(1, 3, 32, 32))
    assert image_embeds.shape[-1] == 64  # the model built from it is that wide


def write_model_folder(name: str, folder) -> None:
    """A loadable model folder (weights, config, processor) of a freshly initialised tiny `name`."""
    model = tiny(name)
    model.save_pretrained(folder)
    ShapesVLPProcessor.for_config(model.config, load_tokenizer(PACKAGE_TOKENIZER_DIR)).save_pretrained(folder)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("family")
    for name in FAMILY:
        write_model_folder(name, root / name)
    return root


@pytest.mark.parametrize("quantize", [None, "int8"])
@pytest.mark.parametrize("name", FAMILY)
def test_every_member_answers_through_the_backbone_with_the_heads_it_has(name, quantize, folders):
    backbone = vqa.load(folders / name, quantize=quantize)
    image = Image.new("RGB", (40, 40), "red")
    question = "what color is the circle?"
    config = backbone.config
    for head in ("classifier", "generative"):
        if head in backbone.capabilities:
            answer = backbone.answer(image, question, head=head)
            assert answer.head == head and 0 <= answer.score <= 1
            assert "circle" not in answer.answer  # the answer alone, never the question it was prompted with
        else:
            with pytest.raises(UnsupportedError):
                backbone.answer(image, question, head=head)
    if config.fusion == "none":
        assert any("statement" in note for note in backbone.answer(image, question, head="classifier").notes)
    if "caption" in backbone.capabilities:
        assert isinstance(backbone.caption(image).text, str)
    # the model card says which passes run traced and that an architecture without a classifier answers eager
    assert ("no classifier head" in backbone.info().facts["Fast path"]) == ("classifier" not in config.heads)
    maps = backbone.explain(image, question)
    g = config.grid_size
    assert maps.cross.shape[0] == len(maps.layers) and maps.cross.shape[-2:] == (g, g)
    assert maps.kind == ATTENTION_KINDS[config.fusion]
    assert maps.answer


@pytest.mark.parametrize("name", FAMILY)
def test_int8_quantizes_the_embedder_and_every_linear_layer(name, folders):
    model = vqa.load(folders / name, quantize="int8").model
    assert not any(type(m) is torch.nn.Linear for m in model.modules())
    assert not any(type(m) is torch.nn.Conv2d for m in model.modules())


@pytest.mark.parametrize("name", [n for n in FAMILY if "classifier" in architecture_config(n).heads])
def test_the_traced_fast_path_gives_the_eager_answers(name, folders):
    """The traced answer path follows the question length it is given (it was traced with another)."""
    backbone = vqa.load(folders / name)
    assert backbone.graphs is not None and backbone.graphs.answer is not None
    processor, model = backbone.processor, backbone.model
    image_embeds = model.encode_image(processor.images([Image.new("RGB", (32, 32), "blue")]))[0]
    for question in ("is there a red circle?", "what color is the large square left of the small blue triangle?"):
        q = processor.text([question])
        with torch.no_grad():
            traced_logits, traced_states = backbone.graphs.answer(q["input_ids"], q["attention_mask"], image_embeds)
            eager = model(input_ids=q["input_ids"], attention_mask=q["attention_mask"], image_embeds=image_embeds)
        torch.testing.assert_close(traced_logits, eager.answer_logits, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(traced_states, eager.text_states, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["encoder-decoder", "med-mid"])
def test_a_written_answer_does_not_depend_on_the_padding_of_its_batch(name, inputs):
    """The decoder's next-token scores after a short question are the same asked alone (as the app asks it)
    or padded among longer ones (as training and validation batch them): the encoder-decoder writes after the
    question's padding, and the positions of what it writes count only the real tokens before them."""
    pixels, ids, mask, image_index = inputs
    model = tiny(name)
    with torch.no_grad():
        image_embeds, _ = model.encode_image(pixels)

        def next_token_scores(question_ids, question_mask, rows):
            out = model(input_ids=question_ids, attention_mask=question_mask, image_embeds=image_embeds, image_index=rows)
            prompt = model.answer_decoder_inputs(question_ids, question_mask, out.text_states, out.image_states)
            return model.text_decoder(**prompt).logits[:, -1]  # (B, vocab): what it would write first

        batched = next_token_scores(ids, mask, image_index)[2]  # the short question, padded to its batch's longest
        alone = next_token_scores(ids[2:, :4], mask[2:, :4], image_index[2:])[0]
    torch.testing.assert_close(batched, alone, atol=1e-4, rtol=1e-4)
