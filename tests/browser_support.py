"""Shared by the Chromium tests: the headless browser and waiting for a page's script to finish."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("CGCNN_CHROMIUM", "/usr/bin/chromium"))


def chromium() -> Iterator:
    """A headless Chromium (Playwright), for a module-scoped fixture; skips when either is missing.

    Software WebGL (swiftshader), so the 3D viewer draws without a GPU.
    """
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


#: Script listing what of the page's tables is cut off on the right or scrolls sideways ([] when everything fits).
CLIPPED_JS = r"""
() => {
  const out = [];
  for (const el of document.querySelectorAll('[data-testid="stTable"], [data-testid="stDataFrame"]')) {
    const limit = Math.min(el.getBoundingClientRect().right, window.innerWidth);
    const grid = el.querySelector('.dvn-scroller');
    if (grid && grid.scrollWidth > grid.clientWidth + 1) out.push('grid scrolls sideways: ' + grid.scrollWidth);
    for (const cell of el.querySelectorAll('th, td')) {
      const r = cell.getBoundingClientRect();
      if (r.width > 0 && r.right > limit + 1) out.push('cell past the edge: ' + cell.innerText.slice(0, 30));
    }
    for (const box of el.querySelectorAll('*')) {
      if (box.scrollWidth > box.clientWidth + 1 && getComputedStyle(box).overflowX !== 'visible')
        out.push('scrolls sideways: ' + box.tagName + ' ' + box.scrollWidth + ' > ' + box.clientWidth);
    }
  }
  if (document.documentElement.scrollWidth > window.innerWidth) out.push('the page scrolls sideways');
  return out;
}
"""
