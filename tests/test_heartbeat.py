"""Heartbeats from a background thread, and the maximum run time (issue 13: heartbeats and hard limits)."""

from __future__ import annotations

import threading
import time

import pytest

from cgcnn.errors import CGCNNError
from cgcnn.runs.heartbeat import Heartbeat


def test_beats_while_the_main_thread_is_busy(store):
    run_id = store.create_run({"seed": 1}, status="running")
    store.update(run_id, heartbeat=0.0)
    beat = Heartbeat(store, run_id, period_s=0.05)
    beat.start()
    time.sleep(0.4)  # "loading data": no epoch, no explicit heartbeat
    beat.stop()
    assert store.get(run_id).heartbeat > time.time() - 5
    assert store.reap_stale(2.0) == []


def test_overtime_calls_back_once(store):
    run_id = store.create_run({"seed": 1}, status="running")
    fired = threading.Event()
    calls = []
    beat = Heartbeat(store, run_id, period_s=0.05, max_s=0.2, on_overtime=lambda: (calls.append(1), fired.set()))
    beat.start()
    assert fired.wait(5)
    time.sleep(0.2)
    beat.stop()
    assert calls == [1] and beat.overtime


@pytest.fixture(params=["default", "ignored"])
def sigint(request):
    """SIGINT as in a terminal, or ignored as in a job a non-interactive shell starts in the background (CI)."""
    import signal

    previous = signal.getsignal(signal.SIGINT)
    if request.param == "ignored":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    yield request.param
    signal.signal(signal.SIGINT, previous)


def test_direct_finetune_past_the_time_limit_is_stopped_and_marked(store, monkeypatch, sigint):
    from cgcnn.training.finetune import FinetuneSpec, run_finetune

    monkeypatch.setenv("CGCNN_MAX_RUN_SECONDS", "1")
    monkeypatch.setenv("CGCNN_MAX_EPOCHS", "1000")  # a long run, stopped by the time limit
    spec = FinetuneSpec("none", 0, n_train=24, n_val=8, n_test=8, hyperparams={"epochs": 500, "batch_size": 8})
    with pytest.raises(CGCNNError, match="CGCNN_MAX_RUN_SECONDS"):
        run_finetune(spec, store=store)
    (record,) = store.list_runs()
    assert record.status == "failed" and "CGCNN_MAX_RUN_SECONDS" in record.error
