"""Issue 23, item 7: no silent wrong work.

Checkpoints with finite but broken weights are refused on load (``predict`` exits 2 and prints no ``nan``),
labels beyond ±1e6 are refused by name, and a failed ``torch.save`` is a storage failure with its cause.
"""

from __future__ import annotations

import errno

import pytest
import torch
from conftest import CIF_DIR

from cgcnn.cli.main import main
from cgcnn.errors import CheckpointError
from cgcnn.nn.checkpoint import load_checkpoint, save_checkpoint
from cgcnn.zoo import load_model


def broken_copy(tmp_path, name: str, damage) -> str:
    predictor = load_model("formation-energy-per-atom")
    with torch.no_grad():
        damage(predictor.model)
    path = tmp_path / f"{name}.pt"
    save_checkpoint(path, predictor)
    return str(path)


def negative_variance(model) -> None:
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d))
    bn.running_var[0] = -1.0


def huge_weights(model) -> None:
    for p in model.parameters():
        if p.dim() == 2:
            p.fill_(3e38)


@pytest.mark.parametrize(
    ("damage", "message"),
    [(negative_variance, "batch-norm variance .*running_var has negative values"),
     (huge_weights, "predicts no finite number for rock salt .* finite but broken")],
)  # fmt: skip
def test_predict_refuses_a_broken_checkpoint_with_exit_2_and_no_nan(tmp_path, capsys, damage, message):
    path = broken_copy(tmp_path, damage.__name__, damage)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)
    assert main(["predict", "--model", path, str(CIF_DIR / "mp-841.cif")]) == 2
    out, err = capsys.readouterr()
    assert "nan" not in out.lower() and "nan" not in err.lower()
    assert err.startswith("error: ") and "Traceback" not in err


def test_a_sound_checkpoint_still_loads_and_predicts(tmp_path, capsys):
    path = broken_copy(tmp_path, "sound", lambda model: None)
    assert main(["predict", "--model", path, str(CIF_DIR / "mp-841.cif")]) == 0
    assert "nan" not in capsys.readouterr().out


def test_torch_save_failures_are_storage_failures():
    from cgcnn.storage import StorageError, describe_storage_error, storage_errors

    full = RuntimeError(
        "[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file data/0: file write failed"
    )
    pos = RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 1536 vs 1472")
    for exc in (full, pos, OSError(errno.ENOSPC, "No space left on device")):
        assert describe_storage_error(exc) is not None
        with pytest.raises(StorageError, match="saving the model: the disk"), storage_errors("saving the model"):
            raise exc
    assert describe_storage_error(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None


def test_labels_beyond_a_million_are_refused_by_id(tmp_path, monkeypatch):
    from cgcnn.data.folders import read_cgcnn_folder

    folder = tmp_path / "data"
    folder.mkdir()
    cif = (CIF_DIR / "mp-841.cif").read_text()
    for cid in ("ok", "huge", "negative"):
        (folder / f"{cid}.cif").write_text(cif)
    (folder / "id_prop.csv").write_text("ok,1.5\nhuge,1e300\nnegative,-2e6\n")
    dataset = read_cgcnn_folder(folder)
    assert list(dataset.ids) == ["ok"]
    reasons = dict(dataset.rejected)
    assert reasons["huge"] == "label 1e+300 is beyond ±1e+06, the largest this server accepts (set by CGCNN_MAX_LABEL)"
    assert "label -2e+06 is beyond" in reasons["negative"]
    monkeypatch.setenv("CGCNN_MAX_LABEL", "1e7")
    assert sorted(read_cgcnn_folder(folder).ids) == ["negative", "ok"]


def test_saving_a_checkpoint_checks_free_space_first(tmp_path, monkeypatch):
    import shutil

    from cgcnn.storage import StorageError

    predictor = load_model("band-gap")
    monkeypatch.setenv("CGCNN_MIN_FREE_MB", "100")
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=50 * 1024**2))
    with pytest.raises(StorageError, match=r"saving the checkpoint .*: only 50 MB free .*CGCNN_MIN_FREE_MB"):
        save_checkpoint(tmp_path / "model.pt", predictor)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_a_ray_sweep_that_cannot_reach_its_cluster_leaves_no_run(tmp_path):
    from cgcnn.experiments.sweep import RayExecutor
    from cgcnn.runs.ray_jobs import RayUnavailable
    from cgcnn.runs.store import RunStore
    from cgcnn.training.finetune import FinetuneSpec

    store = RunStore(tmp_path / "runs.sqlite")
    spec = FinetuneSpec(pretrained="band-gap", freeze=2, n_train=40, n_val=20, n_test=20, hyperparams={"epochs": 2})
    executor = RayExecutor(store, address="127.0.0.1:1")  # nobody listens there
    for _ in range(2):
        with pytest.raises(RayUnavailable):
            executor.run([spec], "sweep-1", lambda record: None)
    assert store.list_runs(include_hidden=True) == []


def test_runs_queued_for_a_runner_that_fails_to_start_are_cancelled(tmp_path, monkeypatch):
    from cgcnn.experiments.sweep import LocalExecutor
    from cgcnn.runs.store import RunStore
    from cgcnn.training.finetune import FinetuneSpec

    class Broken:
        def start(self):
            raise RuntimeError("no worker could start")

    store = RunStore(tmp_path / "runs.sqlite")
    executor = LocalExecutor(store)
    monkeypatch.setattr(executor, "make_runner", lambda: Broken())
    spec = FinetuneSpec(pretrained="band-gap", freeze=2, n_train=40, n_val=20, n_test=20, hyperparams={"epochs": 2})
    with pytest.raises(RuntimeError):
        executor.run([spec], "sweep-2", lambda record: None)
    assert [r.status for r in store.list_runs(include_hidden=True)] == ["cancelled"]
