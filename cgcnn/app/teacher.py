"""Teacher mode: one password unlocks the class panel (anyone's runs, the queue, workers, a pinned protocol).

The password comes from Streamlit secrets (``teacher_password`` in ``.streamlit/secrets.toml``; the page reads
it and passes it in, since this package never imports Streamlit) or from ``CGCNN_TEACHER_PASSWORD``. It is
compared in constant time and a wrong one is refused without saying why, so guessing learns nothing; wrong
guesses are delayed, counted and locked out (:mod:`cgcnn.app.guard`). With no password configured, or one
shorter than ``CGCNN_MIN_PASSWORD_LENGTH`` (``serve.py`` refuses to start with it), teacher mode is off: nobody
can act on another person's runs.

Teacher mode lasts ``CGCNN_TEACHER_HOURS`` from the moment the password was typed. A reload keeps it: the page
stores a server-signed teacher token in a cookie (:func:`unlock` issues it, :func:`restored_since` reads it
back); the token is bound to the password, so changing the password ends every teacher session.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cgcnn.app.class_settings import PRESETS, ClassSettings, load_settings, save_settings
from cgcnn.errors import CGCNNError
from cgcnn.runs.store import RunStore

#: Environment variable holding the teacher's password (Streamlit secrets take precedence).
PASSWORD_ENV = "CGCNN_TEACHER_PASSWORD"
#: Key of the password in Streamlit secrets.
SECRET_KEY = "teacher_password"
#: The one message for any refused password (no hint whether one is configured, or how close it was).
REFUSED = "Wrong password."


class NotTeacher(CGCNNError):
    """A class-panel action without teacher mode."""


def configured_password(secret: str | None = None) -> str | None:
    """The teacher password in force: the secret if set, else ``$CGCNN_TEACHER_PASSWORD``; None if neither."""
    value = secret if secret else os.environ.get(PASSWORD_ENV, "")
    return value or None


def secret_problem(value: str | None, what: str, variable: str) -> str | None:
    """Why a configured secret (teacher password, class code) is too weak to start with, or None."""
    from cgcnn.settings import current_limits

    shortest = current_limits().min_password_length
    if value and len(value) < shortest:
        return (
            f"the {what} is {len(value)} characters long; this server needs at least {shortest} (set by "
            f"CGCNN_MIN_PASSWORD_LENGTH): choose a longer one in {variable}"
        )
    return None


def password_problem(secret: str | None = None) -> str | None:
    """Why the configured teacher password may not be used (too short), or None (also None if none is set)."""
    return secret_problem(configured_password(secret), "teacher password", f"{PASSWORD_ENV} or secrets.toml")


def check_password(typed: str | None, secret: str | None = None) -> bool:
    """Whether ``typed`` is the teacher password (constant-time).

    Always False when none, or a too short one, is configured.
    """
    expected = configured_password(secret)
    if expected is None or not typed or password_problem(secret) is not None:
        return False
    return hmac.compare_digest(typed.encode("utf-8"), expected.encode("utf-8"))


@dataclass(frozen=True)
class Unlock:
    """The outcome of a typed password.

    ``token`` (for the teacher cookie) and ``since`` on success, else a ``message`` (wrong, or locked out).
    """

    token: str | None = None
    since: float | None = None
    message: str = ""


def _purpose(secret: str | None) -> str:
    """The token purpose of teacher mode, bound to the password (a new password ends old teacher cookies)."""
    expected = configured_password(secret) or ""
    return "teacher:" + hashlib.sha256(expected.encode()).hexdigest()[:16]


def unlock(
    typed: str | None,
    secret: str | None,
    keys: Sequence[str],
    home: Path | None = None,
    guard=None,
    sleep: Callable[[float], None] = time.sleep,
) -> Unlock:
    """Try a typed teacher password for the session and client address ``keys``.

    A locked-out key is refused without checking the password; a wrong one is logged and answered after a
    growing delay (:class:`~cgcnn.app.guard.LoginGuard`); a right one clears the count and issues the token of
    a teacher cookie.
    """
    from cgcnn.app.guard import TEACHER_GUARD
    from cgcnn.app.identity import new_token

    guard = guard or TEACHER_GUARD
    locked = guard.locked_for(keys)
    if locked > 0:
        return Unlock(message=guard.refusal(locked))
    if check_password(typed, secret):
        guard.succeeded(keys)
        now = time.time()
        return Unlock(token=new_token(home, purpose=_purpose(secret), now=now), since=float(int(now)))
    sleep(guard.failed(keys))
    locked = guard.locked_for(keys)
    return Unlock(message=guard.refusal(locked) if locked > 0 else REFUSED)


def restored_since(token: str | None, home: Path | None = None, secret: str | None = None) -> float | None:
    """When the teacher unlocked, read from a teacher cookie's token.

    None if it is missing, forged, expired or made for another password.
    """
    from cgcnn.app.identity import token_problem
    from cgcnn.settings import current_limits

    if not token or configured_password(secret) is None:
        return None
    if token_problem(token, home, _purpose(secret), hours=current_limits().teacher_hours) is not None:
        return None
    return float(token.split(".")[1])


def active(since: float, now: float | None = None) -> bool:
    """Whether teacher mode unlocked at ``since`` (epoch seconds) is still on (``CGCNN_TEACHER_HOURS``; 0: no end)."""
    from cgcnn.settings import current_limits

    hours = current_limits().teacher_hours
    return not hours or (time.time() if now is None else now) - since < hours * 3600


def require_teacher(is_teacher: bool) -> None:
    """Raise :class:`NotTeacher` unless the caller is in teacher mode."""
    if not is_teacher:
        raise NotTeacher("only the teacher can do this (unlock teacher mode on the Class page)")


# --------------------------------------------------------------------------------------------------- actions


def cancel_runs(store: RunStore, run_ids: list[str], is_teacher: bool) -> dict[str, str]:
    """Cancel anyone's runs, also computations others wait for; returns each run's status afterwards."""
    require_teacher(is_teacher)
    return {run_id: store.request_cancel(run_id, force=True) for run_id in run_ids}


def delete_runs(store: RunStore, run_ids: list[str], is_teacher: bool) -> dict[str, str]:
    """Delete anyone's runs (a computation other entries reuse stays); returns 'deleted' or why not per run."""
    require_teacher(is_teacher)
    outcome = {}
    for run_id in run_ids:
        try:
            store.delete(run_id)
        except CGCNNError as exc:
            outcome[run_id] = str(exc)
        else:
            outcome[run_id] = "deleted"
    return outcome


def clear_queue(store: RunStore, is_teacher: bool) -> list[str]:
    """Cancel every queued run of the class; returns their ids (running runs go on)."""
    require_teacher(is_teacher)
    queued = [r.id for r in store.list_runs(status="queued")]
    return [run_id for run_id in queued if store.request_cancel(run_id, force=True) == "cancelled"]


def set_workers(store: RunStore, workers: int, is_teacher: bool) -> ClassSettings:
    """Set how many runs train at once (applied by the app's runner at its next look at the queue)."""
    require_teacher(is_teacher)
    current = load_settings(store.home)
    return save_settings(store.home, ClassSettings(pinned_preset=current.pinned_preset, workers=int(workers)))


def pin_preset(store: RunStore, preset: str | None, is_teacher: bool) -> ClassSettings:
    """Pin the class to one protocol preset (None: unpin); the launch form then offers only it."""
    require_teacher(is_teacher)
    if preset is not None and preset not in PRESETS:
        raise CGCNNError(f"unknown protocol preset {preset!r}: choose one of {', '.join(PRESETS)}")
    current = load_settings(store.home)
    return save_settings(store.home, ClassSettings(pinned_preset=preset, workers=current.workers))


def class_frame(store: RunStore) -> pd.DataFrame:
    """Every run of the class as the compact table, with its owner (the teacher's overview)."""
    from cgcnn.app.tables import compact_runs

    return compact_runs(store, store.list_runs(include_hidden=True), with_owner=True)
