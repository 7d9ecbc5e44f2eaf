"""The real app in headless Chromium: every page loads without an exception box, the 3D viewer is not blank.

Drives Debian's ``chromium`` (``apt-get install chromium``) with Playwright; skips when either is missing.
Set ``CGCNN_SCREENSHOT_DIR`` to keep screenshots of the main pages (the ones in ``docs/`` come from here).
"""

from __future__ import annotations

import io
import os
import re
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("CGCNN_CHROMIUM", "/usr/bin/chromium"))
PAGES = {
    "": "home",
    "Model_zoo": "zoo",
    "Fine_tune": "finetune",
    "Compare_runs": "compare",
    "Crystal_viewer": "viewer",
    "Representations": "representations",
    "Predict": "predict",
    "Class": "class",
}


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"headless Chromium not found at {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--use-gl=swiftshader", "--enable-unsafe-swiftshader", "--no-sandbox", "--disable-dev-shm-usage"],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, browser):
    """The app on 127.0.0.1 with its own home, holding one finished tiny fine-tune by 'demo'."""
    from app_server import AppServer

    from cgcnn.runs.store import RunStore
    from cgcnn.training.finetune import FinetuneSpec, run_finetune

    home = tmp_path_factory.mktemp("browser_home")
    old = os.environ.get("CGCNN_HOME")
    os.environ["CGCNN_HOME"] = str(home)
    try:
        spec = FinetuneSpec(
            pretrained="formation-energy-per-atom", freeze=2, n_train=40, n_val=20, n_test=20,
            hyperparams={"epochs": 3},
        )  # fmt: skip
        outcome = run_finetune(spec, store=RunStore(), owner="demo")
        RunStore().set_name(outcome.run_id, "demo-band-gap")
    finally:
        if old is None:
            os.environ.pop("CGCNN_HOME", None)
        else:
            os.environ["CGCNN_HOME"] = old
    with AppServer(home, env={"CGCNN_WORKERS": "1"}) as app:
        yield app


def wait_until_idle(page, timeout_s: float = 90.0) -> None:
    """Wait until the script has run: a title is shown and the 'running' status widget is gone."""
    page.wait_for_selector("h1", timeout=timeout_s * 1000)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if page.locator('[data-testid="stStatusWidget"]').count() == 0:
            time.sleep(0.5)
            if page.locator('[data-testid="stStatusWidget"]').count() == 0:
                return
        time.sleep(0.3)
    raise AssertionError("the page kept running")


def distinct_colours(png: bytes) -> int:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB").resize((160, 120))
    return len(image.getcolors(maxcolors=160 * 120) or [])


def shoot(page, name: str) -> None:
    folder = os.environ.get("CGCNN_SCREENSHOT_DIR")
    if folder:
        if page.locator('[data-testid="stPlotlyChart"]').count():  # charts draw after the script has finished
            page.wait_for_function(
                "document.querySelectorAll('[data-testid=\"stPlotlyChart\"] .main-svg').length > 0", timeout=60_000
            )
        time.sleep(3.0)
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=False)


@pytest.mark.parametrize("path", list(PAGES))
def test_page_loads_without_exception(browser, server, path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{server.url}/{path}?user=demo", wait_until="domcontentloaded")
        wait_until_idle(page)
        assert page.locator('[data-testid="stException"]').count() == 0
        assert page.locator('[data-testid="stAlertContentError"]').count() == 0, page.inner_text("body")[:2000]
        if PAGES[path] in ("finetune", "compare"):
            # the run's label appears once the page's later widgets have rendered (the title comes first)
            page.get_by_text(re.compile("demo-band-gap|formation-energy")).first.wait_for(timeout=60_000)
        if PAGES[path] == "finetune":  # the opened run (the newest) shows its curves and parity plot
            page.wait_for_function(
                "document.querySelectorAll('[data-testid=\"stPlotlyChart\"]').length >= 2", timeout=60_000
            )
        if PAGES[path] in ("home", "finetune", "compare"):
            shoot(page, PAGES[path])
    finally:
        page.close()


def test_viewer_is_not_blank(browser, server):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    try:
        page.goto(f"{server.url}/Crystal_viewer?user=demo&crystal=mp-22862", wait_until="domcontentloaded")
        wait_until_idle(page)
        frame_element = page.locator('iframe[title^="3D view"]').first
        frame_element.wait_for(timeout=60_000)
        frame = frame_element.content_frame
        frame.locator("canvas").first.wait_for(timeout=60_000)
        assert frame.locator("text=3Dmol.js failed to load").count() == 0
        time.sleep(2.0)  # let WebGL draw
        shot = frame_element.screenshot()
        assert distinct_colours(shot) > 20, "the 3D viewer looks blank"
        canvas_shot = frame.locator("canvas").first.screenshot()
        assert distinct_colours(canvas_shot) > 10, "the 3D canvas is one colour"
        shoot(page, "viewer")
    finally:
        page.close()
