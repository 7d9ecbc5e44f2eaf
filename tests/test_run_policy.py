"""Issue 18 items 2, 3 and 5: one owner for run policy, canonical spec keys, owners keyed once.

``finetune --queue`` goes the app's way (checks, per-person limit, reuse); the study protocol is one value; the
CLI, the app and the sweep build specs with one key; "Alice" and "alice" of one token are one owner.
"""

from __future__ import annotations

import json

import pytest

from cgcnn.cli.main import main
from cgcnn.runs.store import RunStore

QUEUE = [
    "finetune", "--pretrained", "formation-energy-per-atom", "--freeze", "1",
    "--train", "50", "--val", "20", "--test", "20", "--epochs", "1", "--queue",
]  # fmt: skip


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CGCNN_HOME", str(tmp_path))
    monkeypatch.setenv("CGCNN_WORKERS", "0")
    return tmp_path


def queue(capsys, *extra: str) -> tuple[int, str, str]:
    code = main([*QUEUE, *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_queue_obeys_the_per_person_limit(home, monkeypatch, capsys):
    """The issue's done-when check: the second run of one owner is refused by name, with exit code 2."""
    monkeypatch.setenv("CGCNN_MAX_QUEUED_PER_USER", "1")
    code, out, _ = queue(capsys, "--owner", "ann", "--seed", "0")
    assert code == 0 and out.startswith("queued run ")
    code, out, err = queue(capsys, "--owner", "ann", "--seed", "1")
    assert code == 2 and out == ""
    assert err.startswith("error:") and "CGCNN_MAX_QUEUED_PER_USER" in err
    store = RunStore()
    assert [r.seed for r in store.list_runs(owner="ann")] == [0]
    code, _, _ = queue(capsys, "--owner", "bob", "--seed", "1")  # the limit is per person
    assert code == 0
    assert store.counts()["running"] == 0  # --queue starts no worker


def test_cli_queue_json_and_joining_an_identical_run(home, capsys):
    code, out, _ = queue(capsys, "--owner", "ann", "--json")
    first = json.loads(out)
    assert code == 0 and set(first) == {"run_id", "status", "source_run_id"}
    assert first["status"] == "queued" and first["source_run_id"] is None
    code, out, _ = queue(capsys, "--owner", "bob", "--json")
    second = json.loads(out)
    assert second["source_run_id"] == first["run_id"]  # identical spec queued once, computed once


def test_cli_queue_refuses_what_the_app_refuses(home, capsys):
    """Checks that only the app made before (freeze depth beyond the model, sizes past the data) now hold here."""
    code, _, err = queue(capsys, "--owner", "ann", "--freeze", "9")
    assert code == 2 and "convolutions" in err
    code, _, err = queue(capsys, "--owner", "ann", "--train", "10000000")
    assert code == 2 and err.startswith("error:")
    code, _, err = queue(capsys, "--owner", "ann", "--epochs", "0")
    assert code == 2 and "epochs" in err
    assert RunStore().list_runs() == []


def test_study_protocol_is_the_default_everywhere():
    import argparse

    from cgcnn.app.class_settings import PRESETS
    from cgcnn.cli.train import add_train_parsers
    from cgcnn.experiments.sweep import SweepGrid
    from cgcnn.training.finetune import FinetuneSpec
    from cgcnn.training.protocol import STUDY
    from cgcnn.training.train import TrainConfig

    assert (STUDY.target, STUDY.sizes, STUDY.epochs, STUDY.patience) == ("band_gap", (1000, 1000, 1000), 30, None)
    spec = FinetuneSpec()
    assert (spec.target, spec.n_train, spec.n_val, spec.n_test, spec.epochs) == (STUDY.target, *STUDY.sizes, 30)
    grid = SweepGrid(["band-gap"], [1], [0])
    assert (grid.target, grid.n_train, grid.n_val, grid.n_test) == (STUDY.target, *STUDY.sizes)
    assert TrainConfig().epochs == STUDY.epochs and PRESETS["study"] == STUDY
    parser = argparse.ArgumentParser()
    add_train_parsers(parser.add_subparsers())
    args = parser.parse_args(["finetune"])
    assert (args.target, args.train, args.val, args.test, args.epochs, args.patience) == (
        STUDY.target, *STUDY.sizes, STUDY.epochs, STUDY.patience,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------- canonical keys


def test_key_defaults_are_the_training_defaults():
    """The key drops exactly TrainConfig's defaults (epochs excepted: every spec writes them out)."""
    import dataclasses

    from cgcnn.runs.schema import HYPERPARAM_KEY_DEFAULTS, SPEC_KEY_DEFAULTS
    from cgcnn.training.finetune import FinetuneSpec
    from cgcnn.training.train import TrainConfig

    as_json = lambda v: json.loads(json.dumps(v))  # noqa: E731  (a tuple default and a list compare equal)
    train = {f.name: as_json(f.default) for f in dataclasses.fields(TrainConfig)}
    assert {k: as_json(v) for k, v in HYPERPARAM_KEY_DEFAULTS.items()} == {
        k: v for k, v in train.items() if k not in ("epochs", "seed", "threads")
    }
    spec_defaults = {f.name: f.default for f in dataclasses.fields(FinetuneSpec)}
    assert all(spec_defaults[k] == v for k, v in SPEC_KEY_DEFAULTS.items())


def _study_specs():
    """The study-protocol fine-tune of band-gap at depth 1, seed 0, as the CLI, the app and a sweep build it."""
    import argparse

    from cgcnn.app.launch import make_specs
    from cgcnn.cli.train import _spec_from_args, add_train_parsers
    from cgcnn.experiments.sweep import SweepGrid
    from cgcnn.training.protocol import STUDY

    parser = argparse.ArgumentParser()
    add_train_parsers(parser.add_subparsers())
    cli = _spec_from_args(parser.parse_args(["finetune", "--pretrained", "band-gap", "--freeze", "1"]))
    app = make_specs(["band-gap"], [1], STUDY, [0])[0]
    sweep = SweepGrid(["band-gap"], [1], [0], baseline=False, hyperparams={"epochs": STUDY.epochs}).specs()[0]
    return cli, app, sweep


#: The key of the study's band-gap depth-1 seed-0 fine-tune, whichever surface builds it. It changes only if
#: what is computed changes (a new field at its default must not change it: add it to the key defaults).
STUDY_KEY = "c02adedd62c127ad92f077db56dc76aeca0e3831603889e70639224c955b9f20"


def test_one_key_for_the_cli_app_and_sweep_specs():
    from cgcnn.runs.store import compute_spec_key

    keys = {compute_spec_key(spec.to_dict()) for spec in _study_specs()}
    assert keys == {STUDY_KEY}


@pytest.mark.parametrize("surface", ["app", "sweep"])
def test_a_run_finished_through_the_app_or_a_sweep_answers_finetune_queue(home, capsys, surface):
    from cgcnn.app import launch
    from cgcnn.experiments.sweep import SweepGrid
    from cgcnn.training.protocol import RunProtocol

    store = RunStore()
    protocol = RunProtocol("band_gap", 50, 20, 20, 1)
    if surface == "app":
        spec = launch.make_specs(["formation-energy-per-atom"], [1], protocol, [0])[0]
        run_id = launch.launch(store, [spec], owner="dora").run_ids[0]
    else:
        grid = SweepGrid(["formation-energy-per-atom"], [1], [0], baseline=False, n_train=50, n_val=20, n_test=20,
                         hyperparams={"epochs": 1})  # fmt: skip
        run_id = store.create_run(grid.specs()[0].to_dict(), sweep_id="s1")
    assert store.claim_next() == run_id
    store.finish(run_id, "done", test_mae=0.5)
    code, out, _ = queue(capsys, "--owner", "ann", "--json")
    answer = json.loads(out)
    assert code == 0 and answer["status"] == "done" and answer["source_run_id"] == run_id


# ------------------------------------------------------------------------------------------- owners keyed once


def test_alice_and_alice_are_one_owner_and_another_token_uses_neither(home, monkeypatch):
    from cgcnn.app import identity
    from cgcnn.settings import LimitExceeded

    monkeypatch.setenv("CGCNN_MAX_QUEUED_PER_USER", "2")
    store = RunStore()
    token = identity.new_token()
    upper = identity.sign_in(store, "Alice", token)
    lower = identity.sign_in(store, "alice", token)
    spec = {"pretrained": "band-gap", "freeze": 1, "n_train": 40, "n_val": 10, "n_test": 10}
    first = store.launch({**spec, "seed": 0}, upper.name)
    second = store.launch({**spec, "seed": 1}, lower.name)
    assert (first.owner, second.owner) == ("Alice", "alice")  # the display name is kept as typed
    for who in ("Alice", "alice", "ALICE"):
        assert [r.id for r in store.list_runs(owner=who)] == [second.id, first.id]  # one list
    with pytest.raises(LimitExceeded, match="CGCNN_MAX_QUEUED_PER_USER"):
        store.launch({**spec, "seed": 2}, "ALICE")  # one quota
    assert identity.can_modify(lower, first) and identity.can_modify(upper, second)
    with pytest.raises(identity.NameClaimed):
        identity.sign_in(store, "alice", identity.new_token())
    with pytest.raises(identity.NameClaimed):
        identity.sign_in(store, "ALICE", identity.new_token())
    mallory = identity.sign_in(store, "mallory", identity.new_token())
    assert not identity.can_modify(mallory, first)


def test_owner_keys_are_backfilled_on_upgrade(tmp_path):
    """A store of the previous schema gets owner_key from owner, and its spec keys recomputed canonically."""
    import sqlite3

    from cgcnn.runs.schema import MIGRATIONS, compute_spec_key

    path = tmp_path / "runs.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    # The schema just before the migration that added owner_key (later issues append migrations after it).
    adds_owner_key = next(k for k, steps in enumerate(MIGRATIONS) if any("owner_key" in str(s) for s in steps))
    for number, steps in enumerate(MIGRATIONS[:adds_owner_key]):
        for step in steps:
            step(conn) if callable(step) else conn.execute(step)
        conn.execute(f"PRAGMA user_version = {number + 1}")
    cli_spec = {"pretrained": "band-gap", "freeze": 1, "hyperparams": {"epochs": 30, "batch_size": 64, "lr": 0.003}}
    conn.execute(
        "INSERT INTO runs (id, created_at, status, owner, spec, spec_key) VALUES ('r1', 1, 'done', 'Alice', ?, 'old')",
        (json.dumps(cli_spec),),
    )
    conn.close()
    record = RunStore(path).get("r1")
    assert record.owner == "Alice" and record.owner_key == "alice"
    assert record.spec_key == compute_spec_key({"pretrained": "band-gap", "freeze": 1, "hyperparams": {"epochs": 30}})


# ------------------------------------------------------------------------------------------- issue 23 item 5


CASE_VARIANTS = ["alice", "Alice", "ALICE", "aLice", "alIce", "aliCe", "alicE", "AlIcE"]


def test_one_token_as_eight_case_variants_queues_at_most_the_limit(home, monkeypatch):
    """The hostile student of issue 23: her own token, 8 spellings of her name, 64 runs asked for."""
    from cgcnn.app import identity, launch
    from cgcnn.training.protocol import RunProtocol

    monkeypatch.setenv("CGCNN_MAX_QUEUED_PER_USER", "8")
    store = RunStore()
    token = identity.new_token()
    protocol = RunProtocol("band_gap", 40, 10, 10, 1)
    accepted = 0
    for k, variant in enumerate(CASE_VARIANTS):
        me = identity.sign_in(store, variant, token)  # the same token holds every spelling
        specs = launch.make_specs(["band-gap"], [1], protocol, list(range(8 * k, 8 * k + 8)))
        try:
            accepted += len(launch.launch(store, specs, owner=me.name).run_ids)
        except Exception as exc:  # past the limit the launch queues nothing and says why
            assert "CGCNN_MAX_QUEUED_PER_USER" in str(exc)
    assert accepted == 8
    assert store.counts(owner="alice")["queued"] == 8
    assert len(store.list_runs(owner="ALICE")) == 8


def test_the_fair_queue_ranks_case_variants_as_one_owner(home):
    store = RunStore()
    spec = {"pretrained": "band-gap", "freeze": 1, "n_train": 40, "n_val": 10, "n_test": 10}
    alice = [store.launch({**spec, "seed": k}, variant).id for k, variant in enumerate(CASE_VARIANTS[:4])]
    bob = store.launch({**spec, "seed": 100}, "bob").id
    assert store.claim_next() == alice[0]
    # one Alice run in progress: bob is served before any other spelling of her name
    assert store.claim_next() == bob
    _, ahead = store.queue_eta(alice[3])
    assert ahead == 2  # her own two earlier runs, not three "other owners" first


# ------------------------------------------------------------------------------------------- named facts


def _sources():
    from pathlib import Path

    package = Path(__file__).resolve().parent.parent / "cgcnn"
    return {p: p.read_text() for p in package.rglob("*.py")}


def test_one_speed_model_and_one_duration_formatter():
    """Issue 18's named facts: durations are estimated in runs/estimates.py and written by one function."""
    import re

    defs = {
        name: sorted(p.name for p, text in _sources().items() if re.search(rf"^\s*def {name}\(", text, re.M))
        for name in ("format_duration", "format_seconds", "seconds_per_crystal_epoch", "_epoch_rate", "speed_from")
    }
    assert defs == {
        "format_duration": ["estimates.py"],
        "format_seconds": [],
        "seconds_per_crystal_epoch": [],
        "_epoch_rate": [],
        "speed_from": ["estimates.py"],
    }


def test_ray_jobs_uses_the_public_worker_api():
    import ast
    from pathlib import Path

    from cgcnn.runs import ray_jobs

    source = Path(ray_jobs.__file__).read_text()
    tree = ast.parse(source)
    private = [
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module in ("cgcnn.runs.jobs", "cgcnn.runs.worker")
        for alias in node.names
        if alias.name.startswith("_")
    ]
    assert not private
    assert "reap_stale" not in source  # one reap loop: JobRunner._reap
