"""Teacher mode in real browsers: two contexts (a student and the teacher) on one server at once.

The student's wrong password is refused and unlocks nothing; the teacher's unlocks the class panel in the
teacher's browser only, and clearing the queue there cancels another person's queued run. Skips without
headless Chromium or Playwright (see ``tests/test_browser.py``).
"""

from __future__ import annotations

import time

import pytest
from browser_support import chromium, wait_until_idle

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
    from devtools.class_runs import spec_dict

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
