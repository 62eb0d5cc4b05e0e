"""A real browser drives the page: upload, ask, see both answers, open Attention, see a heatmap.

Uses Playwright with the system Chromium (/usr/bin/chromium, or $VQA_CHROMIUM).
Skipped when no Chromium is found, unless VQA_REQUIRE_BROWSER=1 (then it fails).
Every request the page makes must go to the loopback server: the page works offline.
Screenshots land in tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import pytest

import demo  # noqa: F401  (offline environment first)
from demo.state import ModelManager
from live_server import serve

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"]
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
QUESTION = "what color is the square?"


def find_chromium() -> str | None:
    for candidate in (os.environ.get("VQA_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@contextmanager
def browser_page(chromium: str):
    """A page in a fresh headless Chromium, closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser.new_context(viewport={"width": 1440, "height": 1000}, service_workers="block").new_page()
        finally:
            browser.close()


def skip_or_fail(reason: str):
    if os.environ.get("VQA_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (VQA_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        skip_or_fail("no Chromium found (looked for $VQA_CHROMIUM, /usr/bin/chromium, chromium on PATH)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        skip_or_fail("the playwright package is not installed")
    return path


@pytest.fixture(scope="module")
def app_url(chromium, tiny_model_dir):
    models = ModelManager(str(tiny_model_dir))
    assert models.preload(), models.load_error
    page, url = serve(models)
    yield url
    page.close()


@pytest.fixture(scope="module")
def image_path(tmp_path_factory) -> str:
    from vqa.data.splits import make_example

    path = tmp_path_factory.mktemp("browser_images") / "scene.png"
    make_example("test", 0, 96).image.resize((192, 192)).save(path)
    return str(path)


def test_ask_and_attention_in_a_real_browser(chromium, app_url, image_path):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # the CPU may be busy (a training run)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    outside: list[str] = []

    def check_request(request):
        url = urlparse(request.url)
        if url.scheme in ("data", "blob", "about"):
            return
        if url.hostname not in LOOPBACK:
            outside.append(request.url)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1440, "height": 1000}, service_workers="block")
            # Anything not for the loopback server is refused (and recorded), so a page that
            # needs the internet fails here instead of hanging on a timeout.
            context.route(lambda u: urlparse(u).hostname not in LOOPBACK and urlparse(u).scheme in ("http", "https", "ws", "wss"), lambda route: route.abort())
            page = context.new_page()
            page.on("request", check_request)
            page.set_default_timeout(30_000)
            page.goto(app_url, wait_until="domcontentloaded")

            # upload + question + Ask
            page.locator("#image input[type=file]").set_input_files(image_path)
            expect(page.locator("#image img").first).to_be_visible()
            page.locator("#question textarea").fill(QUESTION)
            page.locator("#ask-button").click()

            classifier = page.locator("#classifier-answer")
            generative = page.locator("#generative-answer")
            expect(classifier.get_by_test_id("label-output-value")).to_be_visible()
            expect(generative.get_by_test_id("label-output-value")).to_be_visible()
            expect(page.locator("#agreement .vqa-badge")).to_be_visible()
            classifier_answer = classifier.get_by_test_id("label-output-value").inner_text().strip()
            generative_answer = generative.get_by_test_id("label-output-value").inner_text().strip()
            assert classifier_answer and generative_answer
            page.screenshot(path=str(ARTIFACTS / "browser_ask.png"), full_page=True)

            # the Attention tab
            page.get_by_role("tab", name="Attention").click()
            page.locator("#explain-button").click()
            heat = page.locator("#heatmap img").first
            expect(heat).to_be_visible()
            page.wait_for_function("() => { const i = document.querySelector('#heatmap img'); return i && i.complete && i.naturalWidth > 0; }")
            width, height = heat.evaluate("img => [img.naturalWidth, img.naturalHeight]")
            assert width > 0 and height > 0
            expect(page.locator("#attention-text")).to_contain_text("looked most at")
            expect(page.locator("#attention-grid img").first).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "browser.png"), full_page=True)
        finally:
            browser.close()

    assert not outside, f"the page tried to reach hosts other than the loopback server: {outside}"


@pytest.fixture(scope="module")
def shipped_app_url(chromium):
    weights = ROOT / "weights" / "shapes-vlp"
    if not (weights / "model.safetensors").exists():
        pytest.skip(f"no shipped weights at {weights}")
    models = ModelManager(str(weights), offer_hub=False)
    assert models.preload(), models.load_error
    page, url = serve(models)
    yield url
    page.close()


def test_a_photograph_gets_the_amber_notice_and_a_shapes_scene_the_badge(chromium, shipped_app_url, tmp_path):
    """A visitor's first upload is often a photo: the answers are shown under an amber "outside what this
    model knows" notice, never the green agreement badge; a generated scene still gets the badge."""
    import matplotlib.cbook
    from playwright.sync_api import expect

    from vqa.data.splits import make_example

    photo = tmp_path / "photo.jpg"
    photo.write_bytes(Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).read_bytes())
    scene = tmp_path / "scene.png"
    make_example("test", 4, 192).image.save(scene)
    expect.set_options(timeout=30_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with browser_page(chromium) as page:
        page.goto(shipped_app_url, wait_until="domcontentloaded")
        page.locator("#image input[type=file]").set_input_files(str(photo))
        expect(page.locator("#image img").first).to_be_visible()
        page.locator("#question textarea").fill("is there a circle?")
        page.locator("#ask-button").click()
        notice = page.locator("#agreement .vqa-outside")
        expect(notice).to_be_visible()
        expect(notice).to_contain_text("Outside what this model knows")
        expect(page.locator("#agreement")).not_to_contain_text("agree")
        expect(page.locator("#classifier-answer").get_by_test_id("label-output-value")).to_be_visible()  # the answers stay
        page.screenshot(path=str(ARTIFACTS / "browser_photo.png"), full_page=True)

        page.goto(shipped_app_url, wait_until="domcontentloaded")
        page.locator("#image input[type=file]").set_input_files(str(scene))
        expect(page.locator("#image img").first).to_be_visible()
        page.locator("#question textarea").fill("how many shapes are there?")
        page.locator("#ask-button").click()
        expect(page.locator("#agreement .vqa-outside")).to_have_count(0)
        expect(page.locator("#agreement .vqa-badge")).to_contain_text("agree")


def test_learn_tab_compares_three_architectures_side_by_side(chromium, shipped_app_url):
    """A teacher opens Learn, keeps three architectures, compares them on an example: three answers, three
    attention maps and three diagrams appear, and the fourth slot stays hidden."""
    from playwright.sync_api import expect

    if not (ROOT / "weights" / "zoo" / "med-mid" / "model.safetensors").exists():
        pytest.skip("no architecture zoo in weights/zoo")
    expect.set_options(timeout=60_000)  # loading three members for the first time
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with browser_page(chromium) as page:
        page.goto(shipped_app_url, wait_until="domcontentloaded")
        page.locator("#examples table tbody tr").first.click()  # fills the image and the question
        expect(page.locator("#image img").first).to_be_visible()
        page.get_by_role("tab", name="Learn").click()
        page.locator("#learn-members").get_by_label("encoder-decoder").uncheck()  # four by default: keep three
        page.locator("#compare-models-button").click()

        titles = page.locator(".vqa-member-card:visible h3")
        expect(titles).to_have_count(3)
        assert sorted(t.inner_text().strip() for t in titles.all()) == ["dual-stream", "med-mid", "single-stream"]
        expect(page.locator("#comparison-table")).to_contain_text("single-stream")
        page.wait_for_function(
            "() => [...document.querySelectorAll('.vqa-member-heat img')].filter(i => i.complete && i.naturalWidth > 0).length === 3"
        )
        expect(page.locator(".vqa-member-diagram img")).to_have_count(3)
        answers = [strong.inner_text().strip() for strong in page.locator(".vqa-member-card:visible p strong").all()]
        assert len(answers) == 3 and all(answers), answers
        page.screenshot(path=str(ARTIFACTS / "browser_learn.png"), full_page=True)


def test_search_tab_finds_pictures_by_a_sentence_and_shows_where_the_words_matched(chromium, shipped_app_url):
    from playwright.sync_api import expect

    from vqa.data.splits import make_example

    if not (ROOT / "demo" / "gallery" / "index.json").exists():
        pytest.skip("no shipped search gallery in demo/gallery")
    expect.set_options(timeout=60_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with browser_page(chromium) as page:
        page.goto(shipped_app_url, wait_until="domcontentloaded")
        page.get_by_role("tab", name="Search").click()
        page.locator("#search-text textarea").fill(make_example("test", 17).captions[0])
        page.locator("#search-button").click()
        expect(page.locator("#search-table")).to_contain_text("test_0017")
        thumbnails = page.locator("#search-hits img")
        expect(thumbnails).to_have_count(8)
        thumbnails.first.click()
        page.wait_for_function("() => [...document.querySelectorAll('.vqa-heat img')].some(i => i.complete && i.naturalWidth > 0 && i.closest('#search-heat'))")
        page.screenshot(path=str(ARTIFACTS / "browser_search.png"), full_page=True)
