from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cgcnn.runs.executors import get_runner
from cgcnn.runs.jobs import JobRunner
from cgcnn.runs.store import RunStore
from cgcnn.runs.worker import JobError, import_target, one_line_error, worker_main

TESTS = Path(__file__).parent
ENV = {"PYTHONPATH": str(TESTS)}  # the workers import tests/job_targets.py
FAST = {"poll_s": 0.05, "heartbeat_s": 0.2, "env": ENV}


TARGET = "job_targets:succeed"


def runner_for(store: RunStore, target: str, **kwargs) -> JobRunner:
    options = {**FAST, "max_workers": 2, **kwargs}
    return JobRunner(store, target=f"job_targets:{target}", **options)


def queue(store: RunStore, n: int = 1, **spec) -> list[str]:
    return [store.create_run({"seed": i, **spec}) for i in range(n)]


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_import_target():
    assert import_target("os.path:join") is os.path.join
    assert import_target("os.path.join") is os.path.join
    with pytest.raises(JobError, match="cannot import"):
        import_target("no_such_module_xyz:f")
    with pytest.raises(JobError, match="has no function"):
        import_target("os.path:no_such_function")
    with pytest.raises(JobError):
        import_target("justaname")


def test_one_line_error():
    assert one_line_error(ValueError("bad\nmore")) == "ValueError: bad"
    assert one_line_error(KeyError()) == "KeyError"
    assert len(one_line_error(RuntimeError("x" * 2000))) == 500


def test_runs_all_queued_runs_with_two_workers(store):
    runner = runner_for(store, "succeed", torch_threads=1).start()
    wait_for(lambda: runner.pool_status()["ready"] == 2)  # both warm workers up, as on a running server
    ids = queue(store, 5, sleep=0.6)
    runner.wake()
    assert runner.run_until_empty(timeout=60)
    runner.stop()
    assert not runner.is_alive
    runs = [store.get(i) for i in ids]
    assert [r.status for r in runs] == ["done"] * 5
    for r in runs:
        assert len(store.epochs(r.id)) == 3 and len(store.predictions(r.id)) == 2
        assert r.test_mae == 0.375 and r.torch_threads == 1 and r.pid
        assert (store.run_dir(r.id) / "worker.log").exists()
    # at most two at a time, and really two at a time
    spans = [(r.test_metrics["start"], r.test_metrics["end"]) for r in runs]
    overlap = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    assert overlap == 2


def test_worker_environment(store):
    (run_id,) = queue(store)
    assert runner_for(store, "report_env", nice=5, torch_threads=1).run_until_empty(timeout=30)
    metrics = store.get(run_id).test_metrics
    assert metrics["omp"] == "1"
    assert metrics["nice"] >= 5
    assert metrics["own_session"] is True


def test_raising_target_fails_the_run_with_one_line(store):
    (run_id,) = queue(store)
    assert runner_for(store, "boom").run_until_empty(timeout=30)
    r = store.get(run_id)
    assert r.status == "failed" and r.error == "ValueError: bad hyperparameter"
    assert len(store.epochs(run_id)) == 1  # what was done stays
    assert "Traceback" in (store.run_dir(run_id) / "worker.log").read_text()


def test_unimportable_target_fails_the_run(store):
    (run_id,) = queue(store)
    assert runner_for(store, "no_such_function").run_until_empty(timeout=30)
    r = store.get(run_id)
    assert r.status == "failed" and "JobError" in r.error and "no_such_function" in r.error


def test_crashing_worker_is_recorded_with_its_exit_code(store):
    (run_id,) = queue(store)
    assert runner_for(store, "hard_exit").run_until_empty(timeout=30)
    r = store.get(run_id)
    assert r.status == "failed" and r.error == "worker process exited with code 3; its finished epochs are kept"


def test_target_returning_without_finishing(store):
    (run_id,) = queue(store)
    assert runner_for(store, "no_finish").run_until_empty(timeout=30)
    r = store.get(run_id)
    assert r.status == "failed" and "without finishing" in r.error


def test_cancel_queued_run(store):
    first, second = queue(store, 2)
    runner = runner_for(store, "wait_for_cancel", max_workers=1)
    assert runner.cancel(second) == "cancelled"
    runner.start()
    try:
        wait_for(lambda: store.get(first).status == "running" and len(store.epochs(first)) > 0)
        assert store.get(second).status == "cancelled"
        assert runner.cancel(first) == "running"
        wait_for(lambda: not store.get(first).is_active)
    finally:
        runner.stop(wait=True, timeout=30)
    r = store.get(first)
    assert r.status == "cancelled" and r.error == "cancelled by the user"
    assert len(store.epochs(first)) >= 1


def test_cancel_from_another_process_is_seen(store):
    (run_id,) = queue(store)
    runner = runner_for(store, "return_on_cancel").start()
    try:
        wait_for(lambda: store.get(run_id).status == "running")
        RunStore(store.path).request_cancel(run_id)  # e.g. the CLI, while the app's runner runs it
        wait_for(lambda: not store.get(run_id).is_active)
    finally:
        runner.stop(wait=True, timeout=30)
    assert store.get(run_id).status == "cancelled"


def test_cancel_of_a_stubborn_worker_terminates_it(store):
    (run_id,) = queue(store)
    runner = runner_for(store, "ignore_cancel", cancel_grace_s=0.3).start()
    try:
        wait_for(lambda: store.get(run_id).status == "running" and runner.active_runs())
        pid = store.get(run_id).pid
        runner.cancel(run_id)
        wait_for(lambda: not store.get(run_id).is_active, timeout=20)
        wait_for(lambda: not runner.active_runs(), timeout=20)
    finally:
        runner.stop(wait=True, timeout=30)
    r = store.get(run_id)
    assert r.status == "cancelled"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_killed_worker_fails_its_run_and_keeps_its_epochs(store):
    first, second = queue(store, 2)
    runner = runner_for(store, "epochs_then_hang", max_workers=1, stale_after_s=0.5)
    runner.start()
    try:
        wait_for(lambda: len(store.epochs(first)) == 2)
        os.kill(store.get(first).pid, signal.SIGKILL)
        wait_for(lambda: store.get(first).status == "failed")
        assert "SIGKILL" in store.get(first).error
        assert list(store.epochs(first)["epoch"]) == [1, 2]
        wait_for(lambda: store.get(second).status == "running")  # the slot is reused
    finally:
        runner.stop(kill=True, timeout=30)
    assert store.get(second).status == "cancelled"


def test_runner_does_not_reap_its_own_live_workers(store):
    (run_id,) = queue(store)
    assert runner_for(store, "silent_then_succeed", stale_after_s=0.3).run_until_empty(timeout=30)
    assert store.get(run_id).status == "done"


def test_dead_runner_restart_continues(store, tmp_path):
    """A runner (a whole server) killed mid-run: nothing finished is lost; a new runner carries on."""
    ids = queue(store, 3)
    script = (
        "import sys, time; from cgcnn.runs.jobs import JobRunner; "
        f"r = JobRunner({str(store.path)!r}, max_workers=1, target='job_targets:epochs_then_hang', "
        "poll_s=0.05, heartbeat_s=0.2, env={'PYTHONPATH': sys.argv[1]}); r.start(); time.sleep(120)"
    )
    server = subprocess.Popen([sys.executable, "-c", script, str(TESTS)], env={**os.environ, **ENV})
    try:
        wait_for(lambda: len(store.epochs(ids[0])) == 2)
        worker_pid = store.get(ids[0]).pid
    finally:
        server.kill()
        server.wait(10)
    os.killpg(worker_pid, signal.SIGKILL)  # the orphaned worker would otherwise run on; kill it too
    assert store.get(ids[0]).status == "running"
    assert [store.get(i).status for i in ids[1:]] == ["queued", "queued"]

    runner = runner_for(store, "succeed", stale_after_s=1.0)
    assert runner.run_until_empty(timeout=60)
    assert store.get(ids[0]).status == "failed" and "no heartbeat" in store.get(ids[0]).error
    assert list(store.epochs(ids[0])["epoch"]) == [1, 2]
    assert [store.get(i).status for i in ids[1:]] == ["done", "done"]


def test_two_runners_share_a_queue(store, tmp_path):
    ids = queue(store, 6)
    a = runner_for(store, "succeed", max_workers=1).start()
    b = runner_for(RunStore(store.path), "succeed", max_workers=1).start()
    try:
        assert a.run_until_empty(timeout=60)
    finally:
        a.stop()
        b.stop()
    assert [store.get(i).status for i in ids] == ["done"] * 6


def test_run_until_empty_with_run_ids_and_timeout(store):
    ids = queue(store, 2)
    runner = runner_for(store, "ignore_cancel", max_workers=1)
    assert runner.run_until_empty(timeout=0.5, run_ids=ids) is False
    runner.stop(kill=True, timeout=30)
    assert {store.get(i).status for i in ids} <= {"cancelled", "queued"}


def test_get_runner_is_a_singleton_per_store(store, tmp_path):
    runner = get_runner(store.path, max_workers=1, target="job_targets:succeed", **FAST)
    try:
        assert get_runner(store.path) is runner
        assert runner.is_alive and runner.max_workers == 1
        (run_id,) = queue(store)
        runner.wake()
        wait_for(lambda: store.get(run_id).status == "done")
    finally:
        runner.stop()
    assert get_runner(store.path, **FAST) is not runner  # a stopped runner is replaced
    get_runner(store.path).stop()


def test_worker_main_in_process(store, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    (run_id,) = queue(store)
    store.claim_next()
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert worker_main(run_id, store.path, "job_targets:boom", nice=0, heartbeat_s=0.1) == 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert store.get(run_id).error.startswith("ValueError")


# ------------------------------------------------------------------------------------------- warm workers


def test_thread_policy():
    from cgcnn.runs.jobs import thread_policy

    assert thread_policy(8, others_running=0, others_startable=0) == 8
    assert thread_policy(8, others_running=1, others_startable=0) == 1
    assert thread_policy(8, others_running=0, others_startable=2) == 1
    assert thread_policy(0, 0, 0) == 1


def test_lone_run_gets_all_cores_and_several_get_one(store):
    (alone,) = queue(store)
    assert runner_for(store, "threads_and_succeed", max_workers=2).run_until_empty(timeout=30)
    r = store.get(alone)
    assert r.torch_threads == (os.cpu_count() or 1) and r.executor == "local" and r.host
    assert r.test_metrics["omp"] is None  # auto mode sets torch's threads per run, not the environment
    several = queue(store, 2, sleep=0.5)
    assert runner_for(store, "succeed", max_workers=2).run_until_empty(timeout=30)
    assert [store.get(i).torch_threads for i in several] == [1, 1]


def test_one_warm_worker_serves_runs_one_after_another(store):
    ids = queue(store, 3)
    assert runner_for(store, "succeed", max_workers=1).run_until_empty(timeout=30)
    runs = [store.get(i) for i in ids]
    assert [r.status for r in runs] == ["done"] * 3
    assert len({r.pid for r in runs}) == 1  # the same process, kept between runs
    assert all("worker" in (store.run_dir(i) / "worker.log").read_text() for i in ids)


def test_warm_worker_reuses_loaded_data(store, tmp_path):
    """The real fine-tune target: the second run of a worker finds graphs and models in memory."""
    from cgcnn.training.finetune import FinetuneSpec

    tiny = {"n_train": 60, "n_val": 20, "n_test": 20, "hyperparams": {"epochs": 1, "batch_size": 20}}
    ids = [store.create_run(FinetuneSpec("none", 0, seed=s, **tiny).to_dict()) for s in (0, 1)]
    fresh_cache = {"CGCNN_HOME": str(tmp_path / "home")}  # the first run must featurise its 100 crystals
    runner = JobRunner(store, max_workers=1, poll_s=0.05, heartbeat_s=0.5, env=fresh_cache)
    assert runner.run_until_empty(timeout=240)
    first, second = (store.get(i) for i in ids)
    assert (first.status, second.status) == ("done", "done"), (first.error, second.error)
    assert first.pid == second.pid
    assert first.setup_seconds is not None and second.setup_seconds is not None
    assert second.setup_seconds < first.setup_seconds  # graphs were featurised (or read) once


def test_worker_killed_mid_run_is_replaced_and_its_run_keeps_epochs(store):
    first, second = queue(store, 2)
    runner = runner_for(store, "epochs_then_hang", max_workers=1).start()
    try:
        wait_for(lambda: len(store.epochs(first)) == 2)
        killed = store.get(first).pid
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda: store.get(first).status == "failed")
        wait_for(lambda: store.get(second).status == "running" and len(store.epochs(second)) == 2)
        assert store.get(second).pid != killed  # a new worker took over
    finally:
        runner.stop(kill=True, timeout=30)
    r = store.get(first)
    assert "SIGKILL" in r.error and "epochs are kept" in r.error
    assert list(store.epochs(first)["epoch"]) == [1, 2]


def test_restarted_server_resumes_the_queue(store):
    ids = queue(store, 3, sleep=0.3)
    before = runner_for(store, "succeed", max_workers=1).start()
    wait_for(lambda: store.get(ids[0]).status == "done")
    before.stop(wait=True, timeout=30)  # the server goes down with runs still queued
    left = [i for i in ids if store.get(i).status == "queued"]
    assert left
    assert runner_for(RunStore(store.path), "succeed", max_workers=1).run_until_empty(timeout=30)
    assert [store.get(i).status for i in ids] == ["done"] * 3


def test_run_past_the_time_limit_is_stopped_and_marked(store, monkeypatch):
    monkeypatch.setenv("CGCNN_MAX_RUN_SECONDS", "1")
    (slow,) = queue(store)
    runner = runner_for(store, "ignore_cancel", max_workers=1)
    assert runner.run_until_empty(timeout=30, run_ids=[slow])
    r = store.get(slow)
    assert r.status == "failed" and "CGCNN_MAX_RUN_SECONDS" in r.error
    runner.stop(kill=True, timeout=30)


def test_orphan_workers_of_a_killed_runner_count_against_the_limit(store):
    """Issue 13: after kill -9 of a runner, its workers finish their runs; a new runner does not add more."""
    orphan_run, waiting = queue(store, 2)
    script = (
        "import sys, time; from cgcnn.runs.jobs import JobRunner; "
        f"r = JobRunner({str(store.path)!r}, max_workers=1, target='job_targets:epochs_then_hang', "
        "poll_s=0.05, heartbeat_s=0.2, env={'PYTHONPATH': sys.argv[1]}); r.start(); time.sleep(120)"
    )
    server = subprocess.Popen([sys.executable, "-c", script, str(TESTS)], env={**os.environ, **ENV})
    try:
        wait_for(lambda: len(store.epochs(orphan_run)) == 2)
    finally:
        server.kill()
        server.wait(10)
    orphan_pid = store.get(orphan_run).pid
    runner = runner_for(store, "succeed", max_workers=1, stale_after_s=1.0).start()
    try:
        wait_for(lambda: runner.pool_status()["orphans"] == 1)
        time.sleep(1.0)
        assert store.get(waiting).status == "queued"  # the one slot is the orphan's
        assert store.get(orphan_run).status == "running"  # alive: heartbeating, never reaped
        os.killpg(orphan_pid, signal.SIGKILL)
        wait_for(lambda: store.get(waiting).status == "done")
        wait_for(lambda: store.get(orphan_run).status == "failed")  # reaped once its heartbeat stopped
    finally:
        runner.stop(timeout=30)
