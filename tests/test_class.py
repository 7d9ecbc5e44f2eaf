"""A class on one server: teacher mode, the class settings, the compact run list (library and pages)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from cgcnn.app import class_settings, classroom, tables, teacher
from cgcnn.errors import CGCNNError
from cgcnn.runs.store import RunStore
from devtools.class_runs import make_class, spec_dict
from devtools.homes import own_home
from devtools.sign_in import token_of

ROOT = Path(__file__).resolve().parent.parent

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True, scope="module")
def _own_home(tmp_path_factory):
    """A store of this module's own: the job runner other tests started in this process drains the session's
    store, and would claim the queued runs these tests expect to stay queued."""
    yield from own_home(tmp_path_factory.mktemp("class_home"))


@pytest.fixture(autouse=True)
def _cwd_workers_password(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("CGCNN_WORKERS", "0")  # nothing here trains: queued runs stay queued
    monkeypatch.setenv(teacher.PASSWORD_ENV, PASSWORD)


@pytest.fixture
def clean_settings():
    """The class settings file of the test home, removed after the test (other tests expect none)."""
    path = class_settings.settings_path(RunStore().home)
    yield path
    path.unlink(missing_ok=True)


def page(path: str, user: str | None = "alice") -> AppTest:
    at = AppTest.from_file(str(ROOT / path), default_timeout=120)
    if user:
        at.query_params["user"] = user
        at.query_params["token"] = token_of(user)  # the browser's token that claims the name
    return at.run()


def unlock(at: AppTest, password: str) -> AppTest:
    at.text_input(key="teacher_password").set_value(password)
    return next(b for b in at.button if b.label == "Unlock").click().run()


# --------------------------------------------------------------------------------------------------- library


def test_password_from_secret_or_environment(monkeypatch):
    assert teacher.check_password(PASSWORD)
    assert not teacher.check_password(PASSWORD + " ")
    assert not teacher.check_password("")
    assert teacher.check_password("from-secrets", secret="from-secrets")
    assert not teacher.check_password(PASSWORD, secret="from-secrets")  # secrets take precedence
    monkeypatch.delenv(teacher.PASSWORD_ENV)
    assert teacher.configured_password() is None
    assert not teacher.check_password("")  # no password configured: teacher mode is off
    assert not teacher.check_password("anything")


def test_teacher_actions_refused_without_teacher_mode():
    store = RunStore()
    run_id = store.create_run(spec_dict(1, epochs=2), owner="bob", status="queued")
    try:
        for action in (
            lambda: teacher.cancel_runs(store, [run_id], is_teacher=False),
            lambda: teacher.delete_runs(store, [run_id], is_teacher=False),
            lambda: teacher.clear_queue(store, is_teacher=False),
            lambda: teacher.set_workers(store, 3, is_teacher=False),
            lambda: teacher.pin_preset(store, "demo", is_teacher=False),
        ):
            with pytest.raises(teacher.NotTeacher):
                action()
        assert store.get(run_id).status == "queued"
    finally:
        store.delete(run_id)


def test_class_settings_workers_and_pin(clean_settings):
    store = RunStore()
    assert classroom.worker_count(store.home) == 0  # CGCNN_WORKERS=0 while nothing is set
    teacher.set_workers(store, 3, is_teacher=True)
    teacher.pin_preset(store, "demo", is_teacher=True)
    settings = class_settings.load_settings(store.home)
    assert settings.workers == 3 and settings.preset == class_settings.PRESETS["demo"]
    assert classroom.worker_count(store.home) == 3
    with pytest.raises(CGCNNError, match="unknown protocol preset"):
        teacher.pin_preset(store, "nope", is_teacher=True)
    with pytest.raises(CGCNNError, match="between 1 and 64"):
        teacher.set_workers(store, 0, is_teacher=True)
    teacher.pin_preset(store, None, is_teacher=True)
    assert class_settings.load_settings(store.home) == class_settings.ClassSettings(workers=3)
    clean_settings.write_text("{not json")
    assert class_settings.load_settings(store.home) == class_settings.ClassSettings()


def test_clear_queue_cancels_only_queued_runs():
    store = RunStore()
    queued = [store.create_run(spec_dict(k, epochs=2), owner=f"q{k}", status="queued") for k in range(3)]
    done = store.create_run(spec_dict(9, epochs=2), owner="q9", status="done")
    try:
        cleared = teacher.clear_queue(store, is_teacher=True)
        assert set(queued) <= set(cleared)
        assert {store.get(r).status for r in queued} == {"cancelled"}
        assert store.get(done).status == "done"
    finally:
        for run_id in [*queued, done]:
            store.delete(run_id)


def test_eta_and_reuse_texts():
    assert tables.eta_text(170, 5) == "about 3 min, 5 runs ahead"
    assert tables.eta_text(42, 1) == "about 40 s, 1 run ahead"
    assert tables.eta_text(None, 0) == "queued, next in line"
    store = RunStore()
    spec = spec_dict(7, epochs=2)
    source = store.create_run(spec, owner="alice", status="done")
    entry = store.launch(spec, owner="bob")
    try:
        assert entry.source_run_id == source and entry.status == "done"
        frame = tables.compact_runs(store, [entry, store.get(source)], with_owner=True)
        assert frame.columns.tolist() == [
            "id", "owner", "model", "k", "target", "sizes", "epochs", "seed", "status", "progress", "state",
            "test MAE",
        ]  # fmt: skip
        row = frame.set_index("id").loc[entry.id]
        assert f"reused from run {source}, trained by alice" in row["state"]
        assert row["owner"] == "bob" and row["sizes"] == "1000/1000/1000" and row["epochs"] == 2
        assert "reused" not in frame.set_index("id").loc[source, "state"]
    finally:
        store.delete(entry.id)
        store.delete(source)


def test_compact_frame_of_a_queued_view_shows_the_eta():
    store = RunStore()
    run_id = store.create_run(spec_dict(3, epochs=2), owner="eve", status="queued")
    try:
        record = store.get(run_id)
        view = tables.RunView(record, record, store.epochs(run_id), eta=(170.0, 5))
        frame = tables.compact_frame([view])
        assert frame.loc[0, "state"] == "about 3 min, 5 runs ahead"
        assert frame.loc[0, "progress"] == 0.0 and frame.loc[0, "status"] == "queued"
    finally:
        store.delete(run_id)


# --------------------------------------------------------------------------------------------------- pages


def test_wrong_teacher_password_is_refused_without_a_hint():
    at = unlock(page("app_pages/7_Class.py"), "correct horse")
    assert not at.exception
    assert [e.value for e in at.error] == [teacher.REFUSED]
    assert "is_teacher" not in at.session_state or not at.session_state["is_teacher"]
    assert not [b for b in at.button if b.label in ("Clear the queue", "Cancel selected")]


def test_no_password_configured_nobody_unlocks(monkeypatch):
    monkeypatch.delenv(teacher.PASSWORD_ENV)
    at = unlock(page("app_pages/7_Class.py"), "")
    assert [e.value for e in at.error] == [teacher.REFUSED]
    assert not [b for b in at.button if b.label == "Clear the queue"]


def test_teacher_cancels_another_owners_run_and_students_cannot():
    store = RunStore()
    run_id = store.create_run(spec_dict(11, epochs=2), owner="bob", status="queued")
    try:
        student = page("app_pages/2_Fine_tune.py", user="mallory")
        student.toggle(key="ft_everyone").set_value(True).run()
        student.selectbox(key="ft_open").set_value(run_id).run()
        assert not student.exception
        assert not [b for b in student.button if b.key == f"cancel_{run_id}"]  # not theirs: no button

        at = unlock(page("app_pages/7_Class.py", user="teacher"), PASSWORD)
        assert not at.exception and not at.error
        table = at.table[0].value
        assert run_id in table["id"].tolist() and "owner" in table.columns
        at.multiselect(key="class_runs").set_value([run_id]).run()
        at.button(key="class_cancel").click().run()
        assert not at.exception
        assert store.get(run_id).status == "cancelled"
    finally:
        store.delete(run_id)


def test_pinned_preset_is_the_only_protocol_offered(clean_settings):
    store = RunStore()
    at = unlock(page("app_pages/7_Class.py", user="teacher"), PASSWORD)
    at.selectbox(key="class_preset").set_value("demo")
    at.button(key="class_pin").click().run()
    assert class_settings.load_settings(store.home).pinned_preset == "demo"

    ft = page("app_pages/2_Fine_tune.py", user="dave")
    assert not ft.exception
    keys = {w.key for w in ft.number_input}
    assert not keys & {"ft_train", "ft_val", "ft_test", "ft_epochs"}
    assert any("pinned the class" in i.value for i in ft.info)
    assert ft.text_input(key="ft_pinned").value == class_settings.PRESETS["demo"].describe()


def test_limits_are_shown_and_epochs_over_the_limit_refused(monkeypatch):
    monkeypatch.setenv("CGCNN_MAX_EPOCHS", "5")
    store = RunStore()
    before = len(store.list_runs(owner="frank"))
    at = page("app_pages/2_Fine_tune.py", user="frank")
    assert any("5 epochs" in c.value and "per person" in c.value for c in at.caption)
    at.number_input(key="ft_epochs").set_value(6)
    next(b for b in at.button if b.label == "Queue runs").click().run()
    assert not at.exception
    assert any("CGCNN_MAX_EPOCHS" in e.value.replace("\\", "") for e in at.error)  # Markdown-escaped
    assert len(store.list_runs(owner="frank")) == before


def test_fine_tune_page_renders_a_hundred_runs():
    store = RunStore()
    ids = make_class(store, 100, queued=0, running=0, prefix="hundred")
    try:
        at = page("app_pages/2_Fine_tune.py", user="hundred-03")
        at.toggle(key="ft_everyone").set_value(True).run()
        assert not at.exception and not at.error
        table = at.table[0].value
        assert isinstance(table, pd.DataFrame) and set(ids) <= set(table["id"])
        assert table["state"].str.contains("reused from run").sum() >= 10
        assert len(at.get("plotly_chart")) == 2  # only the opened run is drawn: curves and parity
    finally:
        for run_id in ids:
            store.delete(run_id)


def test_past_the_per_user_limit_nothing_is_queued(monkeypatch):
    monkeypatch.setenv("CGCNN_MAX_QUEUED_PER_USER", "1")
    store = RunStore()
    waiting = store.launch(spec_dict(21, epochs=2), owner="grace")
    try:
        at = page("app_pages/2_Fine_tune.py", user="grace")
        assert any("1 queued or running runs per person" in c.value for c in at.caption)
        next(b for b in at.button if b.label == "Queue runs").click().run()
        assert not at.exception
        errors = [e.value.replace("\\", "") for e in at.error]  # Markdown-escaped
        assert any("CGCNN_MAX_QUEUED_PER_USER" in e and "nothing was queued" in e for e in errors)
        assert [r.id for r in store.list_runs(owner="grace")] == [waiting.id]
    finally:
        store.delete(waiting.id)
