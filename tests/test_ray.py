"""The Ray executor: a real local Ray instance, a real 2-epoch sweep, cancellation and a lost worker."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pandas as pd
import pytest

from cgcnn.experiments.sweep import RayExecutor, SweepGrid, run_sweep
from cgcnn.runs.jobs import JobRunner, make_runner
from cgcnn.runs.store import RunStore

TESTS = Path(__file__).parent
ray = pytest.importorskip("ray")


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_unreachable_cluster_is_a_clear_error_and_falls_back_only_if_asked(tmp_path):
    from cgcnn.runs.ray_jobs import RayUnavailable

    store = RunStore(tmp_path / "runs.sqlite")
    with pytest.raises(RayUnavailable, match=r"cannot reach the Ray cluster at 127\.0\.0\.1:9"):
        make_runner(store, executor="ray", ray_address="127.0.0.1:9")
    runner = make_runner(store, executor="ray", ray_address="127.0.0.1:9", fallback_local=True)
    assert type(runner) is JobRunner and "127.0.0.1:9" in runner.fallback_reason
    assert not ray.is_initialized()  # nothing was started


@pytest.fixture(scope="module")
def local_ray():
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=80 * 1024**2,
        _temp_dir="/tmp/cgcnn-ray",
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_two_epoch_sweep_through_ray(local_ray, tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    tiny = {"n_train": 24, "n_val": 8, "n_test": 8, "hyperparams": {"epochs": 2, "batch_size": 8}}
    grid = SweepGrid(["bulk-moduli"], [1], [0], **tiny)
    result = run_sweep(grid, store, RayExecutor(store, num_cpus=1, poll_s=0.2), tmp_path / "out")
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert len(runs) == 2 and set(runs.executor) == {"ray"} and runs.host.notna().all()
    for run_id in result.runs.run_id:
        record = store.get(run_id)
        assert record.status == "done" and record.torch_threads == 1
        assert list(store.epochs(run_id)["epoch"]) == [1, 2]  # forwarded by the driver
        assert len(store.predictions(run_id)) == 8
        assert Path(record.checkpoint_path).is_file()  # the checkpoint's bytes came back to the head node
        assert record.setup_seconds is not None


@pytest.mark.slow
def test_ray_cancellation_reaches_the_task_and_a_lost_worker_fails_its_run(local_ray, tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    cancel_me = store.create_run({"seed": 1})
    runner = make_runner(
        store,
        executor="ray",
        target="job_targets:wait_for_cancel",
        poll_s=0.1,
        heartbeat_s=0.5,
        stale_after_s=2.0,
        cancel_grace_s=5.0,
        env={"PYTHONPATH": str(TESTS)},
    ).start()
    try:
        wait_for(lambda: len(store.epochs(cancel_me)) >= 2)
        time.sleep(3.0)  # longer than stale_after_s: the driver's heartbeats keep it alive
        assert store.get(cancel_me).status == "running"
        runner.cancel(cancel_me)
        wait_for(lambda: not store.get(cancel_me).is_active)
        r = store.get(cancel_me)
        assert r.status == "cancelled" and r.error == "cancelled by the user"  # the task saw the flag

        runner.target = "job_targets:epochs_then_hang"
        lost = store.create_run({"seed": 2})
        runner.wake()
        wait_for(lambda: len(store.epochs(lost)) == 2)  # after the task's first message: its pid and host
        os.kill(store.get(lost).pid, signal.SIGKILL)  # the Ray worker process dies
        wait_for(lambda: store.get(lost).status == "failed")
        r = store.get(lost)
        assert "Ray worker" in r.error and "epochs are kept" in r.error
        assert list(store.epochs(lost)["epoch"]) == [1, 2]
        assert r.executor == "ray"
    finally:
        runner.stop(kill=True, timeout=30)
