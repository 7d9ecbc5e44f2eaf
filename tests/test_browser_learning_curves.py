"""The Compare page's learning-curve view in headless Chromium, on a screen and in presentation mode.

The server's store holds a small grid of finished runs (scratch and a k=1 fine-tune at 50, 200 and 1,000
training crystals on three split seeds; no training, see ``devtools/curve_runs.py``). Skips without headless
Chromium or Playwright (see ``tests/test_browser.py``).
"""

from __future__ import annotations

import time

import pytest
from browser_support import CLIPPED_JS, chromium, wait_until_idle

pytestmark = pytest.mark.browser

#: Text sizes of the learning-curve chart (axis ticks, legend) and of the tables under it.
CURVE_TEXT_JS = r"""
() => {
  const charts = Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"]'))
    .filter(c => c.querySelector('.xaxislayer-above') && /training crystals/.test(c.textContent));
  if (!charts.length) return null;
  const chart = charts[0];
  const px = el => parseFloat(getComputedStyle(el).fontSize || el.style.fontSize);
  const ticks = Array.from(chart.querySelectorAll('.xtick text, .ytick text')).map(t => parseFloat(t.style.fontSize));
  const legend = Array.from(chart.querySelectorAll('.legendtext')).map(t => parseFloat(t.style.fontSize));
  const names = Array.from(chart.querySelectorAll('.legendtext')).map(t => t.textContent);
  const paths = chart.querySelectorAll('.scatterlayer .trace').length;
  return {ticks: Math.min(...ticks), legend: Math.min(...legend), names, paths};
}
"""


@pytest.fixture(scope="module")
def browser():
    yield from chromium()


@pytest.fixture(scope="module")
def server(tmp_path_factory, browser):
    from cgcnn.runs.store import RunStore
    from devtools.app_server import AppServer
    from devtools.curve_runs import add_curve_runs

    home = tmp_path_factory.mktemp("curve_home")
    add_curve_runs(RunStore(home / "runs.sqlite"))
    with AppServer(home, env={"CGCNN_WORKERS": "0"}) as app:
        yield app


def open_curves(browser, server, present: bool):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    flag = "&present=1" if present else ""
    user = "petra" if present else "sven"  # a name is claimed by the first browser that uses it
    page.goto(f"{server.url}/Compare_runs?user={user}{flag}", wait_until="domcontentloaded")
    wait_until_idle(page)
    heading = page.get_by_text("Learning curves: when does pretraining pay?").first
    heading.wait_for(timeout=60_000)
    group = page.get_by_role("radiogroup", name="Learning-curve results")
    choice = group.get_by_role("radio", name="this server's run store")
    if not choice.is_checked():  # the shipped results are the default once they exist
        group.get_by_text("this server's run store").click()
        wait_until_idle(page)
    for _ in range(3):  # a rerun (presentation mode settling) can replace the heading while it is scrolled to
        try:
            page.get_by_text("Learning curves: when does pretraining pay?").first.scroll_into_view_if_needed()
            break
        except Exception:  # detached: wait for the rerun and try again
            wait_until_idle(page)
    page.wait_for_function(f"({CURVE_TEXT_JS})() !== null", timeout=60_000)
    time.sleep(1.5)  # grids measure their columns after they mount
    return page


@pytest.mark.parametrize("present", [False, True], ids=["screen", "presentation"])
def test_learning_curve_view_draws_and_fits_at_1280px(browser, server, present):
    page = open_curves(browser, server, present)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        assert page.locator('[data-testid="stException"]').count() == 0
        assert page.locator('[data-testid="stAlertContentError"]').count() == 0, page.locator(
            '[data-testid="stAlertContentError"]'
        ).all_inner_texts()
        found = page.evaluate(CURVE_TEXT_JS)
        assert {"scratch", "formation-energy-per-atom k=1"} <= set(found["names"]), found
        assert any("Matbench CGCNN" in name for name in found["names"]), found
        assert found["paths"] >= 2 + 2 + 3  # two bands, two lines, three reference points
        if present:
            assert found["ticks"] >= 16 and found["legend"] >= 16, found
        else:
            assert found["ticks"] < 16, found
        assert page.get_by_text("Source: this server's runs").count() >= 1
        assert page.evaluate(CLIPPED_JS) == []
        assert errors == []
    finally:
        page.close()
