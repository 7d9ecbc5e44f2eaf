"""Issue 13: the server's hard limits are enforced by FinetuneSpec, so the CLI, the queue and the app obey them."""

from __future__ import annotations

import pytest

from cgcnn.runs.store import RunStore
from cgcnn.settings import LimitExceeded
from cgcnn.training.finetune import FinetuneSpec


def small_spec(epochs: int = 2, n: tuple[int, int, int] = (40, 20, 20)) -> FinetuneSpec:
    return FinetuneSpec(
        pretrained="band-gap", freeze=2, n_train=n[0], n_val=n[1], n_test=n[2], hyperparams={"epochs": epochs}
    )


def test_spec_refuses_epochs_and_crystals_past_the_limits(monkeypatch):
    monkeypatch.setenv("CGCNN_MAX_EPOCHS", "5")
    monkeypatch.setenv("CGCNN_MAX_CRYSTALS", "70")
    small_spec(5, (40, 15, 15)).validate()
    with pytest.raises(LimitExceeded, match=r"epochs is 6, over this server's limit of 5 \(set by CGCNN_MAX_EPOCHS\)"):
        small_spec(6, (40, 15, 15)).validate()
    with pytest.raises(LimitExceeded, match=r"crystals .* is 80, .*CGCNN_MAX_CRYSTALS"):
        small_spec(5).validate()


def test_cli_queue_and_app_obey_the_limits(tmp_path, monkeypatch, capsys):
    from cgcnn.app.launch import launch
    from cgcnn.cli.main import main
    from cgcnn.errors import CGCNNError

    monkeypatch.setenv("CGCNN_HOME", str(tmp_path))
    monkeypatch.setenv("CGCNN_WORKERS", "0")
    monkeypatch.setenv("CGCNN_MAX_EPOCHS", "5")
    args = ["finetune", "--pretrained", "band-gap", "--freeze", "2", "--train", "40", "--val", "20", "--test", "20"]
    assert main([*args, "--epochs", "6", "--queue"]) == 2
    assert "CGCNN_MAX_EPOCHS" in capsys.readouterr().err
    assert main([*args, "--epochs", "6", "--no-store"]) == 2  # a direct run too
    with pytest.raises(CGCNNError, match="CGCNN_MAX_EPOCHS"):
        launch(RunStore(), [small_spec(6)], owner="alice")
    assert RunStore().list_runs() == []


def test_a_queued_run_past_a_lowered_limit_fails_with_the_limit(tmp_path, monkeypatch):
    from cgcnn.training.finetune import run_finetune

    store = RunStore(tmp_path / "runs.sqlite")
    run_id = store.create_run(small_spec(6).to_dict(), owner="alice", status="queued")
    monkeypatch.setenv("CGCNN_MAX_EPOCHS", "5")  # the teacher lowered it after the run was queued
    with pytest.raises(LimitExceeded):
        run_finetune(FinetuneSpec.from_dict(store.get(run_id).spec), store=store, run_id=run_id)
    record = store.get(run_id)
    assert record.status == "failed" and "CGCNN_MAX_EPOCHS" in record.error
