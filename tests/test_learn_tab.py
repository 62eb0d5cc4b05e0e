"""The Learn tab: the zoo's members compared on one picture over the API, their diagrams and the plots'
sentences, and live training in classroom mode (streamed curves, Stop, one run at a time, off by default)."""

from __future__ import annotations

import json
import threading

import gradio as gr
import httpx
import pytest

import demo  # noqa: F401  (offline environment first)
from demo.classroom import BUSY_TRAINING, CLASSROOM_OFF, QUICK_RECIPE, ClassroomTraining
from demo.learn import DEFAULT_MEMBERS, LearnHandlers
from demo.state import ZOO_DIR, ModelManager
from live_server import serve
from vqa.model import create_model, list_architectures
from vqa.zoo.diagrams import architecture_concepts, draw_architecture
from vqa.zoo.plots import plot_captions

QUESTION = "what color is the square?"
needs_zoo = pytest.mark.skipif(not (ZOO_DIR / "med-mid" / "model.safetensors").exists(), reason="no architecture zoo in weights/zoo")


@pytest.fixture(scope="module")
def image_path(tmp_path_factory) -> str:
    from vqa.data.splits import make_example

    path = tmp_path_factory.mktemp("learn_images") / "scene.png"
    make_example("test", 2, 96).image.save(path)
    return str(path)


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    from demo.upload_limits import UploadLimiter

    models = ModelManager(str(tiny_model_dir), offer_hub=False)
    classroom = ClassroomTraining(models, enabled=True, base="smoke", max_steps=30, threads=1, update_every_s=0.2)
    page, url = serve(models, upload_limiter=UploadLimiter(per_client=10**6, per_server=10**6), classroom=classroom)
    yield page, url, models
    page.close()


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server[1], verbose=False)


# ----- comparing members ----------------------------------------------------------------------
@needs_zoo
def test_compare_models_over_the_api_answers_once_per_requested_member(client, image_path):
    from gradio_client import handle_file

    table, *slots = client.predict(handle_file(image_path), QUESTION, ["med-early", "encoder-decoder", "mlim"], api_name="/compare_models")
    rows = table["data"]
    assert [row[0] for row in rows] == ["med-early", "encoder-decoder", "mlim"]
    headers = table["headers"]
    for row in rows:
        answer = dict(zip(headers, row))
        assert answer["answer"].strip()
        assert 0.0 <= answer["score"] <= 1.0
    # the encoder-decoder has no classifier head, so it answers with its decoder; the others with their classifier
    assert [dict(zip(headers, row))["head"] for row in rows] == ["classifier", "generative", "classifier"]


@needs_zoo
def test_compare_models_without_members_uses_the_lesson_defaults(client, image_path):
    from gradio_client import handle_file

    info = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/compare_models"]
    assert [p["parameter_name"] for p in info["parameters"] if not p["parameter_has_default"]] == ["image", "question"]
    table, *_ = client.predict(handle_file(image_path), QUESTION, api_name="/compare_models")
    assert [row[0] for row in table["data"]] == list(DEFAULT_MEMBERS)


@needs_zoo
def test_compare_models_says_what_is_wrong_with_the_members(client, image_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="Not a member of the zoo here: ../../shapes-vlp"):
        client.predict(handle_file(image_path), QUESTION, ["med-mid", "../../shapes-vlp"], api_name="/compare_models")
    with pytest.raises(AppError, match="at most 4"):
        client.predict(handle_file(image_path), QUESTION, ["med-early", "med-mid", "med-late", "mlim", "dual-stream"], api_name="/compare_models")


@needs_zoo
def test_each_member_shows_its_own_kind_of_attention_and_a_hidden_slot_for_the_rest(tiny_model_dir, image_path):
    learn = LearnHandlers(ModelManager(str(tiny_model_dir), offer_hub=False))
    table, *slots = learn.compare_models(image_path, QUESTION, ["dual-encoder", "dual-stream"])
    kinds = [row[-1] for row in table]
    assert kinds[0].startswith("similarity map") and kinds[1].startswith("co-attention")
    cards, heats, diagrams = slots[0::3], slots[1::3], slots[2::3]
    assert [c["visible"] for c in cards] == [True, True, False, False]
    assert all(h["value"] is not None and h["value"].size[0] > 0 for h in heats[:2])
    assert diagrams[0]["value"].tobytes() != diagrams[1]["value"].tobytes()


# ----- diagrams and the plots' sentences -------------------------------------------------------
def test_diagrams_name_the_idea_each_architecture_stands_for():
    concepts = {name: " ".join(architecture_concepts(create_model(name).config)) for name in list_architectures()}
    assert "single stream" in concepts["single-stream"] and "dual stream" not in concepts["single-stream"]
    assert "dual stream" in concepts["dual-stream"]
    assert "towers never meet" in concepts["dual-encoder"]
    assert "encoder-decoder" in concepts["encoder-decoder"]
    assert "early fusion" in concepts["med-early"] and "mid fusion" in concepts["med-mid"] and "late fusion" in concepts["med-late"]
    assert "shallow CNN" in concepts["mlim"] and "shallow CNN" not in concepts["single-stream"]
    pictures = {name: draw_architecture(create_model(name).config, name) for name in ("med-early", "med-late", "single-stream")}
    assert len({p.tobytes() for p in pictures.values()}) == 3  # moving the fusion layer changes the picture


def test_plot_sentences_are_read_from_the_results():
    results = json.loads((ZOO_DIR / "results.json").read_text()) if (ZOO_DIR / "results.json").exists() else pytest.skip("no zoo results")
    before = plot_captions(results)
    members = results["members"]
    members["mlim"]["test_accuracy"] = 0.999  # a different winner must change what the sentence says
    after = plot_captions(results)
    assert "mlim is the brightest row (100%" in after["family_accuracy.png"]
    assert before["family_accuracy.png"] != after["family_accuracy.png"]
    layers = [f"layer {members[name]['fusion_layer']} ({name})" for name in ("med-early", "med-mid", "med-late")]
    assert all(layer in after["fusion_layer.png"] for layer in layers)


# ----- live training --------------------------------------------------------------------------
def test_train_live_streams_the_curves_and_ends_with_a_model_for_this_session(server, image_path):
    from gradio_client import Client, handle_file

    client = Client(server[1], verbose=False)
    job = client.submit(QUICK_RECIPE, 1, api_name="/train_live")
    updates = list(job)
    status = job.outputs()[-1][0]
    with_curve = [u for u in updates if u[1] and u[1].get("data")]
    assert len(with_curve) >= 3, updates
    assert "Every tab of this page now answers with it" in status
    key = status.split("(model `")[1].split("`")[0]
    assert key.startswith("trained/")
    loaded, facts, header = Client(server[1], verbose=False).predict(key, "", api_name="/load_model")
    assert "trained-live" in loaded and "is ready" in loaded
    # the session that trained it answers with it in every tab
    classifier, *_ = client.predict(handle_file(image_path), QUESTION, api_name="/ask")
    assert classifier["label"]
    assert "/tmp" not in status and "vqa-live" not in status  # no server folder named


def test_without_classroom_mode_the_tab_explains_and_the_route_refuses(tiny_model_dir, monkeypatch):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    monkeypatch.delenv("VQA_CLASSROOM", raising=False)
    models = ModelManager(str(tiny_model_dir), offer_hub=False)
    page, url = serve(models)
    try:
        config = httpx.get(url + "config", timeout=10).text
        assert "Live training is off on this server" in config
        with pytest.raises(AppError, match="Live training is off"):
            Client(url, verbose=False).predict(QUICK_RECIPE, 1, api_name="/train_live")
    finally:
        page.close()


def test_a_second_training_is_told_the_server_is_busy_and_stop_ends_the_first(tiny_model_dir):
    classroom = ClassroomTraining(ModelManager(str(tiny_model_dir), offer_hub=False), enabled=True, base="smoke", max_steps=400, threads=1)
    first = classroom.train_live(QUICK_RECIPE, 1)
    next(first)  # the run has started
    with pytest.raises(gr.Error, match=BUSY_TRAINING.split(".")[0]):
        next(classroom.train_live(QUICK_RECIPE, 1))
    stopper = threading.Timer(3.0, classroom.stop_live)
    stopper.start()
    *_, final = first
    assert "stopped early" in final[0]
    assert classroom.stop_live() == "Nothing is training right now."
    again = classroom.train_live(QUICK_RECIPE, 1, None)
    assert next(again)  # the lock is free again
    classroom.stop_live()
    *_, final = again
    assert "stopped early" in final[0]


def test_off_by_default(tiny_model_dir, monkeypatch):
    monkeypatch.delenv("VQA_CLASSROOM", raising=False)
    classroom = ClassroomTraining(ModelManager(str(tiny_model_dir), offer_hub=False))
    with pytest.raises(gr.Error, match="Live training is off"):
        next(classroom.train_live(QUICK_RECIPE, 1))
    with pytest.raises(gr.Error, match=CLASSROOM_OFF[:30]):
        classroom.stop_live()
