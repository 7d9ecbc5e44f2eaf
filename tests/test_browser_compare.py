"""Compare at class scale in a real browser: a class's runs drawn as one band per recipe, on a projector.

A server of its own holds 300 runs of 30 students (done, shared, failed; :mod:`devtools.class_runs`). In
presentation mode at 1280 px the recipe section must render without an error, its chart must draw one legend
entry per recipe saying what the band spans, and its table must fit the width. Skips without headless Chromium
or Playwright (see ``tests/test_browser.py``). ``CGCNN_SCREENSHOT_DIR`` keeps a screenshot of the section.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from browser_support import CLIPPED_JS, chromium, wait_until_idle

from devtools.class_runs import make_class

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    yield from chromium()


@pytest.fixture(scope="module")
def server(tmp_path_factory, browser):
    """The app with no workers and a store of 300 runs by 30 students."""
    from cgcnn.app.identity import new_token
    from cgcnn.runs.store import RunStore
    from devtools.app_server import AppServer

    home = tmp_path_factory.mktemp("compare_home")
    store = RunStore(home / "runs.sqlite")
    make_class(store, 300, owners=30, queued=0, running=0, epochs=2, predictions=False)
    with AppServer(home, env={"CGCNN_WORKERS": "0"}) as app:
        app.store, app.token = store, new_token(home)
        yield app


def test_a_class_of_runs_is_one_band_per_recipe_on_a_projector(browser, server):
    from cgcnn.app import recipes

    expected = recipes.group_recipes(server.store.list_runs())
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{server.url}/Compare_runs?user=student-01&token={server.token}&present=1")
        wait_until_idle(page)
        heading = page.get_by_role("heading", name="Runs grouped by recipe")
        heading.wait_for(timeout=60_000)
        chart = page.locator('[data-testid="stPlotlyChart"]', has_text="per recipe").first
        chart.wait_for(timeout=60_000)
        chart.scroll_into_view_if_needed()
        legend = chart.locator(".legendtext")
        legend.first.wait_for(timeout=60_000)
        names = legend.all_text_contents()  # SVG text: no innerText
        assert len(names) == len(expected) == 10
        assert all("band over model seeds" in name for name in names), names
        assert chart.locator("path.js-fill").count() >= len(expected)  # the bands are drawn
        for recipe in expected[:3]:
            assert page.get_by_text(recipe.label, exact=True).count() >= 1  # a table row per recipe
        assert page.locator('[data-testid="stException"]').count() == 0
        assert page.locator('[data-testid="stAlertContentError"]').count() == 0
        assert page.evaluate(CLIPPED_JS) == []
        assert errors == []
        folder = os.environ.get("CGCNN_SCREENSHOT_DIR")
        if folder:
            heading.scroll_into_view_if_needed()
            time.sleep(2.0)
            Path(folder).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(folder) / "compare_recipes.png"))
    finally:
        page.close()
