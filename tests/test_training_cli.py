"""The training loop and its objectives, on a tiny model (the command line is tested in test_cli.py)."""

from __future__ import annotations

import json

from PIL import Image

import vqa


def test_training_writes_a_loadable_model_folder(tiny_model_dir):
    for name in ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json", "training_config.json", "train_log.jsonl"):
        assert (tiny_model_dir / name).exists(), name
    log = [json.loads(line) for line in (tiny_model_dir / "train_log.jsonl").read_text().splitlines()]
    assert log and "val_classifier_accuracy" in log[-1]
    # the folder records the recipe it was trained with (what the zoo and the domain check read back)
    from dataclasses import asdict

    from vqa.training import preset

    recorded = json.loads((tiny_model_dir / "training_config.json").read_text())
    recipe = json.loads(json.dumps(asdict(preset("smoke"))))
    assert {key: recorded[key] for key in recipe} == recipe
    model = vqa.load(tiny_model_dir)
    assert model.answer(Image.new("RGB", (32, 32), "red"), "is there a circle?").answer in model.labels


def test_the_perception_phase_trains_only_the_vision_tower_and_patch_head():
    import torch

    from vqa.model.processing import ShapesVLPProcessor
    from vqa.tokenizer import PACKAGE_TOKENIZER_DIR, load_tokenizer
    from vqa.training import BatchMaker, build_model, perception_losses, preset

    config = preset("smoke")
    tokenizer = load_tokenizer(PACKAGE_TOKENIZER_DIR)
    model = build_model(config)
    batches = BatchMaker(ShapesVLPProcessor.for_config(model.config, tokenizer), config)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    perception_losses(model, batches.perception_batch(0), config)["total"].backward()
    optimizer.step()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed and all(name.startswith(("vision_model.", "patch_head.")) for name in changed)
    assert any(name.startswith("vision_model.stem") for name in changed)
    # its scenes are not the joint phase's
    assert not torch.equal(batches.perception_batch(0)["pixel_values"], batches(0)["pixel_values"][: config.images_per_step])


def test_the_training_log_reports_patch_accuracy_after_perception(tiny_model_dir):
    log = [json.loads(line) for line in (tiny_model_dir / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["phase"] == "perception" and set(log[0]["val_patch_accuracy"]) == {"color", "shape", "size"}
    assert log[-1]["phase"] == "joint" and "val_classifier_by_family" in log[-1]


def test_question_words_naming_an_object_look_at_it():
    """Word-region alignment targets: the words of the phrase a question names its object by point
    at that object; the other tokens ([CLS], "what", "left") have no target. The words of an
    existence question about something the scene lacks point at "no object" (region 0)."""
    from vqa.data.splits import make_example
    from vqa.model.processing import ShapesVLPProcessor
    from vqa.tokenizer import PACKAGE_TOKENIZER_DIR, load_tokenizer
    from vqa.training import BatchMaker, build_model, preset

    config = preset("smoke")
    tokenizer = load_tokenizer(PACKAGE_TOKENIZER_DIR)
    model = build_model(config)
    processor = ShapesVLPProcessor.for_config(model.config, tokenizer)
    batches = BatchMaker(processor, config)
    examples = [make_example("train", i, image_size=model.config.image_size) for i in range(50)]

    def targets_of(question):
        regions = batches.question_token_regions([question.text], [question])[0]  # (T, 1 + MAX_OBJECTS)
        tokens = processor.text_tokenizer.convert_ids_to_tokens(processor.text([question.text])["input_ids"][0].tolist())
        return tokens, [tuple(r.nonzero().flatten().tolist()) for r in regions]

    example = next(e for e in examples if len(e.scene.objects) >= 3 and any(q.relation for q in e.questions))
    spatial = next(q for q in example.questions if q.relation)
    tokens, targets = targets_of(spatial)
    named = [token for token, target in zip(tokens, targets) if target]
    assert named and " ".join(named).replace(" ##", "") in spatial.phrase  # the anchor's words only ...
    assert set(targets) == {(), (spatial.phrase_objects[0] + 1,)}  # ... and they look at the anchor
    assert targets[0] == () and targets[tokens.index(spatial.relation)] == ()

    absent = next(q for e in examples for q in e.questions if q.family == "exist" and q.answer == "no")
    tokens, targets = targets_of(absent)
    assert {target for target in targets if target} == {(0,)}, (absent.text, targets)


def _smoke_batches(**overrides):
    from vqa.model.processing import ShapesVLPProcessor
    from vqa.tokenizer import PACKAGE_TOKENIZER_DIR, load_tokenizer
    from vqa.training import BatchMaker, build_model, preset

    config = preset("smoke", **overrides)
    tokenizer = load_tokenizer(PACKAGE_TOKENIZER_DIR)
    model = build_model(config)
    processor = ShapesVLPProcessor.for_config(model.config, tokenizer)
    return config, model, processor, BatchMaker(processor, config)


def test_cls_grounding_points_an_existence_question_at_what_it_names():
    """With `cls_grounding_families`, the question's [CLS] (token 0) gets the phrase's targets: the named
    objects when present, "no object" (region 0) when absent; other families' [CLS] stays free."""
    from vqa.data.splits import make_example

    config, model, processor, batches = _smoke_batches(cls_grounding_families=("exist", "count"))
    questions = [q for i in range(30) for q in make_example("train", i, image_size=model.config.image_size).questions]
    regions = {}
    for kind, pick in {
        "present": lambda q: q.family == "exist" and q.answer == "yes",
        "absent": lambda q: q.family == "exist" and q.answer == "no",
        "count": lambda q: q.family == "count" and q.answer not in ("0", "1"),
        "colour": lambda q: q.family == "color",
    }.items():
        question = next(q for q in questions if pick(q))
        cls_regions = batches.question_token_regions([question.text], [question])[0, 0]  # (1 + MAX_OBJECTS,)
        regions[kind] = (question, set(cls_regions.nonzero().flatten().tolist()))
    present, found = regions["present"]
    assert found == {i + 1 for i in present.phrase_objects} and found
    assert regions["absent"][1] == {0}
    count, found = regions["count"]
    assert len(found) == int(count.answer) and 0 not in found
    assert regions["colour"][1] == set()


def test_an_encoder_decoder_aligns_its_question_words_but_never_its_cls():
    """In a causal decoder [CLS] comes before the question and cannot know what is asked: even with
    `cls_grounding_families` it gets no target, while the words of the question's phrase keep theirs."""
    from vqa.data.splits import make_example
    from vqa.training import preset

    # the smoke sizes, the encoder-decoder's own layers
    sizes = {k: v for k, v in preset("smoke").model.items() if k not in ("vision_layers", "text_layers", "fusion_layer", "decoder_layers")}
    config, model, processor, batches = _smoke_batches(architecture="encoder-decoder", model=sizes, cls_grounding_families=("exist", "count"))
    assert model.config.fusion == "decoder"
    question = next(q for i in range(30) for q in make_example("train", i, image_size=model.config.image_size).questions
                    if q.family == "exist" and q.answer == "yes")
    regions = batches.question_token_regions([question.text], [question])[0]  # (T, 1 + MAX_OBJECTS)
    assert not regions[0].any()
    assert {tuple(r.nonzero().flatten().tolist()) for r in regions[1:] if r.any()} == {tuple(sorted(i + 1 for i in question.phrase_objects))}


def test_objectives_weighted_zero_are_not_computed():
    """The quick preset drops ITM and ITC: a zero weight skips them (no ITM loss, no gradient to the ITM head)."""
    from vqa.training import compute_losses, loss_weights, preset

    weights = {**loss_weights(preset("smoke")), "itm": 0.0, "itc": 0.0}
    config, model, processor, batches = _smoke_batches(loss_weights=weights)
    losses = compute_losses(model, batches(0), config)
    assert "itm" not in losses and "itc" not in losses and {"classifier", "generative", "caption", "grounding"} <= set(losses)
    losses["total"].backward()
    assert model.itm_head.weight.grad is None and model.vision_proj.weight.grad is None
    assert model.vqa_head[0].weight.grad is not None


def test_training_learns_a_tiny_model_in_a_few_dozen_steps(tmp_path):
    """80 steps of the tiny recipe (about 10 s): the joint loss falls and validation accuracy rises. A loop
    whose optimizer never steps, whose gradients never reach the weights or whose labels are shuffled stays flat."""
    from dataclasses import replace

    from vqa.training import preset, train

    config = replace(preset("smoke", steps=60), vision_warmup_steps=20, eval_every=20, eval_scenes=6, curriculum_steps=1,
                     warmup_steps=5, learning_rate=3e-3, min_learning_rate=1e-3)
    train(config, tmp_path, progress=False)
    joint = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    joint = [record for record in joint if record["phase"] == "joint"]
    assert len(joint) == 3
    first, last = joint[0], joint[-1]
    assert last["loss_total"] < 0.85 * first["loss_total"], [r["loss_total"] for r in joint]
    assert last["loss_classifier"] < first["loss_classifier"]
    assert last["val_classifier_accuracy"] > first["val_classifier_accuracy"], [r["val_classifier_accuracy"] for r in joint]


def test_cls_grounding_points_a_left_right_question_at_the_object_it_asks_about():
    """A left/right question's phrase names its anchor ("...left of the square?"), but its [CLS] is taught
    to look at the referent, the object whose colour or shape is the answer, while the anchor's words
    still look at the anchor; a colour question's [CLS] looks at the object it names."""
    from vqa.data.splits import make_example

    config, model, processor, batches = _smoke_batches(cls_grounding_families=("color", "spatial_color", "spatial_shape"))
    questions = [q for i in range(30) for q in make_example("train", i, image_size=model.config.image_size).questions]
    spatial = [next(q for q in questions if q.family == family) for family in ("spatial_color", "spatial_shape")]
    colour = next(q for q in questions if q.family == "color")
    for question in [*spatial, colour]:
        regions = batches.question_token_regions([question.text], [question])[0]  # (T, 1 + MAX_OBJECTS)
        assert set(regions[0].nonzero().flatten().tolist()) == {question.referent + 1}, question.text
    for question in spatial:
        assert question.referent not in question.phrase_objects
        regions = batches.question_token_regions([question.text], [question])[0]
        assert set(regions[1:].nonzero()[:, 1].tolist()) == {i + 1 for i in question.phrase_objects}, question.text


def test_cls_grounding_every_layer_teaches_the_layers_above_the_first():
    """With `cls_grounding_every_layer` the grounding loss also reaches the [CLS] of the fused layers above the first
    (here the second of two), and without it those layers' attention gets no grounding gradient at all."""
    import torch

    from vqa.training import compute_losses, loss_weights, preset

    families = ("color", "shape", "size", "spatial_color", "spatial_shape")
    weights = {name: 0.0 for name in loss_weights(preset("smoke"))} | {"grounding": 1.0}
    gradients, losses = {}, {}
    for every_layer in (False, True):
        torch.manual_seed(0)
        config, model, processor, batches = _smoke_batches(
            cls_grounding_families=families, cls_grounding_every_layer=every_layer, loss_weights=weights,
            model={**preset("smoke").model, "fusion_layer": 0})
        assert model.config.fused_layers == [0, 1]
        loss = compute_losses(model, batches(0), config)["grounding"]
        loss.backward()
        query = model.fusion.layers[1].cross_attention.query.weight.grad
        gradients[every_layer] = 0.0 if query is None else float(query.abs().sum())
        losses[every_layer] = loss.item()
    assert gradients[False] == 0.0 and gradients[True] > 0.0
    assert losses[True] > losses[False]  # the same first-layer loss, plus the layer above's
