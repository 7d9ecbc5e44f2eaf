"""Runs: the SQLite run store (the one source of truth) and the job queue that drains it (locally or on Ray)."""

from __future__ import annotations

from cgcnn._facade import lazy_exports

_EXPORTS = {
    "RunStore": "cgcnn.runs.store",
    "RunRecord": "cgcnn.runs.store",
    "RunNotFound": "cgcnn.runs.store",
    "RunStoreError": "cgcnn.runs.store",
    "JobRunner": "cgcnn.runs.jobs",
    "get_runner": "cgcnn.runs.jobs",
    "make_runner": "cgcnn.runs.jobs",
    "RayJobRunner": "cgcnn.runs.ray_jobs",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
