"""The app served on loopback and called with gradio_client, as an API user would."""

from __future__ import annotations

from pathlib import Path

import pytest

import demo  # noqa: F401  (offline environment first)
from demo.state import ModelManager
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


def test_ask_needs_only_image_and_question(client, image_path):
    from gradio_client import handle_file

    info = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/ask"]
    required = [p["parameter_name"] for p in info["parameters"] if not p["parameter_has_default"]]
    assert required == ["image", "question"]
    classifier, generative, badge, classifier_note, generative_note = client.predict(handle_file(image_path), QUESTION, api_name="/ask")
    assert classifier["label"] and classifier["confidences"]
    assert generative["label"]
    assert "agree" in badge


def test_ask_over_tls_from_a_client_with_one_shared_verifying_context(tiny_model_dir, image_path, tmp_path):
    """The README's client setup (one verifying SSLContext for all requests) against the app served over HTTPS
    with a certificate from a throwaway authority: answers come back, and a client that does not trust that
    authority is refused, so certificates really are checked."""
    import ssl

    import certifi
    import trustme
    from gradio_client import Client, handle_file

    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    key_file, cert_file = tmp_path / "server.key", tmp_path / "server.pem"
    certificate.private_key_pem.write_to_path(str(key_file))
    certificate.cert_chain_pems[0].write_to_path(str(cert_file))
    models = ModelManager(str(tiny_model_dir), offer_hub=False)
    # launch's own ssl_verify only covers Gradio's start-up self-check, which does not know the authority
    page, url = serve(models, launch=dict(ssl_certfile=str(cert_file), ssl_keyfile=str(key_file), ssl_verify=False))
    try:
        assert url.startswith("https://127.0.0.1:")
        trusting = ssl.create_default_context()
        authority.configure_trust(trusting)
        classifier, generative, *_ = Client(url, verbose=False, ssl_verify=trusting).predict(handle_file(image_path), QUESTION, api_name="/ask")
        assert classifier["label"] and generative["label"]
        with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            Client(url, verbose=False, ssl_verify=ssl.create_default_context(cafile=certifi.where()))
    finally:
        page.close()


def test_ask_with_decoding_options(client, image_path, server):
    """Settings sent through the API reach the model: beam search's written answers, as the model itself writes them."""
    from gradio_client import handle_file

    result = client.predict(handle_file(image_path), QUESTION, 3, "beam", 2, 0.9, 1.0, 4, api_name="/ask")
    expected = server[0].models.current().ask(image_path, QUESTION, top_k=3, decoding="beam", num_beams=2, max_new_tokens=4)
    assert [c["label"] for c in result[0]["confidences"]] == [a for a, _ in expected.classifier.candidates]
    assert [c["label"] for c in result[1]["confidences"]] == [a or "(empty answer)" for a, _ in expected.generative.candidates]


def test_caption(client, image_path, server):
    """The caption sent back over the API is the one the served model writes for the same settings."""
    from gradio_client import handle_file

    best, table, note = client.predict(handle_file(image_path), "beam", 2, 2, api_name="/caption")
    expected = server[0].models.current().caption(image_path, decoding="beam", num_captions=2, num_beams=2)
    assert best == expected.text
    assert len(table.splitlines()) == 2 + len(expected.candidates or [expected.text])  # header, rule, one row per caption


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
