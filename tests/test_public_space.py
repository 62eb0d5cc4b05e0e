"""The app as a public Space meets it: anonymous visitors and scripts calling every route directly.

- every control of every route (the private ones too, called by their index as the page does) with
  values out of range, of the wrong type or not finite: a clear message or a bounded answer within
  seconds, bounded memory, and a correct answer right after;
- each session chooses its own model from an allow-list; anything else gets one neutral message,
  whether or not it exists on the server, and no response names a server folder;
- `VQA_ALLOW_CUSTOM_MODELS=1` lets a session load a local folder, for that session only;
- uploads are limited per client; a session's attention state expires, and its memory with it.
"""

from __future__ import annotations

import io
import math
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

import demo  # noqa: F401  (offline environment first)
from demo.handlers import GENERIC_ERROR
from demo.state import NOT_OFFERED, ModelManager
from demo.upload_limits import UploadLimiter
from live_server import (
    ASK_DEFAULTS,
    Session,
    answer_key,
    ask,
    call,
    fn_indices,
    free_port,
    same_answer,
    serve,
    start_app,
    stop,
    upload,
    wait_until_up,
)

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_KEY = "weights/shapes-vlp"
MB = 1_000_000
#: A request may take this long on a loaded 2-core machine and still count as "within seconds": it only catches hangs.
DOES_NOT_HANG_S = 60


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def public(tiny_model_dir):
    """The app in its default (public) mode with the tiny model as default; the shipped model is offered too."""
    models = ModelManager(str(tiny_model_dir), allow_custom=False)
    assert models.preload(), models.load_error
    page, url = serve(models, upload_limiter=UploadLimiter(per_client=10**6, per_server=10**6), attention_state_ttl_s=2)
    yield page, url
    page.close()


@pytest.fixture(scope="module")
def url(public):
    return public[1]


@pytest.fixture(scope="module")
def scene(url):
    from vqa.data.splits import make_example

    example = make_example("test", 3, 96)
    return png_bytes(example.image), example.questions[0].text


@pytest.fixture(scope="module")
def baseline(url, scene):
    kind, outputs = ask(url, upload(url, scene[0]), scene[1])
    assert kind == "complete", outputs
    return answer_key(outputs)


def fn_index(page, api_name: str) -> int:
    return next(i for i, fn in page.fns.items() if fn.api_name == api_name)


def server_paths(tiny_model_dir) -> list[str]:
    from vqa.backbones.hub.loader import hub_cache_dir

    return [str(ROOT), str(tiny_model_dir), str(Path.home()), str(hub_cache_dir())]


# ----- every control of every route -------------------------------------------------------------
def ask_data(image, **changes) -> list:
    """/ask's inputs at the page's defaults, some changed, and the session's model (server side: None here)."""
    names = ["top_k", "decoding", "num_beams", "top_p", "temperature", "max_new_tokens"]
    values = {**dict(zip(names, ASK_DEFAULTS)), **changes}
    return [image, values.get("question", "what color is the square?"), *(values[n] for n in names), None]


def caption_data(image, **changes) -> list:
    values = {**dict(decoding="beam", num_captions=3, num_beams=3, top_p=0.9, temperature=1.0, max_new_tokens=40), **changes}
    return [image, *values.values(), None]


JUNK = [10**12, -1, "abc", None, {}, [], math.nan, math.inf, -math.inf, True]


def largest_allowed(image) -> list[tuple[str, list]]:
    """The most work a request may ask for: a bounded answer."""
    return [
        ("ask", ask_data(image, decoding="beam", num_beams=8, top_k=1000, max_new_tokens=16)),
        ("ask", ask_data(image, decoding="nucleus", top_k=1000, top_p=1.0, temperature=2.0, max_new_tokens=16)),
        ("caption", caption_data(image, decoding="beam", num_captions=5, num_beams=8, max_new_tokens=40)),
        ("caption", caption_data(image, decoding="nucleus", num_captions=5, max_new_tokens=40)),
        ("explain", [image, "what color is the square?", "first", "mean", "0:[CLS]", "rollout", None]),
    ]


def hostile_requests(image) -> list[tuple[str, list]]:
    """(route, data) for every control of every route: what the issue saw, then junk in every position."""
    requests = [
        ("ask", ask_data(image, decoding="beam", num_beams=1_000_000)),
        ("ask", ask_data(image, decoding="nucleus", top_k=1_000_000_000)),
        ("ask", ask_data(image, decoding="nucleus", temperature=math.inf, top_p=1e-6, max_new_tokens=1_000_000)),
        ("caption", caption_data(image, num_beams=10_000)),
        ("caption", caption_data(image, decoding="nucleus", num_captions=10_000)),
        ("ask", ask_data(image, question="\u200d" * 300)),
        ("ask", ask_data(image, question="?!... ,;")),
        *largest_allowed(image),
    ]
    for position in range(2, 8):
        requests += [("ask", ask_data(image) [:position] + [junk] + ask_data(image)[position + 1:]) for junk in JUNK]
    for position in range(1, 7):
        requests += [("caption", caption_data(image)[:position] + [junk] + caption_data(image)[position + 1:]) for junk in JUNK]
    question = "what color is the square?"
    for position in range(2, 6):  # layer, head, token, method
        defaults = ["first", "mean", "0:[CLS]", "attention"]
        requests += [("explain", [image, question, *defaults[:position - 2], junk, *defaults[position - 1:], None]) for junk in JUNK + ["99", "-1"]]
    requests += [("compare_quantized", [image, question, junk, None]) for junk in JUNK + ["int3"]]
    requests += [("load_model", [choice, custom, None]) for choice, custom in
                 [({}, ""), (5, None), ("/etc", ""), ("../../etc", ""), ("", "/etc"), ("", "~"), ("owner/unknown", ""), (None, {})]]
    requests += [("ask", ask_data(image, question=junk)) for junk in JUNK]
    return requests


def non_files(image_position_junk=JUNK) -> list[tuple[str, list]]:
    """Junk where a file belongs: Gradio's own file model refuses it before the app's code runs."""
    return [(route, make(junk)) for junk in image_position_junk if junk is not None and not isinstance(junk, dict)
            for route, make in (("ask", ask_data), ("caption", caption_data))]


@pytest.fixture(scope="module")
def app_process(tiny_model_dir, tmp_path_factory):
    """`python app.py` in its own process, as a Space runs it (public mode, int8, the tiny model): its memory is its own."""
    port = free_port()
    log = tmp_path_factory.mktemp("app_process") / "server.log"
    process = start_app(port, log, VQA_MODEL=str(tiny_model_dir), VQA_ALLOW_CUSTOM_MODELS="0")
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_up(url, process, timeout=300)
        yield process, url, log
    finally:
        stop(process)


def test_every_route_and_control_gets_a_clear_message_or_a_bounded_answer(app_process, scene, tiny_model_dir):
    import psutil

    process, url, log = app_process
    server = psutil.Process(process.pid)
    index = fn_indices(url)
    image = upload(url, scene[0])
    kind, outputs = ask(url, image, scene[1])
    assert kind == "complete"
    baseline = answer_key(outputs)
    paths = server_paths(tiny_model_dir)
    peak, stop_watching = [0], threading.Event()

    def watch_memory():
        while not stop_watching.is_set():
            peak[0] = max(peak[0], server.memory_info().rss)
            time.sleep(0.05)

    warm_up = Session(url)  # the starting point is a server that has served the largest allowed requests once
    for route, data in largest_allowed(image):
        assert warm_up.run(index[route], data)[0] == "complete"
    start_rss = server.memory_info().rss
    watcher = threading.Thread(target=watch_memory, daemon=True)
    watcher.start()
    answered = refused = 0
    try:
        session = Session(url)
        for route, data in hostile_requests(image):
            begin = time.monotonic()
            kind, result = session.run(index[route], data, timeout=DOES_NOT_HANG_S)
            assert time.monotonic() - begin < DOES_NOT_HANG_S
            text = str(result)
            assert not any(p in text for p in paths), (route, data, text[:300])
            if kind == "complete":
                answered += 1
            else:
                refused += 1
                assert kind == "error" and result and result != GENERIC_ERROR, (route, data, kind, result)
        # the private events, called by their index: junk is refused or ignored, never a crash
        explained = session.run(index["explain"], [image, "what color is the square?", "first", "mean", "0:[CLS]", "attention", None])
        assert explained[0] == "complete"
        for api_name in ("redraw_method", "redraw_layer", "redraw_head", "redraw_word"):
            for junk in JUNK + ["99", "abc"]:
                kind, result = session.run(index[api_name], [None, junk, junk, junk, junk])
                assert kind == "complete" or (kind == "error" and result != GENERIC_ERROR), (api_name, junk, result)
        for junk in JUNK:
            kind, result = session.run(index["decoding_controls"], [junk])
            assert kind == "complete" or (kind == "error" and result != GENERIC_ERROR), ("decoding_controls", junk, result)
        assert session.run(index["refresh"], [None])[0] == "complete"
        for route, data in non_files():
            assert session.run(index[route], data, timeout=DOES_NOT_HANG_S)[0] == "error"
    finally:
        stop_watching.set()
        watcher.join()
    assert answered >= 3 and refused >= 100
    assert "Unexpected error" not in log.read_text(), "a hostile value reached a bug path (see the server log)"
    assert peak[0] < 1_500 * MB, f"the server's resident memory reached {peak[0] / MB:.0f} MB"
    after = server.memory_info().rss
    assert after - start_rss < 100 * MB, f"the server's memory grew by {(after - start_rss) / MB:.0f} MB"
    kind, outputs = ask(url, upload(url, scene[0]), scene[1])  # a normal visitor right after
    assert kind == "complete" and same_answer(answer_key(outputs), baseline)


def test_ask_refuses_a_question_with_nothing_to_read(url, scene):
    for question in ("\u200d" * 300, "???", "... !"):
        kind, message = ask(url, upload(url, scene[0]), question)
        assert kind == "error" and "Please type a question" in message


# ----- choosing a model -------------------------------------------------------------------------
def test_a_model_not_offered_gets_one_neutral_message_whether_or_not_it_exists(url, tiny_model_dir):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    existing = [str(tiny_model_dir), str(ROOT / "weights"), "/etc", str(Path.home()), "~", "."]
    missing = ["/no/such/folder", "owner/unknown-model", "../../secret", "Salesforce/not-a-model"]
    messages = set()
    for name in existing + missing:
        for choice, custom in ((name, ""), ("", name)):
            kind, message = call(url, "load_model", [choice, custom])
            assert kind == "error", (name, message)
            messages.add(message)
    assert messages == {NOT_OFFERED}
    client = Client(url, verbose=False)
    for name in ("/etc", str(tiny_model_dir), "owner/unknown-model"):
        with pytest.raises(AppError, match="not offered on this server"):
            client.predict(name, "", api_name="/load_model")


def test_config_names_no_server_folder(url, tiny_model_dir):
    text = httpx.get(url + "config", timeout=30).text
    for path in server_paths(tiny_model_dir):
        assert path not in text, path


@pytest.mark.slow
def test_each_session_keeps_its_own_model(url, scene, baseline, shipped_model):
    """Client A switches to the shipped model and gets its answers; client B, at the same time, keeps the default's."""
    from gradio_client import Client, handle_file

    first, second = Client(url, verbose=False), Client(url, verbose=False)
    path = ROOT / "demo" / "examples" / "test_000.png"
    question = "what color is the circle?"
    status, facts, header = first.predict(SHIPPED_KEY, "", api_name="/load_model")
    assert "shapes-vlp" in header and "shapes-vlp" in facts
    a = answer_key(first.predict(handle_file(str(path)), question, api_name="/ask"))
    b = answer_key(second.predict(handle_file(str(path)), question, api_name="/ask"))
    expected = vqa_answer(shipped_model, path, question)
    assert a[0][0] == expected and not same_answer(a, b)
    # raw HTTP: a new session is on the default model, whatever sessions before it chose
    kind, outputs = ask(url, upload(url, scene[0]), scene[1])
    assert kind == "complete" and same_answer(answer_key(outputs), baseline)


def vqa_answer(model, path, question) -> str:
    import vqa

    return vqa.load(model.path, quantize="int8").answer(str(path), question).answer


# ----- custom models, upload limits, session memory ---------------------------------------------------
def test_custom_mode_loads_a_local_folder_for_that_session_only(tiny_model_dir, tmp_path, scene):
    from gradio_client import Client, handle_file

    other = tmp_path / "teachers-model"
    shutil.copytree(tiny_model_dir, other)
    models = ModelManager(str(tiny_model_dir), allow_custom=True, offer_hub=False)
    assert models.preload()
    page, url = serve(models, upload_limiter=UploadLimiter(per_client=3, per_server=100))
    try:
        chooser, bystander = Client(url, verbose=False), Client(url, verbose=False)
        status, facts, header = chooser.predict("", str(other), api_name="/load_model")
        assert "teachers-model" in header and "ready" in status
        assert models.cached_schemes(str(other))  # loaded, under the session's key
        image = tmp_path / "scene.png"
        image.write_bytes(scene[0])
        chooser.predict(handle_file(str(image)), scene[1], api_name="/ask")
        served = {id(b.backbone) for b in models._cache.values()}
        assert len(served) == 2
        # the chooser's page shows its model; the bystander's (and any new session's) still the default
        refresh = fn_index(page, "refresh")
        mine = Session(url)
        mine.hash = chooser.session_hash
        assert "teachers-model" in mine.run(refresh, [None])[1][1]
        for other_session in (bystander.session_hash, Session(url).hash):
            theirs = Session(url)
            theirs.hash = other_session
            header = theirs.run(refresh, [None])[1][1]
            assert "teachers-model" not in header and tiny_model_dir.name in header

        # uploads: 3 per client per minute here; a 4th from the same client is refused, another client is not
        codes = [httpx.post(url + "gradio_api/upload", files={"files": ("a.png", scene[0], "image/png")}, headers={"x-forwarded-for": "203.0.113.7"}).status_code
                 for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        refused = httpx.post(url + "gradio_api/upload", files={"files": ("a.png", scene[0], "image/png")}, headers={"x-forwarded-for": "203.0.113.7"})
        assert "Too many uploads" in refused.text
        assert httpx.post(url + "gradio_api/upload", files={"files": ("a.png", scene[0], "image/png")}, headers={"x-forwarded-for": "203.0.113.8"}).status_code == 200
    finally:
        page.close()


def test_explain_in_many_new_sessions_gives_its_memory_back_once_they_expire(tiny_model_dir, tmp_path):
    """`python app.py` (its own process): 10 new sessions each explain a 4,900 × 4,900 picture (88 kB as PNG,
    72 MB decoded); their attention state expires after 2 s here, and the server's memory comes back. Had each
    session kept its upload, the server would have grown by 720 MB."""
    import psutil

    port = free_port()
    process = start_app(port, tmp_path / "server.log", VQA_MODEL=str(tiny_model_dir), VQA_ATTENTION_TTL_S="2")
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_up(url, process, timeout=300)
        server = psutil.Process(process.pid)
        explain = fn_indices(url)["explain"]
        image = upload(url, png_bytes(Image.new("RGB", (4900, 4900), (200, 40, 40))))
        data = [image, "what color is the square?", "first", "mean", "0:[CLS]", "attention", None]
        assert Session(url).run(explain, data)[0] == "complete"  # warm-up: the first large picture
        time.sleep(3)
        before = server.memory_info().rss
        for _ in range(10):
            kind, outputs = Session(url).run(explain, data)
            assert kind == "complete", outputs
        time.sleep(4)  # the state's time to live (2 s) and Gradio's once-a-second sweep
        grown = server.memory_info().rss - before
        print(f"server memory growth after 10 explained 4,900 px pictures: {grown / MB:.0f} MB")
        assert grown < 150 * MB, f"the server's memory grew by {grown / MB:.0f} MB"
    finally:
        stop(process)


def test_the_attention_state_keeps_a_display_size_picture(public, url):
    """What a session keeps for re-drawing is the maps and a picture at display size, never the upload itself."""
    page, _ = public
    image = upload(url, png_bytes(Image.new("RGB", (3000, 2000), (20, 40, 200))))
    session = Session(url)
    assert session.run(fn_index(page, "explain"), [image, "what color is the square?", "first", "mean", "0:[CLS]", "attention", None])[0] == "complete"
    kept = [v for v in page.state_holder.session_data[session.hash].state_data.values() if isinstance(v, dict) and "maps" in v]
    assert len(kept) == 1 and kept[0]["image"].size == (384, 256)
    time.sleep(4)  # this server's state lives 2 s
    assert not [v for v in page.state_holder.session_data[session.hash].state_data.values() if isinstance(v, dict) and "maps" in v]
