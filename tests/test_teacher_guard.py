"""Issue 23, item 4: the teacher password and the class code cannot be brute-forced; teacher mode ends.

Wrong guesses are delayed, logged and locked out per session (and client address); a too-short secret stops
the server at start-up; teacher mode lasts CGCNN_TEACHER_HOURS and survives a reload through a signed cookie
bound to the password.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cgcnn.app import guard, identity, teacher
from cgcnn.runs.store import RunStore
from devtools.sign_in import token_of

ROOT = Path(__file__).resolve().parent.parent

PASSWORD = "correct horse battery staple"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    """The server's guards on a clock the test moves (no waiting for a lockout to end), with fresh counts."""
    fake = FakeClock()
    for g in (guard.TEACHER_GUARD, guard.CLASS_CODE_GUARD):
        monkeypatch.setattr(g, "clock", fake)
        monkeypatch.setattr(g, "_records", {})
    return fake


def test_guard_delays_grow_then_lock_out_and_lockouts_double(clock, monkeypatch, caplog):
    monkeypatch.setenv("CGCNN_LOGIN_FAILURES", "3")
    monkeypatch.setenv("CGCNN_LOCKOUT_SECONDS", "30")
    g = guard.LoginGuard("teacher password", clock=clock)
    keys = ["session:x", "address:10.0.0.7"]
    with caplog.at_level(logging.WARNING, logger="cgcnn.app.guard"):
        delays = [g.failed(keys) for _ in range(3)]
    assert delays == [0.5, 1.0, 2.0]
    assert g.locked_for(keys) == pytest.approx(30)
    assert g.locked_for(["address:10.0.0.7", "session:new"]) == pytest.approx(30)  # a new session, same machine
    assert (
        len([r for r in caplog.records if "wrong teacher password from session:x, address:10.0.0.7" in r.getMessage()])
        == 3
    )
    clock.now += 31
    assert g.locked_for(keys) == 0
    for _ in range(3):
        g.failed(keys)
    assert g.locked_for(keys) == pytest.approx(60)  # the second lockout doubles
    clock.now += 61
    g.succeeded(keys)
    g.failed(keys)
    assert g.locked_for(keys) == 0  # a right guess cleared the count


def class_page(user: str = "teacher") -> AppTest:
    at = AppTest.from_file(str(ROOT / "app_pages" / "7_Class.py"), default_timeout=120)
    at.query_params["user"] = user
    at.query_params["token"] = token_of(user)
    return at.run()


def type_password(at: AppTest, password: str) -> AppTest:
    at.text_input(key="teacher_password").set_value(password)
    return next(b for b in at.button if b.label == "Unlock").click().run()


def unlocked(at: AppTest) -> bool:
    return any(b.label == "Clear the queue" for b in at.button)


def test_class_page_locks_out_after_wrong_passwords_logs_them_and_opens_after(
    tmp_path, monkeypatch, clock, caplog
):  # fmt: skip
    """The done-when: a short lockout setting; locked out for that time, logged, the right password after."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("CGCNN_HOME", str(tmp_path))
    monkeypatch.setenv("CGCNN_WORKERS", "0")
    monkeypatch.setenv(teacher.PASSWORD_ENV, PASSWORD)
    monkeypatch.setenv("CGCNN_LOGIN_FAILURES", "3")
    monkeypatch.setenv("CGCNN_LOCKOUT_SECONDS", "5")
    import app_ui

    app_ui.store.clear()
    at = class_page()
    with caplog.at_level(logging.WARNING, logger="cgcnn.app.guard"):
        for k in range(2):
            at = type_password(at, f"guess {k}")
            assert [e.value for e in at.error] == [teacher.REFUSED]
        at = type_password(at, "guess 2")
        assert any("Too many wrong tries: wait 5 s" in e.value for e in at.error)
        at = type_password(at, PASSWORD)  # right, but locked out: not even checked
        assert any("Too many wrong tries" in e.value for e in at.error) and not unlocked(at)
    wrong = [r.getMessage() for r in caplog.records if r.name == "cgcnn.app.guard"]
    assert len(wrong) == 3 and all("wrong teacher password from session:" in m for m in wrong)
    assert "locked out for 5 s" in wrong[-1]
    clock.now += 5.5
    at = type_password(at, PASSWORD)
    assert not at.exception and unlocked(at)
    app_ui.store.clear()


def test_wrong_class_codes_lock_out_too(tmp_path, monkeypatch, clock):
    monkeypatch.setenv(identity.CLASS_CODE_ENV, "physics-lab-7")
    monkeypatch.setenv("CGCNN_LOGIN_FAILURES", "2")
    monkeypatch.setenv("CGCNN_LOCKOUT_SECONDS", "60")
    store = RunStore(tmp_path / "runs.sqlite")
    token = identity.new_token(store.home)
    keys = ["session:s1", "address:10.0.0.9"]
    with pytest.raises(identity.ClassCodeRequired, match="not right"):
        identity.sign_in(store, "gina", token, "physics", keys)
    with pytest.raises(identity.ClassCodeRequired, match="Too many wrong tries: wait 60 s"):
        identity.sign_in(store, "gina", token, "physics-6", keys)
    with pytest.raises(identity.ClassCodeRequired, match="Too many wrong tries"):
        identity.sign_in(store, "gina", token, "physics-lab-7", keys)
    clock.now += 61
    assert identity.sign_in(store, "gina", token, "physics-lab-7", keys).name == "gina"


def test_teacher_mode_ends_after_its_hours_and_a_cookie_is_bound_to_the_password(tmp_path, monkeypatch):
    monkeypatch.setenv("CGCNN_TEACHER_HOURS", "2")
    monkeypatch.setenv(teacher.PASSWORD_ENV, PASSWORD)
    outcome = teacher.unlock(PASSWORD, None, ["session:t"], tmp_path, sleep=lambda s: None)
    assert outcome.token and teacher.active(outcome.since)
    assert not teacher.active(outcome.since, now=outcome.since + 2 * 3600 + 1)
    assert teacher.restored_since(outcome.token, tmp_path) == outcome.since  # a reload keeps it
    assert teacher.restored_since(outcome.token + "0", tmp_path) is None  # forged
    assert teacher.restored_since(identity.new_token(tmp_path), tmp_path) is None  # a student's token
    monkeypatch.setenv(teacher.PASSWORD_ENV, PASSWORD + " new")
    assert teacher.restored_since(outcome.token, tmp_path) is None  # the password changed
    old = identity.new_token(tmp_path, purpose=teacher._purpose(None), now=time.time() - 2 * 3600 - 5)
    assert teacher.restored_since(old, tmp_path) is None  # past CGCNN_TEACHER_HOURS


def test_a_short_password_or_class_code_stops_the_server_with_a_message(tmp_path, monkeypatch):
    monkeypatch.setenv(teacher.PASSWORD_ENV, "1234")
    assert not teacher.check_password("1234")  # the pages keep teacher mode off too
    # fmt: off
    env = {"CGCNN_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "CGCNN_TEACHER_PASSWORD": "1234",
           "CGCNN_CLASS_CODE": "abc"}
    done = subprocess.run([sys.executable, "serve.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    # fmt: on
    assert done.returncode == 2
    assert "the teacher password is 4 characters long; this server needs at least 8" in done.stderr
    assert "the class code is 3 characters long" in done.stderr and "CGCNN_MIN_PASSWORD_LENGTH" in done.stderr
    assert "Traceback" not in done.stderr
