"""The teacher's Class page against a class that keeps changing: picks by run id, toasts that say what happened.

A run the teacher picked may be cancelled, finished or deleted by someone else before the next click. The page
used the status inside the picker's labels, so the label sent back no longer existed and the page raised
("TypeError: bad argument type for built-in operation"), and the table and buttons vanished.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cgcnn.app import run_actions, teacher
from cgcnn.runs.store import RunStore
from devtools.class_runs import spec_dict
from devtools.homes import own_home
from devtools.sign_in import token_of

ROOT = Path(__file__).resolve().parent.parent

PASSWORD = "chalk dust and overhead projectors"


@pytest.fixture(autouse=True, scope="module")
def _own_home(tmp_path_factory):
    """A store of this module's own (a job runner started by other tests would claim the queued runs)."""
    yield from own_home(tmp_path_factory.mktemp("class_page_home"))


@pytest.fixture(autouse=True)
def _cwd_workers_password(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("CGCNN_WORKERS", "0")
    monkeypatch.setenv(teacher.PASSWORD_ENV, PASSWORD)


def teacher_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app_pages/7_Class.py"), default_timeout=120)
    at.query_params["user"] = "teacher"
    at.query_params["token"] = token_of("teacher")
    at.run()
    at.text_input(key="teacher_password").set_value(PASSWORD)
    return next(b for b in at.button if b.label == "Unlock").click().run()


def healthy(at: AppTest) -> None:
    """No exception, no error box, and the run table and its buttons are still there."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert len(at.table) == 1
    assert {"class_cancel", "class_delete", "class_clear"} <= {b.key for b in at.button}


def toasts(at: AppTest) -> list[str]:
    return [t.value.replace("\\", "") for t in at.toast]


def test_stale_pick_cancelled_elsewhere_then_cancel_and_any_button():
    store = RunStore()
    run_id = store.create_run(spec_dict(31, epochs=2), owner="bob", status="queued")
    at = teacher_page()
    healthy(at)
    at.multiselect(key="class_runs").set_value([run_id]).run()
    healthy(at)
    store.request_cancel(run_id, force=True)  # a student cancels it meanwhile
    at.button(key="class_cancel").click().run()
    healthy(at)
    assert toasts(at) == [f"run {run_id} was already cancelled"]
    for key in ("class_delete", "class_clear", "class_cancel"):  # then any button
        button = at.button(key=key)
        if not button.disabled:
            button.click().run()
            healthy(at)
    assert run_id not in at.table[0].value["id"].tolist()  # deleted by the teacher's Delete selected


def test_clear_the_queue_then_pick_a_just_cancelled_run_and_cancel_it():
    store = RunStore()
    run_id = store.create_run(spec_dict(32, epochs=2), owner="carol", status="queued")
    at = teacher_page()
    at.button(key="class_clear").click().run()
    healthy(at)
    assert toasts(at) == ["cancelled 1 queued run(s)"]
    at.multiselect(key="class_runs").set_value([run_id]).run()
    healthy(at)
    at.button(key="class_cancel").click().run()
    healthy(at)
    assert toasts(at) == [f"run {run_id} was already cancelled"]
    store.delete(run_id)  # deleted elsewhere while still picked
    at.button(key="class_cancel").click().run()
    healthy(at)


def test_cancel_toasts_say_what_happened(store):
    queued = store.create_run(spec_dict(33, epochs=2), owner="dan", status="queued")
    done = store.create_run(spec_dict(34, epochs=2), owner="dan", status="done")
    cancel = lambda run_id: store.request_cancel(run_id, force=True)  # noqa: E731
    messages = run_actions.cancel_each(store, [queued, done, "no-such-run"], cancel)
    assert messages == [
        f"cancelled run {queued} (it was queued)",
        f"run {done} had already finished: nothing to cancel",
        "run no-such-run no longer exists (deleted)",
    ]
    expected = "asked run r1 to stop: it ends after its current epoch"
    assert run_actions.cancel_message("r1", "running", "running") == expected


def test_pick_labels_never_change_with_the_status(store):
    run_id = store.create_run(spec_dict(35, epochs=2), owner="e\u202eve", status="queued")
    before = run_actions.pick_labels(store.list_runs())
    store.request_cancel(run_id, force=True)
    after = run_actions.pick_labels(store.list_runs())
    assert before == after and "\u202e" not in before[run_id] and "eve" in before[run_id]
    label = run_actions.label_of(before)
    assert label(run_id) == before[run_id] and label("gone") == "gone" and label(None) == "None"
