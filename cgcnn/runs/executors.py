"""Which job runner drains a store: local warm workers or a Ray cluster, and one runner per store per process.

Above :mod:`cgcnn.runs.jobs` (the local runner and its worker processes) and :mod:`cgcnn.runs.ray_jobs` (the
Ray runner, a subclass of it), so neither of them has to import the other. ``python -m cgcnn jobs`` runs the
queue until it is empty.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from cgcnn.runs.jobs import JobRunner
from cgcnn.runs.store import RunStore
from cgcnn.runs.worker import JobError

_RUNNERS: dict[Path, JobRunner] = {}
_RUNNERS_LOCK = threading.Lock()


def get_runner(store_path: Path | str | None = None, **kwargs: Any) -> JobRunner:
    """The process-wide runner of a store file, started (one per Streamlit server process).

    The first call creates it with ``kwargs`` (see :class:`JobRunner`); later calls return the same runner
    and ignore ``kwargs`` (change ``runner.max_workers`` directly). A runner that was stopped is replaced.
    With ``executor="ray"`` in ``kwargs`` (or ``CGCNN_EXECUTOR=ray``) the runner sends runs to a Ray cluster
    (:class:`cgcnn.runs.ray_jobs.RayJobRunner`).
    """
    store = RunStore(store_path)
    key = store.path.resolve()
    with _RUNNERS_LOCK:
        runner = _RUNNERS.get(key)
        if runner is None or runner._stopping.is_set():
            runner = make_runner(store, **kwargs)
            _RUNNERS[key] = runner
        runner.start()
        return runner


def make_runner(store: RunStore | Path | str | None = None, executor: str | None = None, **kwargs: Any) -> JobRunner:
    """A job runner for ``executor`` (``local`` or ``ray``; default ``$CGCNN_EXECUTOR`` or ``local``).

    Ray options go to the Ray runner only: ``ray_address`` (default ``$CGCNN_RAY_ADDRESS``; none: a local
    instance), ``num_cpus`` per task (``$CGCNN_RAY_NUM_CPUS``, 1) and ``fallback_local``
    (``$CGCNN_RAY_FALLBACK_LOCAL=1``): when Ray cannot be reached, run on local workers instead of raising.
    The returned runner's ``fallback_reason`` says why it is local although Ray was asked for (else None).

    Raises:
        RayUnavailable: Ray was asked for, cannot be reached, and no fallback was asked for.
    """
    executor = (executor or os.environ.get("CGCNN_EXECUTOR", "") or "local").strip().lower()
    ray_options = {k: kwargs.pop(k) for k in ("ray_address", "num_cpus", "fallback_local") if k in kwargs}
    fallback = ray_options.pop("fallback_local", None)
    if fallback is None:
        fallback = os.environ.get("CGCNN_RAY_FALLBACK_LOCAL", "").strip().lower() in ("1", "true", "yes")
    if executor == "local":
        return JobRunner(store, **kwargs)
    if executor == "ray":
        from cgcnn.runs.ray_jobs import RayJobRunner, RayUnavailable

        try:
            return RayJobRunner(store, **ray_options, **kwargs)
        except RayUnavailable as exc:
            if not fallback:
                raise
            runner = JobRunner(store, **kwargs)
            runner.fallback_reason = f"{exc}; running on this machine instead"
            return runner
    raise JobError(f"unknown executor {executor!r}: use 'local' or 'ray'")
