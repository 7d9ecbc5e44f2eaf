"""Shared results, fair queue, per-user limit and queue ETA of the run store (issue 10)."""

from __future__ import annotations

import time

import pytest

from cgcnn.runs.store import RunStateError, RunStore, compute_spec_key
from cgcnn.settings import LimitExceeded

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
    "hyperparams": {"lr": 0.01, "epochs": 3, "batch_size": 64},
}


def spec(**changes) -> dict:
    return {**SPEC, **changes}


def complete(store: RunStore, run_id: str, mae: float = 0.5) -> None:
    """What a worker does: epochs, predictions, a checkpoint path and done."""
    for epoch in range(1, 4):
        store.add_epoch(run_id, epoch, 1.0 / epoch, 0.9, 0.8, 0.7, 2.0)
    store.add_predictions(run_id, [("mp-1", "test", 1.0, 1.1), ("mp-2", "test", 2.0, 1.9)])
    store.finish(run_id, "done", test_mae=mae, checkpoint_path=f"/x/{run_id}/model.pt")


def test_spec_key_ignores_thread_count():
    assert compute_spec_key(spec(torch_threads=4)) == compute_spec_key(spec(torch_threads=1))
    threaded = spec(hyperparams={**SPEC["hyperparams"], "threads": 2})
    assert compute_spec_key(threaded) == compute_spec_key(SPEC)
    assert compute_spec_key(spec(hyperparams={**SPEC["hyperparams"], "epochs": 4})) != compute_spec_key(SPEC)


def test_launch_reuses_a_done_run_at_once(store):
    first = store.launch(SPEC, "ann")
    assert first.source_run_id is None and first.status == "queued"
    assert store.claim_next() == first.id
    complete(store, first.id)
    entry = store.launch(spec(torch_threads=2), "bob")  # another thread count: same computation
    assert entry.owner == "bob" and entry.source_run_id == first.id and entry.is_reused
    assert (entry.status, entry.test_mae, entry.checkpoint_path) == ("done", 0.5, f"/x/{first.id}/model.pt")
    assert store.resolve(entry.id).id == first.id and store.resolve(first.id).id == first.id
    assert store.epochs(entry.id)["train_loss"].tolist() == store.epochs(first.id)["train_loss"].tolist()
    assert len(store.predictions(entry.id)) == 2
    many = store.epochs_many([first.id, entry.id])
    assert sorted(set(many["run_id"])) == sorted({first.id, entry.id}) and len(many) == 6
    assert store.claim_next() is None  # nothing to compute
    again = store.launch(SPEC, "bob", force=True)  # "train again"
    assert again.source_run_id is None and again.status == "queued"


def test_identical_specs_queued_together_are_computed_once(store):
    entries = [store.launch(SPEC, f"student-{k}") for k in range(5)]
    source = entries[0]
    assert all(e.source_run_id == source.id for e in entries[1:])
    assert store.claim_next(torch_threads=1, executor="local", host="h") == source.id
    assert store.claim_next() is None
    assert {store.get(e.id).status for e in entries} == {"running"}
    complete(store, source.id, mae=0.25)
    for e in entries:
        r = store.get(e.id)
        assert (r.status, r.test_mae, r.torch_threads, r.executor, r.host) == ("done", 0.25, 1, "local", "h")
    assert store.reap_stale(0.0) == []  # followers never heartbeat and are never reaped


def test_follower_status_follows_failure_and_is_not_reaped(store):
    a, b = store.launch(SPEC, "ann"), store.launch(SPEC, "bob")
    store.claim_next()
    store.update(a.id, heartbeat=time.time() - 100)
    assert store.reap_stale(60.0) == [a.id]
    r = store.get(b.id)
    assert r.status == "failed" and "heartbeat" in r.error


def test_cancel_follower_only_cancels_the_entry(store):
    a, b = store.launch(SPEC, "ann"), store.launch(SPEC, "bob")
    assert store.request_cancel(b.id) == "cancelled"
    assert store.get(a.id).status == "queued"
    complete(store, store.claim_next())
    assert store.get(b.id).status == "cancelled"  # an ended entry does not follow any more


def test_cancel_of_a_shared_computation_hides_it_for_its_owner(store):
    a, b = store.launch(SPEC, "ann"), store.launch(SPEC, "bob")
    assert store.request_cancel(a.id) == "queued"
    assert store.get(a.id).hidden and [r.id for r in store.list_runs(owner="ann")] == []
    assert store.claim_next() == a.id  # still computed for bob
    complete(store, a.id)
    assert store.get(b.id).status == "done"


def test_forced_cancel_reaches_the_followers(store):
    a, b = store.launch(SPEC, "ann"), store.launch(SPEC, "bob")
    assert store.request_cancel(a.id, force=True) == "cancelled"
    assert store.get(b.id).status == "cancelled"
    assert store.claim_next() is None


def test_last_follower_gone_cancels_a_hidden_computation(store):
    a, b = store.launch(SPEC, "ann"), store.launch(SPEC, "bob")
    store.request_cancel(a.id)  # hidden, kept for bob
    store.hide(b.id)
    assert store.get(a.id).status == "cancelled" and not store.exists(b.id)


def test_hide_and_delete_keep_a_computation_others_point_to(store):
    a = store.launch(SPEC, "ann")
    complete(store, store.claim_next())
    b = store.launch(SPEC, "bob")
    folder = store.run_dir(a.id)
    folder.mkdir(parents=True)
    store.hide(a.id)  # ann deletes her run: bob still needs it
    assert store.exists(a.id) and store.get(a.id).hidden and folder.is_dir()
    assert [r.id for r in store.list_runs()] == [b.id]
    assert {r.id for r in store.list_runs(include_hidden=True)} == {a.id, b.id}
    assert store.delete(a.id) is False  # the teacher's delete too: others point to it
    assert len(store.epochs(b.id)) == 3
    assert store.delete(b.id) is True  # the last pointer goes: so does the hidden computation
    assert not store.exists(a.id) and not folder.exists()


def test_delete_of_an_unshared_running_run_needs_a_cancel(store):
    a = store.launch(SPEC, "ann")
    store.claim_next()
    with pytest.raises(RunStateError, match="cancel"):
        store.hide(a.id)


def test_per_user_limit_refuses_clearly_and_queues_nothing(store, monkeypatch):
    monkeypatch.setenv("CGCNN_MAX_QUEUED_PER_USER", "2")
    store.launch(spec(seed=1), "ann")
    store.launch(spec(seed=2), "ann")
    with pytest.raises(LimitExceeded, match="CGCNN_MAX_QUEUED_PER_USER"):
        store.launch(spec(seed=3), "ann")
    assert store.counts(owner="ann")["queued"] == 2
    store.launch(spec(seed=3), "bob")  # others are not affected
    done = store.claim_next()
    complete(store, done)
    store.launch(spec(seed=2 if store.get(done).seed == 1 else 1), "ann")  # a slot freed


def test_fair_queue_round_robin_by_owner(store):
    greedy = [store.launch(spec(seed=i), "greedy").id for i in range(5)]
    time.sleep(0.01)
    modest = store.launch(spec(seed=100), "modest").id
    late = store.launch(spec(seed=101), "late").id
    first = store.claim_next()
    assert first == greedy[0]
    assert store.claim_next() == modest  # greedy has one in progress
    assert store.claim_next() == late
    complete(store, first)
    # one worker free: greedy has 0 in progress now, modest and late 1 each
    assert store.claim_next() == greedy[1]


def test_fair_queue_one_worker_alternates(store):
    greedy = [store.launch(spec(seed=i), "greedy").id for i in range(3)]
    other = [store.launch(spec(seed=10 + i), "other").id for i in range(2)]
    order = []
    while (run_id := store.claim_next()) is not None:
        order.append(run_id)
        complete(store, run_id)
        time.sleep(0.002)
    assert order == [greedy[0], other[0], greedy[1], other[1], greedy[2]]


def test_queue_eta(store):
    a = store.launch(spec(seed=1), "ann")
    b = store.launch(spec(seed=2), "bob")
    c = store.launch(spec(seed=2), "cy")  # follows b
    speed = store.speed()  # nothing recorded yet: the fallback speed
    assert not speed.measured and store.queue_eta(b.id)[1] == 1
    cost = speed.run_seconds(90, 3)  # 80 + 10 crystals, 3 epochs
    store.claim_next()
    store.add_epoch(a.id, 1, 1.0, 1.0, 1.0, 1.0, 8.0)  # a's own epochs set its time left: 8 s each
    eta_a, ahead_a = store.queue_eta(a.id)
    assert ahead_a == 0 and eta_a == pytest.approx(16.0, abs=0.5)  # 2 epochs left
    eta_b, ahead_b = store.queue_eta(b.id)
    assert ahead_b == 0 and eta_b == pytest.approx(16.0 + cost, abs=0.5)  # waits for a's worker
    assert store.queue_eta(c.id) == store.queue_eta(b.id)
    assert store.queue_eta(b.id, workers=2)[0] == pytest.approx(cost, abs=0.5)
    complete(store, a.id)
    assert store.queue_eta(a.id) == (0.0, 0)


def test_queue_position_of_a_follower_is_its_computations(store):
    a = store.launch(spec(seed=1), "ann")
    b = store.launch(spec(seed=2), "bob")
    c = store.launch(spec(seed=1), "cy")
    assert [store.queue_position(r.id) for r in (a, b, c)] == [1, 2, 1]
