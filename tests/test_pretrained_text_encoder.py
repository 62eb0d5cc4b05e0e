"""A frozen pretrained sentence encoder as the text tower's first stage (`config.text_encoder`): it reads words the
package tokenizer would split into letters, it is neither trained nor saved, and a model built on it trains, saves,
loads and answers through the public API like any other."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import vqa
from vqa.model import ShapesVLPConfig, ShapesVLPForVQA, create_model
from vqa.model.processing import ShapesVLPProcessor
from vqa.model.pretrained_text import frozen_encoder
from vqa.tokenizer import load_tokenizer

ENCODER = "all-MiniLM-L6-v2"
TINY = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8, vision_layers=1,
            text_layers=2, fusion_layer=1, decoder_layers=1, itc_dim=16)
QUESTION = "is the image free of triangles?"


@pytest.fixture(scope="module")
def model_and_processor():
    torch.manual_seed(0)
    model = create_model("shapes-vlp", text_encoder=ENCODER, **TINY)
    return model, ShapesVLPProcessor.for_config(model.config, load_tokenizer())


def test_questions_reach_the_encoder_as_its_own_whole_words(model_and_processor):
    _, processor = model_and_processor
    words = "absent geometric"
    package_pieces = load_tokenizer().tokenize(words)
    assert len(package_pieces) > 2  # the package tokenizer only knows these as pieces
    ids = processor.text([words])["input_ids"][0].tolist()
    assert processor.text_tokenizer.convert_ids_to_tokens(ids) == ["[CLS]", "absent", "geometric", "[SEP]"]
    # the decoder still writes the package tokenizer's tokens
    assert processor.decode(torch.tensor([load_tokenizer()("red")["input_ids"]])) == ["red"]


def test_training_moves_the_projection_but_never_the_pretrained_encoder(model_and_processor):
    model, processor = model_and_processor
    model.train()
    encoder = frozen_encoder(ENCODER, "cpu")
    before = {name: p.clone() for name, p in encoder.named_parameters()}
    projection = model.fusion.embeddings.projection.weight.clone()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    question = processor.text([QUESTION, "what colour is the box?"])
    pixels = processor.images([Image.new("RGB", (32, 32), "white")] * 2)
    loss = torch.nn.functional.cross_entropy(model(pixel_values=pixels, **question).answer_logits, torch.tensor([0, 1]))
    loss.backward()
    optimizer.step()
    model.eval()
    assert not torch.equal(model.fusion.embeddings.projection.weight, projection)
    assert all(torch.equal(p, before[name]) for name, p in encoder.named_parameters())
    assert not any(name.startswith(("encoder.", "embeddings.")) or ".encoder." in name for name, _ in model.named_parameters())


def test_a_saved_model_leaves_the_encoder_out_and_loads_with_the_same_answers(model_and_processor, tmp_path):
    model, processor = model_and_processor
    model.eval()
    model.save_pretrained(tmp_path)
    loaded = ShapesVLPForVQA.from_pretrained(tmp_path).eval()
    encoder_parameters = sum(p.numel() for p in frozen_encoder(ENCODER, "cpu").parameters())
    assert sum(p.numel() for p in loaded.parameters()) < encoder_parameters / 10
    question = processor.text([QUESTION])
    pixels = processor.images([Image.new("RGB", (32, 32), "red")])
    with torch.no_grad():
        assert torch.allclose(model(pixel_values=pixels, **question).answer_logits, loaded(pixel_values=pixels, **question).answer_logits)


def test_a_model_on_the_encoder_trains_and_answers_through_the_public_api(tmp_path):
    from vqa.training import preset, train

    smoke = preset("smoke")
    train(preset("smoke", model={**smoke.model, "text_encoder": ENCODER}), tmp_path, progress=False)
    backbone = vqa.load(tmp_path)
    image = Image.new("RGB", (40, 40), "white")
    answer = backbone.answer(image, QUESTION)
    assert answer.answer in backbone.labels
    maps = backbone.explain(image, QUESTION)
    assert maps.tokens[:7] == ["[CLS]", "is", "the", "image", "free", "of", "triangles"]
    assert maps.cross.shape[-3] == len(maps.tokens)


@pytest.mark.parametrize("architecture", ["encoder-decoder", "single-stream"])
def test_architectures_that_read_question_words_back_refuse_the_encoder(architecture):
    with pytest.raises(ValueError, match="pretrained text encoder"):
        create_model(architecture, text_encoder=ENCODER, **TINY)


def test_an_unknown_encoder_is_named_in_the_error():
    with pytest.raises(ValueError, match="unknown text encoder 'bert-large'"):
        ShapesVLPConfig(text_encoder="bert-large")


def test_training_reads_a_repeated_question_from_the_cache_with_the_same_states(model_and_processor):
    model, processor = model_and_processor
    embeddings = model.fusion.embeddings
    question = processor.text([QUESTION, "what colour is the box?", QUESTION])["input_ids"]  # (3, T)
    with torch.no_grad():
        model.eval()
        fresh = embeddings(question)
        model.train()
        first = embeddings(question)
        cached = len(embeddings._cache)
        again = embeddings(question[:1])
    model.eval()
    assert cached >= 2 and len(embeddings._cache) == cached  # the repeat added nothing
    assert torch.allclose(first, fresh, atol=2e-2) and torch.allclose(again[0], first[0, : again.shape[1]])


def test_a_missing_encoder_package_says_which_package_to_install(monkeypatch):
    from vqa.model import pretrained_text

    monkeypatch.setitem(pretrained_text.PRETRAINED_TEXT_ENCODERS, "some-encoder", "no_such_encoder_package")
    with pytest.raises(ImportError, match="pip install no-such-encoder-package"):
        pretrained_text.pretrained_text_encoder_path("some-encoder")
