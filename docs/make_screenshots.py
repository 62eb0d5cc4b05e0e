"""Re-take the README's screenshots with the shipped model: `python docs/make_screenshots.py`.

Serves the app on a free loopback port, drives Debian's Chromium with Playwright (as
tests/test_browser.py does), clicks the first example, asks, saves docs/screenshot.png,
then opens the Attention tab and saves docs/screenshot_attention.png, then the Learn tab:
three architectures compared (docs/screenshot_learn.png) and, in classroom mode, a
one-minute live training of the quick recipe (docs/screenshot_classroom.png).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # tests/test_browser.py imports its helpers as top-level modules

import demo  # noqa: E402,F401  (offline environment first)
from bench.bench_app_latency import free_port  # noqa: E402
from demo.classroom import ClassroomTraining  # noqa: E402
from demo.state import ModelManager  # noqa: E402
from demo.ui import build_demo, launch_kwargs  # noqa: E402
from tests.test_browser import CHROMIUM_ARGS, find_chromium  # noqa: E402

VIEWPORT = {"width": 1440, "height": 1000}


def main() -> int:
    chromium = find_chromium()
    if chromium is None:
        print("no Chromium found: apt-get install chromium", file=sys.stderr)
        return 1
    from playwright.sync_api import expect, sync_playwright

    models = ModelManager()
    if not models.preload():
        print(f"could not load the model: {models.load_error}", file=sys.stderr)
        return 1
    app = build_demo(models, classroom=ClassroomTraining(models, enabled=True))
    _, url, _ = app.launch(**launch_kwargs(server_port=free_port(), prevent_thread_lock=True, quiet=True))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(url)
            page.locator("#examples table tbody tr").first.click()  # fills the image and the question
            expect(page.locator("#image img").first).to_be_visible()
            page.locator("#ask-button").click()
            expect(page.locator("#agreement .vqa-badge")).to_be_visible(timeout=30_000)
            page.screenshot(path=str(ROOT / "docs" / "screenshot.png"), full_page=True)
            page.get_by_role("tab", name="Attention").click()
            page.locator("#explain-button").click()
            page.wait_for_function("() => { const i = document.querySelector('#heatmap img'); return i && i.complete && i.naturalWidth > 0; }")
            expect(page.locator("#attention-grid img").first).to_be_visible()
            page.screenshot(path=str(ROOT / "docs" / "screenshot_attention.png"), full_page=True)

            page.get_by_role("tab", name="Learn").click()
            page.locator("#learn-members").get_by_label("encoder-decoder").uncheck()
            page.locator("#compare-models-button").click()
            expect(page.locator(".vqa-member-card:visible h3")).to_have_count(3, timeout=120_000)
            page.wait_for_function("() => [...document.querySelectorAll('.vqa-member-diagram img')].filter(i => i.complete && i.naturalWidth > 0).length === 3")
            page.screenshot(path=str(ROOT / "docs" / "screenshot_learn.png"), full_page=True)

            page.locator("#train-button").click()
            expect(page.locator("#train-status")).to_contain_text("Every tab of this page", timeout=400_000)
            page.locator("#train-status").scroll_into_view_if_needed()
            page.screenshot(path=str(ROOT / "docs" / "screenshot_classroom.png"), full_page=True)
            browser.close()
    finally:
        app.close()
    print("wrote docs/screenshot.png, screenshot_attention.png, screenshot_learn.png and screenshot_classroom.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
