"""Hub backbones through the same API, on tiny random checkpoints built here (CPU, offline).

Every checkpoint goes through the real `load_hub_backbone` path: config → adapter →
safetensors → tokenizer + image processor. Where a plain transformers recipe exists
(`generate`, a full forward pass), the cached pipeline must give the same result.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from vqa.backbones.hub import HUB_MODELS, PAIR_SEPARATOR, load_hub_backbone
from vqa.backbones.hub import loader
from vqa.backbones.hub.common import DEFAULT_CANDIDATES
from vqa.errors import InputError, ModelLoadError, UnsupportedError
from vqa.quantization import availability

try:
    from hub_fixtures import (
        ANSWERS, IMAGE_SIZE, PATCH_SIZE, make_blip, make_clip, make_pickle_only, make_vilt,
        make_vision_encoder_decoder, put_in_hf_cache,
    )
except ImportError:  # tests/ imported as a package
    from tests.hub_fixtures import (
        ANSWERS, IMAGE_SIZE, PATCH_SIZE, make_blip, make_clip, make_pickle_only, make_vilt,
        make_vision_encoder_decoder, put_in_hf_cache,
    )

QUESTION = "what is the color of the shape?"
CONFIG_GRID = (IMAGE_SIZE // PATCH_SIZE, IMAGE_SIZE // PATCH_SIZE)


def scene(color=(200, 30, 30), size=(40, 52)) -> Image.Image:
    """A non-square picture: a coloured square on grey."""
    image = Image.new("RGB", size, (128, 128, 128))
    image.paste(color, (8, 8, 24, 24))
    return image


def assert_rows_normalised(cross: np.ndarray) -> None:
    assert np.all(cross >= 0)
    np.testing.assert_allclose(cross.sum(axis=(-2, -1)), 1.0, atol=1e-4)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: thread hand-offs cost more than the maths, badly so when other work holds the cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    return {
        "vqa": make_blip(root / "blip-vqa", "vqa"),
        "caption": make_blip(root / "blip-caption", "caption"),
        "itm": make_blip(root / "blip-itm", "itm"),
        "vilt": make_vilt(root / "vilt"),
        "ved": make_vision_encoder_decoder(root / "vit-gpt2"),
        "clip": make_clip(root / "clip"),
    }


@pytest.fixture(scope="module")
def models(folders):
    return {name: load_hub_backbone(str(path)) for name, path in folders.items()}


# ----- catalogue --------------------------------------------------------------------------------
def test_the_catalogue_offers_every_adapter_and_only_checkpoints_an_adapter_loads(models):
    """Each entry of the Model tab's list names a hub checkpoint (or a pair of two) of a family an adapter here
    loads, and every adapter is offered at least once: an entry nothing can load, or an adapter nobody can pick,
    fails."""
    adapter_families = {backbone.family for backbone in models.values()}
    for entry in HUB_MODELS:
        assert set(entry) >= {"id", "family", "does", "size"} and all(entry.values())
        parts = entry["id"].split(PAIR_SEPARATOR)
        assert 1 <= len(parts) <= 2 and all(part.count("/") == 1 and " " not in part for part in parts), entry["id"]
        assert entry["family"] in adapter_families, entry
    assert {entry["family"] for entry in HUB_MODELS} == adapter_families
    assert len({entry["id"] for entry in HUB_MODELS}) == len(HUB_MODELS)  # no entry offered twice


# ----- adapters are chosen from the config ------------------------------------------------------
def test_adapter_follows_the_config_not_the_name(models):
    assert {name: type(b).__name__ for name, b in models.items()} == {
        "vqa": "BlipVqaBackbone", "caption": "BlipCaptionBackbone", "itm": "BlipRetrievalBackbone",
        "vilt": "ViltVqaBackbone", "ved": "VisionEncoderDecoderBackbone", "clip": "ClipBackbone"}


def test_config_without_architectures_is_told_apart_by_weight_names(folders, tmp_path):
    copy = shutil.copytree(folders["itm"], tmp_path / "no-architectures")
    config = json.loads((copy / "config.json").read_text())
    config.pop("architectures")
    (copy / "config.json").write_text(json.dumps(config))
    assert type(load_hub_backbone(str(copy))).__name__ == "BlipRetrievalBackbone"


def test_progress_reports_rising_fractions_up_to_one(folders):
    seen = []
    load_hub_backbone(str(folders["vilt"]), progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and all(isinstance(m, str) for _, m in seen)


# ----- BLIP VQA ---------------------------------------------------------------------------------
def test_blip_rank_probabilities_sum_to_one(models):
    candidates = ["red", "blue", "green", "circle"]
    result = models["vqa"].answer(scene(), QUESTION, head="classifier", candidates=candidates, top_k=len(candidates))
    assert result.head == "rank" and {a for a, _ in result.candidates} == set(candidates)
    assert sum(p for _, p in result.candidates) == pytest.approx(1.0, abs=1e-5)
    assert result.answer == result.candidates[0][0] and result.score == result.candidates[0][1]


def test_blip_rank_without_candidates_uses_the_default_list_and_says_so(models):
    result = models["vqa"].answer(scene(), QUESTION, head="classifier", top_k=3)
    assert len(result.candidates) == 3 and all(a in DEFAULT_CANDIDATES for a, _ in result.candidates)
    assert any("default list" in note for note in models["vqa"].info().notes)


def test_blip_greedy_answer_matches_plain_transformers_generate(models, folders):
    from transformers import BlipProcessor

    backbone, image = models["vqa"], scene()
    processor = BlipProcessor.from_pretrained(folders["vqa"])
    with torch.inference_mode():
        ids = backbone.model.generate(**processor(images=image, text=QUESTION, return_tensors="pt"), max_new_tokens=6)
    expected = processor.decode(ids[0], skip_special_tokens=True).strip()
    result = backbone.answer(image, QUESTION, head="generative", decoding="greedy", max_new_tokens=6)
    assert result.answer == expected and result.head == "generative"
    assert 0 < result.score <= 1


def test_blip_image_encoder_with_fused_attention_matches_transformers(models, folders):
    from transformers import BlipForQuestionAnswering, BlipProcessor

    from vqa.backbones.hub.blip import BlipVisionSdpaAttention

    backbone = models["vqa"]
    assert any(isinstance(m, BlipVisionSdpaAttention) for m in backbone.model.vision_model.modules())
    reference = BlipForQuestionAnswering.from_pretrained(folders["vqa"]).eval()  # transformers' own attention
    pixels = BlipProcessor.from_pretrained(folders["vqa"])(images=scene(), return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        ours = backbone.model.vision_model(pixel_values=pixels).last_hidden_state
        theirs = reference.vision_model(pixel_values=pixels).last_hidden_state
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("decoding", ["beam", "nucleus"])
def test_blip_generative_decodings_return_scored_alternatives(models, decoding):
    backbone = models["vqa"]
    result = backbone.answer(scene(), QUESTION, head="generative", decoding=decoding, top_k=3, num_beams=3,
                             max_new_tokens=5, seed=7)
    assert 1 <= len(result.candidates) <= 3
    scores = [p for _, p in result.candidates]
    assert scores == sorted(scores, reverse=True) and all(0 < p <= 1 for p in scores)
    again = backbone.answer(scene(), QUESTION, head="generative", decoding=decoding, top_k=3, num_beams=3,
                            max_new_tokens=5, seed=7)
    assert again.candidates == result.candidates  # seeded sampling is reproducible


@pytest.mark.parametrize("decoding", ["greedy", "beam", "nucleus"])
def test_generated_answer_probability_is_the_models_own(models, decoding):
    """Scores read off `generate`'s raw logits equal a teacher-forced pass over the same tokens."""
    from vqa.backbones.hub.common import generated_log_likelihood, generation_kwargs, scored_positions, \
        sequence_log_likelihood

    backbone, sep = models["vqa"], models["vqa"].config.text_config.sep_token_id
    num_return = 1 if decoding == "greedy" else 3
    with torch.inference_mode():
        states = backbone._question_states(scene(), QUESTION)
        start = torch.full((1, 1), backbone.config.text_config.bos_token_id)
        out = backbone._generate(states, start, generation_kwargs(decoding, 3, 0.9, 1.5, 4, num_return), seed=1)
        read_off = generated_log_likelihood(out, 1, sep)
        n = out.sequences.shape[0]
        logits = backbone.model.text_decoder(input_ids=out.sequences, encoder_hidden_states=states.expand(n, -1, -1),
                                             encoder_attention_mask=torch.ones(n, states.shape[1])).logits
        forced = sequence_log_likelihood(logits, out.sequences, scored_positions(out.sequences, 1, sep))
    torch.testing.assert_close(read_off, forced, atol=1e-4, rtol=1e-4)


def test_blip_cross_attention_covers_the_config_grid(models):
    backbone = models["vqa"]
    maps = backbone.explain(scene(), QUESTION, answer="red")
    text = backbone.config.text_config
    tokens = backbone.tokenizer.convert_ids_to_tokens(backbone.tokenizer(QUESTION)["input_ids"])
    assert maps.cross.shape == (text.num_hidden_layers, text.num_attention_heads, len(tokens), *CONFIG_GRID)
    assert maps.tokens == tokens and maps.kind == "cross-attention" and maps.image_size == scene().size
    assert maps.text_self.shape == (text.num_hidden_layers, text.num_attention_heads, len(tokens), len(tokens))
    assert_rows_normalised(maps.cross)


def test_image_is_encoded_once_across_questions_heads_and_attention(folders):
    backbone = load_hub_backbone(str(folders["vqa"]))
    calls = []
    backbone.model.vision_model.register_forward_hook(lambda *a: calls.append(1))
    backbone.answer(scene(), QUESTION, head="classifier", candidates=["red", "blue"])
    backbone.answer(scene(), "how many shapes are there?", head="generative")  # a new, equal PIL image
    backbone.explain(scene(), "is there a circle?")
    assert (backbone.encodings.misses, backbone.encodings.hits, len(calls)) == (1, 2, 1)
    backbone.answer(scene(color=(30, 30, 200)), QUESTION, head="classifier", candidates=["red", "blue"])
    assert (backbone.encodings.misses, len(calls)) == (2, 2)


def test_blip_projects_each_image_for_the_text_encoder_once_and_answers_stay_exact(folders):
    """The cross-attention keys/values over the image are cached per image; answers to later questions
    still equal plain transformers generate, which recomputes everything."""
    from transformers import BlipProcessor

    backbone = load_hub_backbone(str(folders["vqa"]))
    processor = BlipProcessor.from_pretrained(folders["vqa"])
    projections = []
    backbone.model.text_encoder.encoder.layer[0].crossattention.self.key.register_forward_hook(lambda *a: projections.append(1))
    image = scene()
    questions = [QUESTION, "how many shapes are there?", "is there a circle?"]
    answers = [backbone.answer(image, q, head="generative", decoding="greedy", max_new_tokens=6) for q in questions]
    maps = backbone.explain(image, "is the square blue?")
    assert len(projections) == 1 and len(backbone.cross_keys_values) == 1
    assert maps.cross.shape[0] == backbone.config.text_config.num_hidden_layers
    assert_rows_normalised(maps.cross)
    for question, result in zip(questions, answers):
        with torch.inference_mode():
            ids = backbone.model.generate(**processor(images=image, text=question, return_tensors="pt"), max_new_tokens=6)
        assert result.answer == processor.decode(ids[0], skip_special_tokens=True).strip()


# ----- BLIP captioning and retrieval ---------------------------------------------------------------
def test_blip_caption_matches_plain_generate_and_continues_a_prompt(models, folders):
    from transformers import BlipProcessor

    backbone, image = models["caption"], scene()
    processor = BlipProcessor.from_pretrained(folders["caption"])
    with torch.inference_mode():
        ids = backbone.model.generate(**processor(images=image, return_tensors="pt"), max_new_tokens=6)
    caption = backbone.caption(image, decoding="greedy", max_new_tokens=6)
    assert caption.text == processor.decode(ids[0], skip_special_tokens=True).strip() and 0 < caption.score <= 1
    prompted = backbone.caption(image, decoding="beam", num_captions=2, max_new_tokens=3, prompt="a photo of")
    assert prompted.text.startswith("a photo of") and 1 <= len(prompted.candidates) <= 2
    maps = backbone.explain(image, QUESTION)
    assert maps.cross.shape[-2:] == CONFIG_GRID and isinstance(maps.answer, str)  # the greedy caption it explains
    assert_rows_normalised(maps.cross)
    with pytest.raises(UnsupportedError):
        backbone.answer(image, QUESTION)


def test_blip_itm_ranks_candidates_and_scores_matches(models):
    backbone, image = models["itm"], scene()
    result = backbone.answer(image, QUESTION, head="classifier", candidates=["red", "blue", "a circle"], top_k=3)
    assert result.head == "rank" and sum(p for _, p in result.candidates) == pytest.approx(1.0, abs=1e-5)
    rows = backbone.score_texts(image, ["a red square", "a blue circle"])
    assert [r["text"] for r in rows] == ["a red square", "a blue circle"]
    assert all(0 <= r["itm_probability"] <= 1 and -1 <= r["itc_similarity"] <= 1 for r in rows)
    # the one Backbone.match: the same ITM probability as a float
    assert backbone.match(image, "a red square") == pytest.approx(rows[0]["itm_probability"], abs=1e-5)
    maps = backbone.explain(image, QUESTION, answer="red")
    assert maps.cross.shape[-2:] == CONFIG_GRID and maps.tokens[-2] == "red"
    assert_rows_normalised(maps.cross)


# ----- ViLT -----------------------------------------------------------------------------------------
def test_vilt_reports_sigmoid_scores_equal_to_the_plain_forward(models, folders):
    from transformers import ViltProcessor

    backbone, image = models["vilt"], scene()
    processor = ViltProcessor.from_pretrained(folders["vilt"])
    with torch.inference_mode():
        logits = backbone.model(**processor(images=image, text=QUESTION, return_tensors="pt")).logits[0]
    expected = sorted(zip(ANSWERS, torch.sigmoid(logits).tolist()), key=lambda kv: kv[1], reverse=True)[:4]
    result = backbone.answer(image, QUESTION, head="classifier", top_k=4)
    assert result.head == "classifier" and [a for a, _ in result.candidates] == [a for a, _ in expected]
    np.testing.assert_allclose([p for _, p in result.candidates], [p for _, p in expected], atol=1e-5)
    assert any("do not sum to 1" in note for note in backbone.info().notes)
    restricted = backbone.answer(image, QUESTION, candidates=["blue", "yes", "not-an-answer"], top_k=5)
    assert {a for a, _ in restricted.candidates} == {"blue", "yes"}
    with pytest.raises(InputError):
        backbone.answer(image, QUESTION, candidates=["not-an-answer"])
    with pytest.raises(UnsupportedError):
        backbone.answer(image, QUESTION, head="generative")


def test_vilt_attention_block_uses_the_grid_of_the_resized_image(models):
    backbone, image = models["vilt"], scene(size=(40, 52))
    pixels = backbone.image_processor(images=image, return_tensors="pt")["pixel_values"]
    grid = (pixels.shape[-2] // PATCH_SIZE, pixels.shape[-1] // PATCH_SIZE)
    assert grid != CONFIG_GRID  # ViLT keeps the aspect ratio: the grid is not the config's square
    maps = backbone.explain(image, QUESTION)
    n_tokens = len(backbone.tokenizer(QUESTION)["input_ids"])
    assert maps.cross.shape == (backbone.config.num_hidden_layers, backbone.config.num_attention_heads, n_tokens, *grid)
    assert maps.kind == "self-attention text→image block"
    assert_rows_normalised(maps.cross)


# ----- VisionEncoderDecoder ------------------------------------------------------------------------
def test_vision_encoder_decoder_captions_and_maps_each_generated_token(models):
    backbone, image = models["ved"], scene()
    with torch.inference_mode():
        ids = backbone.model.generate(pixel_values=backbone.pixel_values(image), max_new_tokens=5, num_beams=1,
                                      do_sample=False)
    caption = backbone.caption(image, decoding="greedy", max_new_tokens=5)
    assert caption.text == backbone.tokenizer.decode(ids[0], skip_special_tokens=True).strip()
    for decoding in ("beam", "nucleus"):
        assert 1 <= len(backbone.caption(image, decoding=decoding, num_captions=2, max_new_tokens=4).candidates) <= 2
    maps = backbone.explain(image, QUESTION, answer="the red square")
    answer_tokens = backbone.tokenizer.convert_ids_to_tokens(
        backbone.tokenizer("the red square", add_special_tokens=False)["input_ids"])
    decoder = backbone.config.decoder
    assert maps.tokens == answer_tokens
    assert maps.cross.shape == (decoder.num_hidden_layers, decoder.num_attention_heads, len(answer_tokens),
                                *CONFIG_GRID)
    assert_rows_normalised(maps.cross)
    with pytest.raises(UnsupportedError, match="captioning model"):
        backbone.answer(image, QUESTION)


@pytest.fixture
def transformers_log(caplog):
    """Records of transformers' own logger, which does not propagate to the root logger that caplog watches."""
    import transformers

    logger = logging.getLogger("transformers")
    logger.addHandler(caplog.handler)
    transformers.utils.logging.warning_once.cache_clear()  # a warning already shown once must show again here
    yield caplog
    logger.removeHandler(caplog.handler)


@pytest.mark.parametrize("name", ["ved", "vqa", "caption"])
def test_generation_prints_no_transformers_warning(models, name, recwarn, transformers_log):
    """The tiny captioner carries a max_length and pads with its start token, as released checkpoints do."""
    backbone, image = models[name], scene()
    for decoding in ("greedy", "beam", "nucleus"):
        if "caption" in backbone.capabilities:
            backbone.caption(image, decoding=decoding, num_captions=2, max_new_tokens=4)
            backbone.caption(image, decoding=decoding, max_new_tokens=3, prompt="a photo of")
        else:
            backbone.answer(image, QUESTION, head="generative", decoding=decoding, max_new_tokens=4)
    backbone.explain(image, QUESTION)  # a captioner writes its greedy caption first
    warned = [r for r in transformers_log.records if r.levelno >= logging.WARNING and r.name.startswith("transformers")]
    assert not warned, [r.getMessage() for r in warned]
    assert not [str(w.message) for w in recwarn], [str(w.message) for w in recwarn]


# ----- CLIP -------------------------------------------------------------------------------------------
def test_clip_zero_shot_ranking_matches_the_plain_forward(models, folders):
    from transformers import CLIPProcessor

    backbone, image = models["clip"], scene()
    answers = ["red", "blue", "green"]
    processor = CLIPProcessor.from_pretrained(folders["clip"])
    with torch.inference_mode():
        out = backbone.model(**processor(text=[f"a photo of {a}" for a in answers], images=image,
                                         return_tensors="pt", padding=True))
    expected = dict(zip(answers, out.logits_per_image.softmax(-1)[0].tolist()))
    result = backbone.answer(image, QUESTION, candidates=answers, top_k=3)
    assert result.head == "rank" and sum(p for _, p in result.candidates) == pytest.approx(1.0, abs=1e-5)
    for answer, p in result.candidates:
        assert p == pytest.approx(expected[answer], abs=1e-5)
    assert any("no fusion layer" in note for note in backbone.info().notes)
    assert backbone.info().facts["fusion"] == "late fusion dual encoder (CLIP)"


def test_clip_explain_is_a_gradient_map_over_the_config_grid(models):
    backbone = models["clip"]
    maps = backbone.explain(scene(), QUESTION, answer="red")
    assert maps.kind == "gradient" and "gradient" in maps.note.lower()
    assert maps.cross.shape == (backbone.config.vision_config.num_hidden_layers, 1, 1, *CONFIG_GRID)
    assert maps.tokens == ["a photo of red"]
    assert_rows_normalised(maps.cross)


def test_clip_int8_leaves_out_explain_and_evaluation_completes(folders, models):
    from vqa.evaluation import evaluate

    assert "explain" in models["clip"].capabilities and "explain" in models["clip"].info().capabilities
    clip = load_hub_backbone(str(folders["clip"]), quantize="int8")
    assert "explain" not in clip.capabilities and "explain" not in clip.info().capabilities
    assert "explain" in type(clip).capabilities  # the class still says what CLIP does at full precision
    with pytest.raises(UnsupportedError, match="gradient map") as error:
        clip.explain(scene(), QUESTION)
    assert "int8" in str(error.value) and "without quantization" in str(error.value)
    assert any("No attention view" in note for note in clip.info().notes)
    report = evaluate(clip, split="test", num_scenes=2, compositional_scenes=1)
    assert report["questions"] > 0 and "classifier_accuracy" in report and report["errors"] == 0
    assert "pointing_accuracy" not in report  # pointing reads attention maps, which this model has none of


@pytest.fixture(scope="module")
def clip64(tmp_path_factory):
    """A 64-wide CLIP, so that nf4's CPU kernel packs its layers (a 32-wide one stays full precision)."""
    return make_clip(tmp_path_factory.mktemp("hub") / "clip64", hidden=64)


@pytest.mark.parametrize("scheme", [None, "int8", "bnb-int8", "bnb-nf4"])
def test_clip_lists_explain_exactly_when_its_gradient_map_works(scheme, clip64):
    if not availability()[scheme][0]:
        pytest.skip(f"{scheme} is not available here")
    clip = load_hub_backbone(str(clip64), quantize=scheme)
    clip.answer(scene(), QUESTION, candidates=["red", "blue"])  # bitsandbytes repacks 4-bit weights on a first call
    if scheme == "int8":
        assert "explain" not in clip.capabilities  # PyTorch's dynamic int8 kernels have no backward
    if "explain" in clip.capabilities:
        maps = clip.explain(scene(), QUESTION, answer="red")
        assert maps.kind == "gradient"
        assert_rows_normalised(maps.cross)
    else:
        with pytest.raises(UnsupportedError, match="gradient map"):
            clip.explain(scene(), QUESTION)


# ----- info --------------------------------------------------------------------------------------------
def test_info_states_fusion_style_grid_and_sizes(models):
    fusion = {"vqa": "mixture of encoder-decoder with cross-attention (BLIP)",
              "vilt": "single-stream early fusion (ViLT)",
              "ved": "vision encoder + language decoder joined by cross-attention (VisionEncoderDecoder)",
              "clip": "late fusion dual encoder (CLIP)"}
    for name, style in fusion.items():
        info = models[name].info()
        assert info.facts["fusion"] == style and info.description
        assert {"parameters", "size on disk", "memory (weights)"} <= set(info.facts)
    assert "15 × 15" in models["vqa"].info().facts["patch grid"]
    for backbone in models.values():
        assert backbone.memory_bytes() > 0


@pytest.mark.parametrize("name", ["vqa", "caption", "itm", "vilt", "ved", "clip", "pair"])
def test_parameter_count_is_the_same_whatever_the_quantization(name, folders, models):
    """Dynamic int8 packs weights outside `parameters()`: the count comes from the config, not the loaded model."""
    spec = f"{folders['vqa']}+{folders['caption']}" if name == "pair" else str(folders[name])
    full = load_hub_backbone(spec) if name == "pair" else models[name]
    int8 = load_hub_backbone(spec, quantize="int8")
    assert int8.num_parameters == full.num_parameters > 0
    assert int8.info().facts["parameters"] == full.info().facts["parameters"]
    if name == "pair":
        assert full.num_parameters == models["vqa"].num_parameters + models["caption"].num_parameters


# ----- quantization ---------------------------------------------------------------------------------------
def test_dynamic_int8_quantizes_linears_but_keeps_the_lm_head(folders, models):
    backbone = load_hub_backbone(str(folders["vqa"]), quantize="int8")
    kinds = {type(m).__module__ for m in backbone.model.modules()}
    assert "torch.ao.nn.quantized.dynamic.modules.linear" in kinds
    assert type(backbone.model.text_decoder.cls.predictions.decoder) is torch.nn.Linear
    assert any("LM head" in note for note in backbone.info().notes)
    assert backbone.memory_bytes() < models["vqa"].memory_bytes()
    result = backbone.answer(scene(), QUESTION, candidates=["red", "blue"], top_k=2)
    assert sum(p for _, p in result.candidates) == pytest.approx(1.0, abs=1e-5)
    assert backbone.explain(scene(), QUESTION).cross.shape[-2:] == CONFIG_GRID
    clip = load_hub_backbone(str(folders["clip"]), quantize="int8")
    with pytest.raises(UnsupportedError, match="without quantization"):
        clip.explain(scene(), QUESTION)


@pytest.fixture(scope="module")
def blip64(tmp_path_factory):
    """A 64-wide BLIP (nf4's CPU kernel packs 64-value blocks) and its full-precision backbone."""
    folder = make_blip(tmp_path_factory.mktemp("hub") / "blip64", "vqa", hidden=64)
    return folder, load_hub_backbone(str(folder))


@pytest.mark.parametrize("scheme", ["bnb-int8", "bnb-nf4"])
def test_bitsandbytes_schemes_load_or_say_why_not(scheme, blip64):
    folder, full_precision = blip64
    usable, _ = availability()[scheme]
    if not usable:
        with pytest.raises(UnsupportedError, match="not available"):
            load_hub_backbone(str(folder), quantize=scheme)
        return
    backbone = load_hub_backbone(str(folder), quantize=scheme)
    wanted = "Linear8bitLt" if scheme == "bnb-int8" else "Linear4bit"
    assert any(type(m).__name__ == wanted for m in backbone.model.modules())
    assert type(backbone.model.text_decoder.cls.predictions.decoder) is torch.nn.Linear  # LM head kept
    notes = " ".join(backbone.info().notes)
    assert "LM head" in notes and "slower than fp32" in notes
    if scheme == "bnb-nf4":
        assert "4-bit CPU kernel" in notes  # the 69-wide MLP layers do not fit and stay fp32
    assert backbone.memory_bytes() < full_precision.memory_bytes()
    assert backbone.info().facts["parameters"] == full_precision.info().facts["parameters"]  # nf4 packs two a byte
    result = backbone.answer(scene(), QUESTION, head="generative", max_new_tokens=3)
    assert 0 < result.score <= 1


# ----- failures --------------------------------------------------------------------------------------------
def test_uncached_hub_id_offline_fails_fast_and_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    start = time.perf_counter()
    with pytest.raises(ModelLoadError) as error:
        load_hub_backbone("Salesforce/blip-vqa-base")
    assert time.perf_counter() - start < 5  # a generous "fails fast" bound: without the offline check, transformers retries for a minute
    message = str(error.value)
    assert "Salesforce/blip-vqa-base" in message and "hf download Salesforce/blip-vqa-base" in message
    assert "HF_HOME" in message and "HF_HUB_OFFLINE" in message


def test_uncached_hub_id_without_network_fails_without_retrying(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setattr(loader, "_hub_reachable", lambda timeout=2.0: False)
    with pytest.raises(ModelLoadError, match="cannot be reached"):
        load_hub_backbone("dandelin/vilt-b32-finetuned-vqa")


@pytest.fixture
def online_hub(monkeypatch, tmp_path):
    """An empty HF cache and a hub that answers (faked): `model_info` lists the files set in `hub.files`,
    `snapshot_download` records downloads instead of making them (local lookups stay real)."""
    import huggingface_hub

    hub = SimpleNamespace(files={}, downloads=[], listed=[])
    real_snapshot_download = huggingface_hub.snapshot_download

    def model_info(self, repo_id, files_metadata=False, **kwargs):
        hub.listed.append(repo_id)
        return SimpleNamespace(siblings=[SimpleNamespace(rfilename=f, size=size if files_metadata else None)
                                         for f, size in hub.files.items()])

    def snapshot_download(repo_id, **kwargs):
        if kwargs.get("local_files_only"):
            return real_snapshot_download(repo_id, **kwargs)
        hub.downloads.append((repo_id, kwargs.get("allow_patterns")))
        return str(tmp_path)

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("VQA_MAX_DOWNLOAD_GB", raising=False)
    monkeypatch.setattr(loader, "offline_reason", lambda: None)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return hub


GB = 10**9


def test_download_over_the_size_limit_is_refused_before_it_starts(online_hub, monkeypatch):
    # 3 GB of safetensors; the 5 GB pickle is not fetched (DOWNLOAD_PATTERNS), so it does not count
    online_hub.files = {"config.json": 1_000, "model-00001-of-00002.safetensors": 2 * GB,
                        "model-00002-of-00002.safetensors": GB, "pytorch_model.bin": 5 * GB}
    with pytest.raises(ModelLoadError, match="limit of 2 GB") as error:
        loader.resolve_folder("big/model")
    assert "3.00 GB" in str(error.value) and "VQA_MAX_DOWNLOAD_GB" in str(error.value)
    assert online_hub.listed == ["big/model"] and online_hub.downloads == []
    monkeypatch.setenv("VQA_MAX_DOWNLOAD_GB", "4")  # read when called
    loader.resolve_folder("big/model")
    assert online_hub.downloads == [("big/model", loader.DOWNLOAD_PATTERNS)]


def test_download_within_the_limit_goes_ahead(online_hub):
    online_hub.files = {"config.json": 1_000, "model.safetensors": GB, "pytorch_model.bin": 5 * GB}
    loader.resolve_folder("small/model")
    assert online_hub.downloads == [("small/model", loader.DOWNLOAD_PATTERNS)]


def test_download_without_safetensors_is_refused_before_it_starts(online_hub):
    online_hub.files = {"config.json": 1_000, "pytorch_model.bin": GB}
    with pytest.raises(ModelLoadError, match="no safetensors"):
        loader.resolve_folder("pickled/model")
    assert online_hub.downloads == []


def test_cached_hub_id_loads_from_the_hf_cache_offline(monkeypatch, tmp_path, folders):
    put_in_hf_cache(folders["vqa"], tmp_path / "hf" / "hub", "tiny/blip-vqa")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    backbone = load_hub_backbone("tiny/blip-vqa")
    assert backbone.name == "tiny/blip-vqa" and "generative" in backbone.capabilities


def test_pickle_only_weights_are_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="pickle"):
        load_hub_backbone(str(make_pickle_only(tmp_path / "pickle-only")))


def test_unknown_model_type_lists_the_supported_families(tmp_path):
    folder = tmp_path / "llama"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(ModelLoadError) as error:
        load_hub_backbone(str(folder))
    assert all(family in str(error.value) for family in ("BLIP", "ViLT", "VisionEncoderDecoder", "CLIP"))


def test_missing_folder_and_bad_names_are_clear(tmp_path):
    with pytest.raises(ModelLoadError, match="neither a folder nor a hub id"):
        load_hub_backbone(str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match="two checkpoints"):
        load_hub_backbone("a/b+c/d+e/f")


# ----- pairing ------------------------------------------------------------------------------------------
def test_pair_spec_serves_each_request_from_the_part_that_can(folders, models):
    pair = load_hub_backbone(f"{folders['vqa']}+{folders['caption']}")
    assert pair.capabilities == {"classifier", "generative", "caption", "explain"}
    image = scene()
    assert pair.answer(image, QUESTION, head="generative", max_new_tokens=4).answer == models["vqa"].answer(
        image, QUESTION, head="generative", max_new_tokens=4).answer
    assert pair.caption(image, max_new_tokens=4).text == models["caption"].caption(image, max_new_tokens=4).text
    assert pair.explain(image, QUESTION).tokens[1] == "what"  # the VQA question encoder, not the caption decoder
    info = pair.info()
    assert "caption from" in info.facts and any("first part that can serve it" in n for n in info.notes)
    assert pair.memory_bytes() == models["vqa"].memory_bytes() + models["caption"].memory_bytes()


def test_vqa_load_routes_hub_checkpoints_here(folders):
    import vqa

    assert type(vqa.load(str(folders["vilt"]))).__name__ == "ViltVqaBackbone"


def test_blip_itm_projects_the_image_once_for_all_candidate_texts_with_the_same_logits(models):
    """Re-ranking reads many texts against one picture: the picture's cross-attention keys and values are
    projected once (a batch of 1) and shared, and the match probabilities equal transformers' own ITM forward."""
    backbone, image = models["itm"], scene()
    texts = ["a red square", "a blue circle", "a green star on the left"]
    backbone.clear_caches()
    batches = []
    hooks = [layer.crossattention.self.key.register_forward_hook(lambda module, args, out: batches.append(args[0].shape[0]))
             for layer in backbone.model.text_encoder.encoder.layer]
    try:
        ours = backbone._match([image], texts)[0]
    finally:
        for hook in hooks:
            hook.remove()
    assert batches and set(batches) == {1}  # never once per text
    enc = backbone.tokenize(texts, backbone.max_text_length)
    with torch.inference_mode():
        plain = backbone.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                               pixel_values=backbone.pixel_values(image).expand(len(texts), -1, -1, -1), use_itm_head=True).itm_score
    assert ours == pytest.approx(torch.softmax(plain.float(), dim=-1)[:, 1].tolist(), abs=1e-5)
