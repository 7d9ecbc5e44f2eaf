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
