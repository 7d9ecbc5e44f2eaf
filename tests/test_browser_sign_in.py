"""Issue 23/24 in real browsers: a shared link is not a sign-in; a reload keeps the student and the teacher.

Student A signs in (the token goes to a cookie, never the address), opens the viewer and copies its address;
student B opens that address in another browser context and is not A, and cannot cancel or delete A's runs.
A reload keeps A signed in, and keeps the teacher in teacher mode, with no secret in the address. Skips
without headless Chromium or Playwright (see ``tests/browser_support.py``).
"""

from __future__ import annotations

import time

import pytest
from browser_support import chromium, wait_until_idle

pytestmark = pytest.mark.browser

PASSWORD = "chalk and blackboard"
SECRETS = ("token", "user=", "password", "cgcnn_", "t1.")


@pytest.fixture(scope="module")
def browser():
    yield from chromium()


@pytest.fixture(scope="module")
def server(tmp_path_factory, browser):
    """The app with a teacher password and no workers: a finished and a queued run by 'alice'."""
    from cgcnn.runs.store import RunStore
    from devtools.app_server import AppServer
    from devtools.class_runs import spec_dict

    home = tmp_path_factory.mktemp("sign_in_home")
    store = RunStore(home / "runs.sqlite")
    done = store.create_run(spec_dict(3, epochs=2), owner="alice", status="done")
    queued = store.create_run(spec_dict(4, epochs=2), owner="alice", status="queued")
    env = {"CGCNN_WORKERS": "0", "CGCNN_TEACHER_PASSWORD": PASSWORD}
    with AppServer(home, env=env) as app:
        app.store, app.done, app.queued = store, done, queued
        yield app


def wait_for_cookie(context, name: str, timeout_s: float = 60.0) -> str:
    """The value of a cookie once the page's cookie component has written it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for cookie in context.cookies():
            if cookie["name"] == name and cookie["value"]:
                return cookie["value"]
        time.sleep(0.3)
    raise AssertionError(f"the page never set the cookie {name}")


def signed_in_name(page) -> str:
    return page.get_by_role("textbox", name="Your display name").input_value()


def wait_for_name(page, name: str, timeout_s: float = 30.0) -> str:
    """The sidebar's name once it reads ``name`` (or what it reads at the deadline).

    After a reload the first script run can start before the browser's cookies reach the new session; the page
    reruns once they do, so the name may appear a moment after the page first goes idle.
    """
    deadline = time.monotonic() + timeout_s
    shown = signed_in_name(page)
    while shown != name and time.monotonic() < deadline:
        time.sleep(0.3)
        shown = signed_in_name(page)
    return shown


def test_a_shared_viewer_link_does_not_sign_in_and_a_reload_keeps_the_owner(browser, server):
    a_context = browser.new_context(viewport={"width": 1400, "height": 1000})
    b_context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        a = a_context.new_page()
        a.goto(f"{server.url}/Fine_tune?user=alice", wait_until="domcontentloaded")  # claims 'alice'
        wait_until_idle(a)
        a.get_by_role("button", name="Cancel").first.wait_for(timeout=60_000)  # her newest run: queued
        token = wait_for_cookie(a_context, "cgcnn_token")
        assert token.startswith("t1.") and token not in a.url and "user=" not in a.url

        a.goto(f"{server.url}/Crystal_viewer?crystal=mp-22862", wait_until="domcontentloaded")  # a new session
        wait_until_idle(a)
        a.get_by_text("Prediction").first.wait_for(timeout=90_000)
        assert wait_for_name(a, "alice") == "alice"  # from the cookie
        shared = a.url  # what A copies from the address bar
        assert "crystal=mp-22862" in shared and not any(s in shared for s in SECRETS), shared

        b = b_context.new_page()
        b.goto(shared, wait_until="domcontentloaded")
        wait_until_idle(b)
        b.get_by_text("Prediction").first.wait_for(timeout=90_000)
        assert signed_in_name(b) == ""  # B sees A's view, not A's sign-in
        b.goto(f"{server.url}/Fine_tune", wait_until="domcontentloaded")
        wait_until_idle(b)
        b.get_by_text("alice · queued").first.wait_for(timeout=60_000)  # A's run is shown to B...
        time.sleep(1.0)
        assert b.get_by_role("button", name="Delete run").count() == 0
        assert b.get_by_role("button", name="Cancel").count() == 0  # ...without A's controls
        assert signed_in_name(b) == ""

        a.reload(wait_until="domcontentloaded")
        wait_until_idle(a)
        assert wait_for_name(a, "alice") == "alice"
        a.goto(f"{server.url}/Fine_tune", wait_until="domcontentloaded")
        wait_until_idle(a)
        a.get_by_role("button", name="Cancel").first.wait_for(timeout=60_000)
        assert server.store.get(server.queued).status == "queued" and server.store.exists(server.done)
    finally:
        a_context.close()
        b_context.close()


def test_teacher_mode_survives_a_reload_without_a_secret_in_the_address(browser, server):
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    try:
        page = context.new_page()
        page.goto(f"{server.url}/Class", wait_until="domcontentloaded")
        wait_until_idle(page, 60.0)
        page.get_by_label("Teacher password").fill(PASSWORD)
        page.get_by_role("button", name="Unlock").click()
        page.get_by_role("button", name="Clear the queue").wait_for(timeout=60_000)
        cookie = wait_for_cookie(context, "cgcnn_teacher")
        assert PASSWORD not in cookie and cookie not in page.url

        page.reload(wait_until="domcontentloaded")
        wait_until_idle(page, 60.0)
        page.get_by_role("button", name="Clear the queue").wait_for(timeout=60_000)  # still the teacher
        assert page.get_by_label("Teacher password").count() == 0
        assert not any(s in page.url for s in SECRETS), page.url

        other = browser.new_context()  # the cookie is this browser's: another one is not the teacher
        try:
            student = other.new_page()
            student.goto(page.url, wait_until="domcontentloaded")
            wait_until_idle(student, 60.0)
            student.get_by_label("Teacher password").wait_for(timeout=60_000)
            assert student.get_by_role("button", name="Clear the queue").count() == 0
        finally:
            other.close()

        page.get_by_role("button", name="Leave teacher mode").click()
        page.get_by_label("Teacher password").wait_for(timeout=60_000)
        deadline = time.monotonic() + 30
        while any(c["name"] == "cgcnn_teacher" for c in context.cookies()) and time.monotonic() < deadline:
            time.sleep(0.3)
        page.reload(wait_until="domcontentloaded")
        wait_until_idle(page, 60.0)
        page.get_by_label("Teacher password").wait_for(timeout=60_000)  # left: a reload does not bring it back
    finally:
        context.close()
