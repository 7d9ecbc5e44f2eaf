"""The app's shared state on a classroom server: one run store, one job runner, display names.

Job queue: the app never trains in its own process. A launch creates one ``queued`` run per combination in
the :class:`~cgcnn.runs.store.RunStore`; :func:`start_runner` returns the process-wide
:class:`~cgcnn.runs.jobs.JobRunner` (``get_runner``) that drains the queue in niced worker processes with one
torch thread each. ``CGCNN_WORKERS`` sets how many run at once (default: one per core; ``0``: the app only
queues, and something else drains, e.g. ``python -m cgcnn jobs``). A teacher's worker count
(:mod:`~cgcnn.app.class_settings`, set on the Class page) overrides it while the server runs.
"""

from __future__ import annotations

import os
from pathlib import Path

from cgcnn.app.class_settings import load_settings
from cgcnn.errors import CGCNNError
from cgcnn.paths import project_path
from cgcnn.runs.store import RunStore

#: Environment variable: worker processes of the app's job runner (default one per core; 0 = queue only).
WORKERS_ENV = "CGCNN_WORKERS"


# --------------------------------------------------------------------------------------------------- basics


def run_store() -> RunStore:
    """The app's run store (``$CGCNN_HOME/runs.sqlite``)."""
    return RunStore()


def worker_count(home: Path | None = None) -> int:
    """Worker processes for the app's runner (0 = queue only).

    The teacher's choice for the class at ``home`` if set, else ``$CGCNN_WORKERS``, else one per core.
    """
    if home is not None:
        chosen = load_settings(home).workers
        if chosen is not None:
            return chosen
    value = os.environ.get(WORKERS_ENV, "").strip()
    if value:
        try:
            return max(0, int(value))
        except ValueError:
            raise CGCNNError(f"{WORKERS_ENV} must be a whole number, got {value!r}") from None
    return os.cpu_count() or 1


def start_runner(store: RunStore):
    """The process-wide job runner of ``store``, started; None when ``CGCNN_WORKERS=0`` (queue only)."""
    from cgcnn.runs.executors import get_runner

    workers = worker_count(store.home)
    if workers == 0:
        return None
    runner = get_runner(store.path, max_workers=workers)
    runner.max_workers = workers
    return runner


def static_dir() -> Path:
    """The app's ``static/`` folder (served at ``/app/static/``)."""
    return project_path("static")


def local_3dmol_available() -> bool:
    """Whether the offline copy of 3Dmol.js is installed (``make`` puts it in ``static/``)."""
    return (static_dir() / "3Dmol-min.js").is_file()
