from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from cgcnn import __version__
from cgcnn.errors import CGCNNError
from cgcnn.runs.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    NameTaken,
    RunNotFound,
    RunStateError,
    RunStore,
    StoreVersionError,
    compute_spec_key,
    default_home,
    run_dir,
)

SPEC = {
    "pretrained": "formation-energy-per-atom",
    "model_kind": "gated",
    "freeze": 2,
    "target": "band_gap",
    "n_train": 80,
    "n_val": 10,
    "n_test": 10,
    "split_seed": 1,
    "seed": 7,
    "hyperparams": {"lr": 0.01, "epochs": 30, "batch_size": 64},
}


def spec(**changes) -> dict:
    return {**SPEC, **changes}


# ------------------------------------------------------------------------------------------- home and schema


def test_default_home_uses_cgcnn_home(tmp_path, monkeypatch):
    monkeypatch.setenv("CGCNN_HOME", str(tmp_path / "home"))
    assert default_home() == tmp_path / "home"
    assert (tmp_path / "home").is_dir()
    assert run_dir("abc") == tmp_path / "home" / "runs" / "abc"
    assert RunStore().path == tmp_path / "home" / "runs.sqlite"


def test_new_store_has_schema_and_wal(store):
    assert store.schema_version() == SCHEMA_VERSION
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"runs", "epochs", "predictions"} <= tables
    conn.close()
    RunStore(store.path)  # reopening is a no-op


def test_migrates_a_version_1_store(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    for step in MIGRATIONS[0]:
        conn.execute(step)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO runs (id, created_at, status, spec, owner) VALUES ('old1', 1.0, 'done', ?, 'ann')",
        ('{"target": "band_gap", "seed": 1}',),
    )
    conn.execute("INSERT INTO epochs (run_id, epoch, train_loss) VALUES ('old1', 1, 0.5)")
    conn.commit()
    conn.close()

    store = RunStore(path)
    assert store.schema_version() == SCHEMA_VERSION
    record = store.get("old1")
    assert record.cancel_requested is False
    assert record.spec_key == compute_spec_key({"target": "band_gap", "seed": 1})  # backfilled
    assert store.find_done(record.spec_key).id == "old1"
    assert list(store.epochs("old1")["train_loss"]) == [0.5]
    run_id = store.create_run(spec())  # and the new columns work
    store.set_name(run_id, "mine")


def test_refuses_a_newer_store(tmp_path):
    path = tmp_path / "new.sqlite"
    RunStore(path)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreVersionError, match="newer"):
        RunStore(path)


def test_store_pickles_to_its_path(store):
    copy = pickle.loads(pickle.dumps(store))
    assert copy.path == store.path


# ------------------------------------------------------------------------------------------- runs


def test_create_and_get(store):
    run_id = store.create_run(spec(), owner="ann", sweep_id="sw1")
    assert len(run_id) == 8
    r = store.get(run_id)
    assert r.status == "queued" and r.is_active
    assert (r.owner, r.sweep_id, r.pretrained, r.model_kind, r.freeze, r.target) == (
        "ann",
        "sw1",
        "formation-energy-per-atom",
        "gated",
        2,
        "band_gap",
    )
    assert (r.n_train, r.n_val, r.n_test, r.split_seed, r.seed) == (80, 10, 10, 1, 7)
    assert r.hyperparams == SPEC["hyperparams"]
    assert r.spec == SPEC
    assert r.package_version == __version__
    assert isinstance(r.git_commit, str)
    assert r.spec_key == compute_spec_key(SPEC)
    assert r.created_at == pytest.approx(time.time(), abs=60)
    assert r.started_at is None and r.test_mae is None and r.test_metrics is None


def test_spec_with_paths_is_stored_as_text(store, tmp_path):
    run_id = store.create_run(spec(pretrained=tmp_path / "m.pt"))
    assert store.get(run_id).pretrained == str(tmp_path / "m.pt")


def test_get_unknown_run(store):
    with pytest.raises(RunNotFound, match="nope") as info:
        store.get("nope")
    assert isinstance(info.value, CGCNNError)
    with pytest.raises(RunNotFound):
        store.update("nope", error="x")
    with pytest.raises(RunNotFound):
        store.add_epoch("nope", 1, 1, 1, 1, 1, 1)


def test_list_runs_filters_newest_first(store):
    a = store.create_run(spec(seed=1), owner="ann")
    b = store.create_run(spec(seed=2), owner="bob", sweep_id="s")
    c = store.create_run(spec(seed=3), owner="ann", sweep_id="s")
    store.finish(a, "done")
    assert [r.id for r in store.list_runs()] == [c, b, a]
    assert [r.id for r in store.list_runs(owner="ann")] == [c, a]
    assert [r.id for r in store.list_runs(sweep_id="s")] == [c, b]
    assert [r.id for r in store.list_runs(status="queued")] == [c, b]
    assert [r.id for r in store.list_runs(status=["done", "failed"])] == [a]
    assert [r.id for r in store.list_runs(owner="ann", status="queued")] == [c]
    assert [r.id for r in store.list_runs(limit=2)] == [c, b]
    assert store.counts()["queued"] == 2 and store.counts()["done"] == 1
    assert store.counts(owner="bob") == {"queued": 1, "running": 0, "done": 0, "failed": 0, "cancelled": 0}


def test_update_is_whitelisted(store):
    run_id = store.create_run(spec())
    store.update(run_id, split_hash="abc", n_train=5, test_metrics={"r2": 0.9})
    r = store.get(run_id)
    assert (r.split_hash, r.n_train, r.test_metrics) == ("abc", 5, {"r2": 0.9})
    with pytest.raises(ValueError, match="cannot set"):
        store.update(run_id, id="other")
    with pytest.raises(ValueError, match="cannot set"):
        store.update(run_id, spec_key="x")
    with pytest.raises(ValueError, match="status"):
        store.update(run_id, status="exploded")


def test_lifecycle_running_heartbeat_finish(store):
    run_id = store.create_run(spec())
    store.heartbeat(run_id)  # not running yet: no-op
    assert store.get(run_id).heartbeat is None
    store.mark_running(run_id, pid=1234)
    r = store.get(run_id)
    assert r.status == "running" and r.pid == 1234 and r.heartbeat is not None
    started = r.started_at
    store.mark_running(run_id)  # idempotent, keeps the start time
    assert store.get(run_id).started_at == started
    store.heartbeat(run_id)
    assert store.finish(run_id, "done", test_mae=0.25, test_metrics={"rmse": 0.4}, checkpoint_path=Path("/x/model.pt"))
    r = store.get(run_id)
    assert (r.status, r.test_mae, r.test_metrics, r.checkpoint_path) == ("done", 0.25, {"rmse": 0.4}, "/x/model.pt")
    assert r.finished_at >= r.started_at and r.seconds >= 0
    assert not store.finish(run_id, "failed", error="late", only_if_active=True)  # supervisors do not overwrite
    assert store.get(run_id).status == "done"
    with pytest.raises(RunStateError, match="done"):
        store.mark_running(run_id)
    with pytest.raises(ValueError):
        store.finish(run_id, "running")


def test_claim_next_takes_the_oldest_queued_once(store):
    ids = [store.create_run(spec(seed=i)) for i in range(3)]
    assert store.claim_next(pid=1, torch_threads=2) == ids[0]
    r = store.get(ids[0])
    assert (r.status, r.pid, r.torch_threads) == ("running", 1, 2)
    assert store.claim_next() == ids[1]
    assert store.claim_next() == ids[2]
    assert store.claim_next() is None


def test_queue_positions(store):
    ids = [store.create_run(spec(seed=i)) for i in range(4)]
    assert [store.queue_position(i) for i in ids] == [1, 2, 3, 4]
    store.claim_next()
    store.request_cancel(ids[2])
    assert [store.queue_position(i) for i in ids] == [None, 1, None, 2]
    with pytest.raises(RunNotFound):
        store.queue_position("missing")


# ------------------------------------------------------------------------------------------- epochs, predictions


def test_add_epoch_is_idempotent(store):
    run_id = store.create_run(spec())
    store.add_epoch(run_id, 1, 1.0, 0.9, 1.1, 1.0, 2.0, lr=0.01)
    store.add_epoch(run_id, 2, 0.5, 0.4, 0.6, 0.5, 2.0)
    store.add_epoch(run_id, 1, 0.8, 0.7, 0.9, 0.8, 2.5, lr=0.02)  # rewritten, not duplicated
    df = store.epochs(run_id)
    assert list(df.columns) == ["epoch", "train_loss", "train_mae", "val_loss", "val_mae", "seconds", "lr"]
    assert list(df["epoch"]) == [1, 2]
    assert df.loc[0, "train_loss"] == 0.8 and df.loc[0, "lr"] == 0.02
    assert df["lr"].isna().tolist() == [False, True]
    assert str(df["epoch"].dtype) == "int64"


def test_epochs_empty_and_many(store):
    a, b = store.create_run(spec(seed=1)), store.create_run(spec(seed=2))
    assert store.epochs(a).empty and store.epochs(a).columns[0] == "epoch"
    for e in (1, 2):
        store.add_epoch(a, e, 1, 1, 1, 1, 1)
    store.add_epoch(b, 1, 2, 2, 2, 2, 2)
    df = store.epochs_many([a, b, a])
    assert list(df.columns)[:2] == ["run_id", "epoch"]
    assert sorted(zip(df["run_id"], df["epoch"], strict=True)) == sorted([(a, 1), (a, 2), (b, 1)])
    assert store.epochs_many([]).empty


def test_predictions_round_trip(store):
    run_id = store.create_run(spec())
    rows = [(f"mp-{i}", "test" if i % 2 else "val", float(i), i + 0.5) for i in range(500)]
    assert store.add_predictions(run_id, rows) == 500
    store.add_predictions(run_id, rows[:10])  # a retried write does not duplicate
    df = store.predictions(run_id)
    assert len(df) == 500
    assert set(df.columns) == {"crystal_id", "split", "y_true", "y_pred"}
    back = {(c, s, t, p) for c, s, t, p in df.itertuples(index=False)}
    assert back == set(rows)
    assert len(store.predictions(run_id, split="test")) == 250
    store.add_predictions(run_id, [("unlabelled", "test", None, 1.0)])
    assert store.predictions(run_id, split="test")["y_true"].isna().sum() == 1


# ------------------------------------------------------------------------------------------- cancel, reap


def test_cancel_queued_and_running(store):
    queued = store.create_run(spec(seed=1))
    running = store.create_run(spec(seed=2))
    store.mark_running(running)
    assert store.request_cancel(queued) == "cancelled"
    r = store.get(queued)
    assert r.status == "cancelled" and r.finished_at is not None
    assert store.cancel_requested(queued)
    assert not store.cancel_requested(running)
    assert store.request_cancel(running) == "running"
    assert store.get(running).status == "running" and store.cancel_requested(running)
    store.finish(running, "done")
    assert store.request_cancel(running) == "done"  # ended runs stay as they are


def test_reap_stale(store):
    fresh = store.create_run(spec(seed=1))
    stale = store.create_run(spec(seed=2))
    asked = store.create_run(spec(seed=3))
    for run_id in (fresh, stale, asked):
        store.mark_running(run_id)
    store.add_epoch(stale, 1, 1, 1, 1, 1, 1)
    store.request_cancel(asked)
    time.sleep(0.3)
    store.heartbeat(fresh)
    assert sorted(store.reap_stale(timeout_s=0.2)) == sorted([stale, asked])
    r = store.get(stale)
    assert r.status == "failed" and r.error.startswith("worker stopped (no heartbeat since ")
    assert store.get(asked).status == "cancelled"
    assert store.get(fresh).status == "running"
    assert len(store.epochs(stale)) == 1
    assert store.reap_stale(timeout_s=0.2) == []


# ------------------------------------------------------------------------------------------- delete, names, resume


def test_delete_removes_rows_and_folder(store):
    run_id = store.create_run(spec())
    other = store.create_run(spec(seed=99))
    store.add_epoch(run_id, 1, 1, 1, 1, 1, 1)
    store.add_epoch(other, 1, 1, 1, 1, 1, 1)
    store.add_predictions(run_id, [("a", "test", 1.0, 1.0)])
    folder = store.run_dir(run_id)
    folder.mkdir(parents=True)
    (folder / "model.pt").write_bytes(b"x")
    store.delete(run_id)
    assert not store.exists(run_id) and not folder.exists()
    assert store.epochs(run_id).empty and store.predictions(run_id).empty
    assert len(store.epochs(other)) == 1
    with pytest.raises(RunNotFound):
        store.delete(run_id)
    store.mark_running(other)
    with pytest.raises(RunStateError, match="cancel"):
        store.delete(other)


def test_set_name_is_unique(store):
    a, b = store.create_run(spec(seed=1)), store.create_run(spec(seed=2))
    store.set_name(a, "  band-gap-v1 ")
    assert store.get(a).name == "band-gap-v1"
    assert store.find_by_name("band-gap-v1").id == a
    store.set_name(a, "band-gap-v1")  # same run, same name: fine
    with pytest.raises(NameTaken, match=f"already used by run {a}"):
        store.set_name(b, "band-gap-v1")
    with pytest.raises(CGCNNError, match="empty"):
        store.set_name(b, "  ")
    store.set_name(a, None)
    assert store.find_by_name("band-gap-v1") is None
    store.set_name(b, "band-gap-v1")
    assert store.find_by_name("band-gap-v1").id == b
    with pytest.raises(RunNotFound):
        store.set_name("zzz", "x")


def test_spec_key_ignores_who_and_sweep():
    assert compute_spec_key({**SPEC, "owner": "ann", "sweep_id": "s1"}) == compute_spec_key(SPEC)
    assert compute_spec_key(dict(reversed(list(SPEC.items())))) == compute_spec_key(SPEC)
    assert compute_spec_key(spec(seed=8)) != compute_spec_key(SPEC)
    assert compute_spec_key(spec(hyperparams={"lr": 0.02})) != compute_spec_key(spec(hyperparams={"lr": 0.01}))


def test_find_done_by_spec_key(store):
    key = compute_spec_key(SPEC)
    assert store.find_done(key) is None
    first = store.create_run(spec(), sweep_id="s1")
    assert store.find_done(key) is None  # queued is not done
    store.finish(first, "failed", error="x")
    assert store.find_done(key) is None
    second = store.create_run({**SPEC, "owner": "ann"}, owner="ann", sweep_id="s2")
    store.finish(second, "done", test_mae=0.1)
    assert store.find_done(key).id == second
    assert store.find_done(compute_spec_key(spec(seed=123))) is None


# ------------------------------------------------------------------------------------------- several processes


def _writer(path: str, worker: int, n_runs: int, n_epochs: int, go) -> None:
    go.wait()
    store = RunStore(path)
    for i in range(n_runs):
        run_id = store.create_run(spec(seed=worker * 1000 + i), owner=f"w{worker}")
        store.mark_running(run_id)
        for epoch in range(1, n_epochs + 1):
            store.add_epoch(run_id, epoch, 1.0, 1.0, 1.0, 1.0, 0.0)
            store.heartbeat(run_id)
        store.list_runs(limit=5)
        store.add_predictions(run_id, [(f"c{k}", "test", 1.0, 2.0) for k in range(20)])
        store.finish(run_id, "done", test_mae=float(i))


def _claimer(path: str, go, out) -> None:
    go.wait()
    store = RunStore(path)
    claimed = []
    while (run_id := store.claim_next(pid=os.getpid())) is not None:
        claimed.append(run_id)
    out.put(claimed)


def test_concurrent_writer_processes(tmp_path):
    ctx = mp.get_context("spawn")
    path = str(tmp_path / "runs.sqlite")
    go = ctx.Event()
    n_procs, n_runs, n_epochs = 4, 12, 5
    procs = [ctx.Process(target=_writer, args=(path, w, n_runs, n_epochs, go)) for w in range(n_procs)]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * n_procs  # a 'database is locked' error would fail a writer
    store = RunStore(path)
    runs = store.list_runs()
    assert len(runs) == n_procs * n_runs and {r.status for r in runs} == {"done"}
    assert len({r.id for r in runs}) == n_procs * n_runs
    assert len(store.epochs_many(r.id for r in runs)) == n_procs * n_runs * n_epochs
    assert all(len(store.predictions(r.id)) == 20 for r in runs[:5])


def test_concurrent_claims_never_take_a_run_twice(tmp_path):
    ctx = mp.get_context("spawn")
    path = str(tmp_path / "runs.sqlite")
    store = RunStore(path)
    ids = {store.create_run(spec(seed=i)) for i in range(60)}
    go, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_claimer, args=(path, go, out)) for _ in range(3)]
    for p in procs:
        p.start()
    go.set()
    claimed = [out.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(30)
    flat = [run_id for part in claimed for run_id in part]
    assert len(flat) == len(set(flat)) == 60 and set(flat) == ids


def _train_then_hang(path: str, run_id: str, ready) -> None:
    store = RunStore(path)
    store.mark_running(run_id)
    for epoch in (1, 2, 3):
        store.add_epoch(run_id, epoch, 1.0 / epoch, 1.0, 1.0, 1.0, 0.1)
    ready.set()
    time.sleep(120)


def test_killed_process_keeps_epochs_and_is_reaped(tmp_path):
    ctx = mp.get_context("spawn")
    path = str(tmp_path / "runs.sqlite")
    store = RunStore(path)
    run_id = store.create_run(spec())
    ready = ctx.Event()
    proc = ctx.Process(target=_train_then_hang, args=(path, run_id, ready))
    proc.start()
    assert ready.wait(60)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    assert proc.exitcode == -signal.SIGKILL
    assert store.get(run_id).status == "running"  # nobody said otherwise yet
    time.sleep(0.3)
    assert store.reap_stale(timeout_s=0.2) == [run_id]
    r = store.get(run_id)
    assert r.status == "failed" and "no heartbeat" in r.error
    assert list(store.epochs(run_id)["epoch"]) == [1, 2, 3]
