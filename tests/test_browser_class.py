"""Teacher mode in real browsers: two contexts (a student and the teacher) on one server at once.

The student's wrong password is refused and unlocks nothing; the teacher's unlocks the class panel in the
teacher's browser only, and clearing the queue there cancels another person's queued run. Skips without
headless Chromium or Playwright (see ``tests/test_browser.py``).
"""

from __future__ import annotations

import re
import time

import pytest
from browser_support import CLIPPED_JS, chromium, wait_until_idle

from devtools.class_runs import make_class, spec_dict

pytestmark = pytest.mark.browser

PASSWORD = "chalk and blackboard"


@pytest.fixture(scope="module")
def browser():
    yield from chromium()


@pytest.fixture(scope="module")
def server(tmp_path_factory, browser):
    """The app with a teacher password and no workers, holding one queued run by 'bob'."""
    from cgcnn.runs.store import RunStore
    from devtools.app_server import AppServer

    home = tmp_path_factory.mktemp("class_home")
    store = RunStore(home / "runs.sqlite")
    run_id = store.create_run(spec_dict(5, epochs=2), owner="bob", status="queued")
    env = {"CGCNN_WORKERS": "0", "CGCNN_TEACHER_PASSWORD": PASSWORD}
    with AppServer(home, env=env) as app:
        app.store, app.run_id = store, run_id
        yield app


def try_password(page, password: str) -> None:
    page.get_by_label("Teacher password").fill(password)
    page.get_by_role("button", name="Unlock").click()
    time.sleep(1.0)
    wait_until_idle(page, 60.0)


def test_student_refused_teacher_clears_the_queue(browser, server):
    student = browser.new_context(viewport={"width": 1300, "height": 1000})
    teacher = browser.new_context(viewport={"width": 1300, "height": 1000})
    try:
        s_page, t_page = student.new_page(), teacher.new_page()
        s_page.goto(f"{server.url}/Class?user=mallory", wait_until="domcontentloaded")
        t_page.goto(f"{server.url}/Class?user=teacher", wait_until="domcontentloaded")
        wait_until_idle(s_page, 60.0)
        wait_until_idle(t_page, 60.0)

        try_password(s_page, "blackboard")
        s_page.get_by_text("Wrong password.").wait_for(timeout=30_000)
        assert s_page.get_by_role("button", name="Clear the queue").count() == 0
        assert server.store.get(server.run_id).status == "queued"

        try_password(t_page, PASSWORD)
        t_page.get_by_role("button", name="Clear the queue").wait_for(timeout=60_000)
        assert t_page.locator('[data-testid="stAlertContentError"]').count() == 0
        # the teacher's unlock stays in the teacher's browser: the student's page is still locked
        s_page.reload(wait_until="domcontentloaded")
        wait_until_idle(s_page, 60.0)
        assert s_page.get_by_role("button", name="Clear the queue").count() == 0

        t_page.get_by_role("button", name="Clear the queue").click()
        deadline = time.monotonic() + 30
        while server.store.get(server.run_id).status != "cancelled" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert server.store.get(server.run_id).status == "cancelled"
    finally:
        student.close()
        teacher.close()


def test_stale_pick_cancelled_elsewhere_does_not_break_the_class_page(browser, server):
    """Issue 24: pick a queued run, a student cancels it, the teacher clicks *Cancel selected* then another button.

    The picker's labels held the status, so the browser sent back a label that no longer existed: a TypeError,
    and the run table and every button vanished. Picks are run ids now; the toast says what happened.
    """
    run_id = server.store.create_run(spec_dict(77, epochs=2), owner="erin", status="queued")
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{server.url}/Class?user=head-teacher", wait_until="domcontentloaded")
        wait_until_idle(page, 60.0)
        try_password(page, PASSWORD)
        page.get_by_role("button", name="Cancel selected").wait_for(timeout=60_000)
        picker = page.locator('[data-testid="stMultiSelect"]').first
        picker.click()
        page.get_by_role("option", name=re.compile(run_id)).click()
        page.keyboard.press("Escape")
        wait_until_idle(page, 60.0)
        server.store.request_cancel(run_id, force=True)  # a student cancels it meanwhile
        time.sleep(1.0)
        page.get_by_role("button", name="Cancel selected").click()
        page.get_by_text(f"run {run_id} was already cancelled").first.wait_for(timeout=30_000)
        page.get_by_role("button", name="Clear the queue").click()  # then any button
        time.sleep(1.0)
        wait_until_idle(page, 60.0)
        page.get_by_role("button", name="Delete selected").click()
        page.get_by_text(f"deleted run {run_id}").first.wait_for(timeout=30_000)
        wait_until_idle(page, 60.0)
        assert page.locator('[data-testid="stException"]').count() == 0
        assert page.locator('[data-testid="stAlertContentError"]').all_inner_texts() == []
        assert page.locator('[data-testid="stTable"]').count() == 1  # the run table is still there
        assert page.get_by_role("button", name="Cancel selected").count() == 1
        assert errors == []
    finally:
        context.close()


# ------------------------------------------------------------------------------------- run tables at 1280 px (issue 24)

#: Where the headers *state* and *test MAE* and the first "reused from" cell end, against the window's width;
#: and any box holding a run table that scrolls sideways.
COLUMNS_JS = r"""
() => {
  const right = el => el ? el.getBoundingClientRect().right : null;
  const heads = Array.from(document.querySelectorAll('[data-testid="stTable"] th'));
  const head = name => heads.find(th => th.innerText.trim() === name);
  const cells = Array.from(document.querySelectorAll('[data-testid="stTable"] td'));
  const reused = cells.find(td => td.innerText.includes('reused from run'));
  const sideways = [];
  for (const table of document.querySelectorAll('[data-testid="stTable"]')) {
    for (let box = table.parentElement; box && box !== document.body; box = box.parentElement) {
      if (box.scrollWidth > box.clientWidth + 1 && !['visible', 'hidden'].includes(getComputedStyle(box).overflowX))
        sideways.push(box.className.slice(0, 40) + ' ' + box.scrollWidth + ' > ' + box.clientWidth);
    }
  }
  return {width: window.innerWidth, state: right(head('state')), mae: right(head('test MAE')),
          reused: right(reused), sideways};
}
"""


@pytest.fixture(scope="module")
def class_of_runs(server):
    """A dozen runs of four students: done, reused from a classmate, failed, running and queued (with an ETA)."""
    return make_class(server.store, n_runs=12, owners=4, queued=3, running=1, prefix="wide")


@pytest.mark.parametrize("width", [1280, 1400])
@pytest.mark.parametrize("path", ["Fine_tune", "Class"])
def test_run_tables_fit_without_sideways_scrolling(browser, server, class_of_runs, path, width):
    """Issue 24: at 1280-1400 px the grids scrolled sideways (1,154 px of columns in 818 px), hiding *state*
    (ETA, "reused from … trained by …") and *test MAE*."""
    context = browser.new_context(viewport={"width": width, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{server.url}/{path}?user=wide-00", wait_until="domcontentloaded")
        wait_until_idle(page, 60.0)
        if path == "Class":
            try_password(page, PASSWORD)
        else:
            page.get_by_text("Show everyone's runs", exact=True).click()
            time.sleep(1.0)
            wait_until_idle(page, 60.0)
        page.locator('[data-testid="stTable"] td', has_text="reused from run").first.wait_for(timeout=60_000)
        time.sleep(1.0)
        assert page.evaluate(CLIPPED_JS) == []
        found = page.evaluate(COLUMNS_JS)
        assert found["sideways"] == [], found
        for what in ("state", "mae", "reused"):
            assert found[what] is not None and found[what] <= found["width"], found
        assert page.locator('[data-testid="stException"]').count() == 0
    finally:
        context.close()
