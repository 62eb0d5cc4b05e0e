"""The app served on loopback and called with gradio_client, as an API user would."""

from __future__ import annotations

from pathlib import Path

import pytest

import demo  # noqa: F401  (offline environment first)
from demo.state import ModelManager
from demo.ui import QUEUE_MAX_SIZE
from live_server import serve

QUESTION = "what color is the square?"


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    """The app in its default (public) mode, serving the tiny model; uploads unlimited (the tests upload fast)."""
    from demo.upload_limits import UploadLimiter

    models = ModelManager(str(tiny_model_dir))
    assert models.preload(), models.load_error
    page, url = serve(models, upload_limiter=UploadLimiter(per_client=10**6, per_server=10**6))
    yield page, url
    page.close()


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server[1], verbose=False)


@pytest.fixture(scope="module")
def image_path(tmp_path_factory) -> str:
    from vqa.data.splits import make_example

    path = tmp_path_factory.mktemp("server_images") / "scene.png"
    make_example("test", 1, 96).image.save(path)
    return str(path)


def test_serves_on_loopback_with_the_settings(server):
    page, url = server
    assert url.startswith("http://127.0.0.1:")
    assert page.max_file_size == 10_000_000
    assert page.enable_monitoring is False
    assert page._queue.max_size == QUEUE_MAX_SIZE


def test_ask_needs_only_image_and_question(client, image_path):
    from gradio_client import handle_file

    info = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/ask"]
    required = [p["parameter_name"] for p in info["parameters"] if not p["parameter_has_default"]]
    assert required == ["image", "question"]
    classifier, generative, badge, classifier_note, generative_note = client.predict(handle_file(image_path), QUESTION, api_name="/ask")
    assert classifier["label"] and classifier["confidences"]
    assert generative["label"]
    assert "agree" in badge


def test_ask_from_a_client_with_one_shared_tls_context(server, image_path):
    """The README's recommended client setup (one verifying SSLContext for all requests) works."""
    import ssl

    import certifi
    from gradio_client import Client, handle_file

    client = Client(server[1], verbose=False, ssl_verify=ssl.create_default_context(cafile=certifi.where()))
    classifier, generative, *_ = client.predict(handle_file(image_path), QUESTION, api_name="/ask")
    assert classifier["label"] and generative["label"]


def test_ask_with_decoding_options(client, image_path):
    from gradio_client import handle_file

    result = client.predict(handle_file(image_path), QUESTION, 3, "beam", 2, 0.9, 1.0, 4, api_name="/ask")
    assert len(result[0]["confidences"]) == 3 and "beam" in result[4]


def test_caption(client, image_path):
    from gradio_client import handle_file

    best, table, note = client.predict(handle_file(image_path), "beam", 2, 2, api_name="/caption")
    assert isinstance(best, str) and len(table.splitlines()) in (3, 4)  # header, rule, 1-2 captions


def test_explain(client, image_path):
    from gradio_client import handle_file
    from PIL import Image

    heat, grid, bar, text, note, *dropdowns = client.predict(handle_file(image_path), QUESTION, api_name="/explain")
    for picture in (heat, grid, bar):
        with Image.open(picture) as im:
            assert im.width > 10 and im.height > 10
    assert "looked most at" in text and note


def test_bad_input_gives_clear_error_and_server_keeps_serving(client, image_path, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello, I am text")
    with pytest.raises(AppError, match="not a readable image"):
        client.predict(handle_file(str(not_an_image)), QUESTION, api_name="/ask")
    with pytest.raises(AppError, match="limit is 300"):
        client.predict(handle_file(image_path), "why " * 2500, api_name="/ask")
    with pytest.raises(AppError, match="Please type a question"):
        client.predict(handle_file(image_path), "", api_name="/ask")
    with pytest.raises(AppError, match="No image"):
        client.predict(None, QUESTION, api_name="/ask")
    # still serving
    classifier, *_ = client.predict(handle_file(image_path), QUESTION, api_name="/ask")
    assert classifier["confidences"]


def test_failed_load_keeps_model(client, server, image_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    page, _ = server
    before = page.models.current()
    with pytest.raises(AppError):
        client.predict("", "/nonexistent/model/folder", api_name="/load_model")
    assert page.models.current() is before
    classifier, *_ = client.predict(handle_file(image_path), QUESTION, api_name="/ask")
    assert classifier["confidences"]


def test_compare_quantized(client, image_path):
    from gradio_client import handle_file

    summary, full, quant, *heatmaps = client.predict(handle_file(image_path), QUESTION, "int8", api_name="/compare_quantized")
    assert "Total variation" in summary and full["confidences"] and quant["confidences"]


def test_server_files_cannot_be_read_through_the_api(server, client, image_path):
    """A raw API call naming a file on the server (not an upload) is refused before our code runs."""
    import httpx
    from gradio_client import handle_file

    _, url = server
    for path in ("/etc/hostname", str(Path(__file__).resolve())):
        data = [{"path": path, "meta": {"_type": "gradio.FileData"}}, QUESTION, 5, "greedy", 3, 0.9, 1.0, 8]
        event = httpx.post(url + "gradio_api/call/ask", json={"data": data}, timeout=30).json()["event_id"]
        stream = httpx.get(url + f"gradio_api/call/ask/{event}", timeout=60).text
        assert "event: error" in stream and "event: complete" not in stream
    classifier, *_ = client.predict(handle_file(image_path), QUESTION, api_name="/ask")
    assert classifier["confidences"]
