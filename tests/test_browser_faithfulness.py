"""Issue 20, item 7, in headless Chromium: the viewer states its colouring's faithfulness beside the colour bar,
draws this crystal's deletion curve, and *Remove the top N edges* marks the removed edges red in the 3D picture.

Skips without headless Chromium or Playwright (see ``tests/browser_support.py``).
"""

from __future__ import annotations

import io
import time

import pytest
from browser_support import chromium, wait_until_idle

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    yield from chromium()


@pytest.fixture(scope="module")
def server(tmp_path_factory, browser):
    """The app on its own empty home (no runs, no workers) and a token it issued."""
    from cgcnn.app.identity import new_token
    from devtools.app_server import AppServer

    home = tmp_path_factory.mktemp("faithfulness_home")
    token = new_token(home)
    with AppServer(home, env={"CGCNN_WORKERS": "0"}) as app:
        app.token = token
        yield app


def open_viewer(browser, server, query: str):
    """A page on the viewer with ``query``, once the script has run, its chart is drawn and 3Dmol has drawn."""
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(f"{server.url}/Crystal_viewer?user=demo&token={server.token}&{query}", wait_until="domcontentloaded")
    wait_until_idle(page, 120)
    page.wait_for_function(
        "document.querySelectorAll('[data-testid=\"stPlotlyChart\"] .main-svg').length > 0", timeout=90_000
    )
    frame = page.locator('iframe[title^="3D view"]').first.element_handle().content_frame()
    frame.wait_for_function("() => !!window.cgcnnViewer", timeout=60_000)
    time.sleep(1.5)  # the canvas's first frames
    return page, frame


def red_pixels(frame) -> int:
    """Pixels of the 3D canvas in the marked edges' red (#d62728; no element or Viridis colour is near it)."""
    import numpy as np
    from PIL import Image

    shot = np.asarray(Image.open(io.BytesIO(frame.locator("canvas").first.screenshot())).convert("RGB"), dtype=int)
    r, g, b = shot[..., 0], shot[..., 1], shot[..., 2]
    return int(((r > 150) & (g < 90) & (b < 90) & (r - g > 100)).sum())


def test_viewer_states_faithfulness_and_marks_the_removed_edges(browser, server):
    query = "crystal=mp-22862&model=own-attention&layer=1&colour=weights&edges=top&k=1"
    page, frame = open_viewer(browser, server, query + "&remove=0")
    try:
        line = frame.locator(".cgcnn-faithfulness").inner_text()
        assert line.startswith("faithfulness (deletion AUC on 40 test crystals): this colouring"), line
        bar = frame.locator('[data-for="edges"]').bounding_box()
        note = frame.locator(".cgcnn-faithfulness").bounding_box()
        assert 0 <= note["y"] - (bar["y"] + bar["height"]) < 40  # right under the edges' colour bar
        assert page.get_by_text("How faithful is this colouring?").count() == 1
        assert page.locator('[data-testid="stPlotlyChart"]').count() == 1  # this crystal's deletion curve
        assert frame.locator(".cgcnn-marked").count() == 0
        before = red_pixels(frame)
        assert page.locator('[data-testid="stException"]').count() == 0
    finally:
        page.close()

    page, frame = open_viewer(browser, server, query + "&remove=6&removal=delete")
    try:
        assert "the 6 edges removed" in frame.locator(".cgcnn-marked").inner_text()
        metrics = page.locator('[data-testid="stMetricLabel"]').all_inner_texts()
        assert "Without the top 6 edges" in metrics and "Without 6 random edges" in metrics, metrics
        after = red_pixels(frame)
        assert after > before + 200, (before, after)  # the dashed red cylinders are in the picture
        assert page.locator('[data-testid="stException"]').count() == 0
    finally:
        page.close()
