"""Small job targets for tests/test_jobs.py, imported by the worker processes (tests/ is put on PYTHONPATH)."""

from __future__ import annotations

import os
import time

from cgcnn.runs.store import RunStore


def succeed(run_id: str, store: RunStore) -> None:
    store.mark_running(run_id)
    started = time.time()
    delay = float(store.get(run_id).spec.get("sleep", 0.0))
    for epoch in range(1, 4):
        time.sleep(delay / 3)
        store.add_epoch(run_id, epoch, 1.0 / epoch, 0.5 / epoch, 1.1 / epoch, 0.6 / epoch, 0.01, lr=1e-3)
        store.heartbeat(run_id)
    store.add_predictions(run_id, [("mp-1", "test", 1.0, 1.25), ("mp-2", "test", 2.0, 1.5)])
    store.finish(
        run_id,
        "done",
        test_mae=0.375,
        test_metrics={"start": started, "end": time.time()},
        checkpoint_path=store.run_dir(run_id) / "model.pt",
    )


def boom(run_id: str, store: RunStore) -> None:
    store.mark_running(run_id)
    store.add_epoch(run_id, 1, 1.0, 1.0, 1.0, 1.0, 0.01)
    raise ValueError("bad hyperparameter\nsecond line not shown")


def wait_for_cancel(run_id: str, store: RunStore) -> None:
    store.mark_running(run_id)
    for epoch in range(1, 1200):
        store.add_epoch(run_id, epoch, 1.0, 1.0, 1.0, 1.0, 0.05)
        if store.cancel_requested(run_id):
            store.finish(run_id, "cancelled", error="cancelled by the user")
            return
        time.sleep(0.05)


def return_on_cancel(run_id: str, store: RunStore) -> None:
    store.mark_running(run_id)
    while not store.cancel_requested(run_id):
        time.sleep(0.05)


def ignore_cancel(run_id: str, store: RunStore) -> None:
    store.mark_running(run_id)
    time.sleep(120)


def hard_exit(run_id: str, store: RunStore) -> None:
    store.mark_running(run_id)
    os._exit(3)


def epochs_then_hang(run_id: str, store: RunStore) -> None:
    store.mark_running(run_id)
    store.add_epoch(run_id, 1, 1.0, 1.0, 1.0, 1.0, 0.01)
    store.add_epoch(run_id, 2, 0.5, 0.5, 0.5, 0.5, 0.01)
    time.sleep(120)


def no_finish(run_id: str, store: RunStore) -> None:
    store.mark_running(run_id)


def report_env(run_id: str, store: RunStore) -> None:
    store.finish(
        run_id,
        "done",
        test_metrics={
            "omp": os.environ.get("OMP_NUM_THREADS"),
            "nice": os.nice(0),
            "own_session": os.getsid(0) == os.getpid(),
        },
    )


def silent_then_succeed(run_id: str, store: RunStore) -> None:
    """A long step without heartbeats (the wrapper's heartbeat thread stopped): alive but silent."""
    import threading

    for thread in threading.enumerate():
        if thread.name == "cgcnn-heartbeat":
            thread.done.set()
    time.sleep(1.5)
    store.finish(run_id, "done")


def threads_and_succeed(run_id: str, store: RunStore) -> None:
    """Finish at once, recording the thread count the worker was told to use (OMP is not set by auto mode)."""
    store.finish(run_id, "done", test_metrics={"omp": os.environ.get("OMP_NUM_THREADS")})
