"""Teacher mode: one password unlocks the class panel (anyone's runs, the queue, workers, a pinned protocol).

The password comes from Streamlit secrets (``teacher_password`` in ``.streamlit/secrets.toml``; the page reads
it and passes it in, since this package never imports Streamlit) or from ``CGCNN_TEACHER_PASSWORD``. It is
compared in constant time and a wrong one is refused without saying why, so guessing learns nothing. With no
password configured, teacher mode is off: nobody can act on another person's runs.
"""

from __future__ import annotations

import hmac
import os

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


def check_password(typed: str | None, secret: str | None = None) -> bool:
    """Whether ``typed`` is the teacher password (constant-time; always False when none is configured)."""
    expected = configured_password(secret)
    if expected is None or not typed:
        return False
    return hmac.compare_digest(typed.encode("utf-8"), expected.encode("utf-8"))


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
