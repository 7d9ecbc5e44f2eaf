"""Baselines stored as runs (issue 19 item 4): the mean and the composition model, on tiny splits."""

from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pytest
from conftest import CIF_DIR

from cgcnn.cli.main import main
from cgcnn.data.composition import composition_vector, element_table, feature_names, valence_counts
from cgcnn.errors import CGCNNError, CheckpointError
from cgcnn.names import RESERVED_WORDS, InvalidName
from cgcnn.nn.baseline import BASELINE_FILE, BaselineModel
from cgcnn.runs.jobs import JobRunner
from cgcnn.runs.store import RunStore, compute_spec_key
from cgcnn.training.baselines import BASELINES, RESERVED_NAMES
from cgcnn.training.calibrate import own_test_dataset
from cgcnn.training.finetune import FinetuneSpec, execute_run, run_finetune
from cgcnn.training.transfer import SCRATCH
from cgcnn.zoo import load_model, locate_checkpoint, own_cards, save_run_as

SMALL = {"target": "band_gap", "n_train": 48, "n_val": 24, "n_test": 24}


@pytest.fixture(scope="module")
def baseline_runs(isolated_home):
    """One finished run of each baseline on the same tiny split, in the session's store."""
    store = RunStore()
    outcomes = {kind: run_finetune(FinetuneSpec(kind, 0, **SMALL), store=store) for kind in BASELINES}
    return store, outcomes


# --- the features ------------------------------------------------------------------------------------------------


def test_magpie_style_statistics_of_a_known_composition():
    names = feature_names()
    assert len(names) == 114 and len(set(names)) == 114
    fe3o2 = dict(zip(names, composition_vector([8, 26, 8, 26, 26]), strict=True))
    assert fe3o2["MagpieStyle minimum Number"] == 8 and fe3o2["MagpieStyle maximum Number"] == 26
    assert fe3o2["MagpieStyle range Number"] == 18
    assert fe3o2["MagpieStyle mean Number"] == pytest.approx(0.4 * 8 + 0.6 * 26)
    assert fe3o2["MagpieStyle avg_dev Number"] == pytest.approx(0.4 * 10.8 + 0.6 * 7.2)
    assert fe3o2["MagpieStyle mode Number"] == 26  # iron is the most abundant
    assert fe3o2["MagpieStyle mean NdValence"] == pytest.approx(0.6 * 6)  # Fe 3d6, O none
    # the atoms' order and the cell's size do not matter: only fractions do
    assert np.array_equal(composition_vector([26, 26, 26, 8, 8] * 2), composition_vector([8, 26, 8, 26, 26]))


def test_valence_counts_follow_magpie_all_electrons_beyond_the_core():
    assert valence_counts("[Ar].3d10.4s2.4p1") == {"s": 2, "p": 1, "d": 10, "f": 0}  # Ga
    assert valence_counts("1s2") == {"s": 2, "p": 0, "d": 0, "f": 0}  # He
    table = element_table()
    ga = dict(zip(["NsUnfilled", "NpUnfilled", "NdUnfilled"], table[31, 13:16], strict=True))
    assert ga == {"NsUnfilled": 0, "NpUnfilled": 5, "NdUnfilled": 0}
    assert np.isnan(table[2, 7])  # helium has no electronegativity: missing, never 0


def test_a_missing_element_property_is_missing_in_the_features():
    row = dict(zip(feature_names(), composition_vector([2, 26]), strict=True))  # He + Fe
    assert np.isnan(row["MagpieStyle mean Electronegativity"])
    assert row["MagpieStyle mean Number"] == 14


# --- the model file ----------------------------------------------------------------------------------------------


def test_a_refit_from_the_stored_inputs_is_bit_identical(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, len(feature_names())))
    y = 2.0 * x[:, 0] + x[:, 5] ** 2 + rng.normal(scale=0.1, size=90)
    ids = [f"c{i}" for i in range(90)]
    model = BaselineModel.fit("composition", "band_gap", (ids[:60], x[:60], y[:60]), (ids[60:], x[60:], y[60:]))
    assert 1 <= model.n_iter < model.settings["max_iter"]  # early stopping on the given validation block
    path = model.save(tmp_path / BASELINE_FILE)
    with np.load(path, allow_pickle=False) as data:  # no object arrays: nothing to unpickle
        assert all(data[k].dtype != object for k in data.files)
    for _ in range(3):
        again = BaselineModel.load(path)
        assert again.n_iter == model.n_iter
        assert np.array_equal(again.predict(x), model.predict(x))


def test_a_baseline_file_that_is_not_one_is_refused(tmp_path):
    bad = tmp_path / BASELINE_FILE
    bad.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="not a readable baseline file"):
        BaselineModel.load(bad)
    np.savez(tmp_path / "other.npz", header=np.array(json.dumps({"format": "something else"})))
    with pytest.raises(CheckpointError, match="not a baseline file"):
        BaselineModel.load(tmp_path / "other.npz")


# --- runs --------------------------------------------------------------------------------------------------------


def test_baselines_are_stored_as_runs_with_test_predictions(baseline_runs):
    store, outcomes = baseline_runs
    for kind, outcome in outcomes.items():
        record = store.get(outcome.run_id)
        assert record.status == "done" and record.pretrained == kind and record.freeze == 0
        assert record.model_kind == kind
        assert record.checkpoint_path.endswith(BASELINE_FILE)
        assert store.epochs(outcome.run_id).empty  # no epochs: a fit
        preds = store.predictions(outcome.run_id, split="test")
        assert len(preds) == SMALL["n_test"]
        mae = np.mean(np.abs(preds["y_pred"].to_numpy(float) - preds["y_true"].to_numpy(float)))
        assert record.test_mae == pytest.approx(mae, abs=1e-12)
    # the same split and test crystals as a network's run
    assert outcomes["mean"].split.content_hash == outcomes["composition"].split.content_hash
    assert np.unique(store.predictions(outcomes["mean"].run_id, split="test")["y_pred"]).size == 1


def test_the_mean_baseline_predicts_the_training_mean(baseline_runs):
    from cgcnn.data.datasets import load_default_dataset

    _, outcomes = baseline_runs
    mean = outcomes["mean"]
    labels = load_default_dataset().labels.loc[list(mean.split.train), "band_gap"].to_numpy(float)
    assert mean.predictor.baseline.mean == pytest.approx(labels.mean(), abs=1e-12)


def test_a_baseline_run_loads_for_predicting_and_reproduces_its_stored_predictions(baseline_runs):
    store, outcomes = baseline_runs
    for outcome in outcomes.values():
        name = f"run:{outcome.run_id}"
        with pytest.raises(CheckpointError, match="no network"):
            load_model(name, store=store)  # explain, probe, fine-tune need a network
        loaded = load_model(name, store=store, baseline_ok=True)
        assert loaded.targets == ["band_gap"] and loaded.card.name == name
        stored = store.predictions(outcome.run_id, split="test").set_index("crystal_id")["y_pred"]
        dataset = own_test_dataset(name)
        graphs = [loaded.graph(dataset.structure(i)) for i in dataset.ids.tolist()]
        again = loaded.predict_graphs(graphs)[:, 0]
        assert np.array_equal(again, stored.loc[dataset.ids.tolist()].to_numpy(float))  # the refit is the model


def test_evaluate_on_the_test_block_reproduces_the_test_mae(baseline_runs, capsys):
    store, outcomes = baseline_runs
    for outcome in outcomes.values():
        assert main(["evaluate", "--model", f"run:{outcome.run_id}", "--test-block", "--json"]) == 0
        metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert metrics["n"] == SMALL["n_test"]
        assert metrics["mae"] == pytest.approx(store.get(outcome.run_id).test_mae, abs=1e-12)


def test_predict_takes_a_baseline_run(baseline_runs, capsys, tmp_path):
    _, outcomes = baseline_runs
    out = tmp_path / "p.csv"
    run = outcomes["composition"].run_id
    assert main(["predict", "--model", f"run:{run}", str(CIF_DIR / "mp-30.cif"), "--out", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 1 and np.isfinite(float(rows[0]["prediction"]))
    assert main(["explain", "--model", f"run:{run}", str(CIF_DIR / "mp-30.cif")]) == 2
    assert "composition baseline" in capsys.readouterr().err
    assert main(["finetune", "--pretrained", f"run:{run}", "--freeze", "0", "--train", "48", "--no-store"]) == 2


def test_a_baseline_goes_through_the_queue_and_a_worker(store, tmp_path):
    spec = FinetuneSpec("composition", 0, **SMALL)
    record = store.launch(spec.to_dict(), owner="ada")
    assert record.status == "queued"
    runner = JobRunner(store, max_workers=1, poll_s=0.05, heartbeat_s=0.5)
    assert runner.run_until_empty(timeout=240)
    done = store.get(record.id)
    assert done.status == "done", done.error
    # the direct path and the worker give the same numbers (a deterministic fit)
    direct = RunStore(tmp_path / "direct.sqlite")
    run_id = direct.create_run(spec.to_dict())
    execute_run(run_id, direct)
    assert direct.get(run_id).test_mae == done.test_mae


# --- reserved names and bad input --------------------------------------------------------------------------------


def test_reserved_names_are_none_mean_composition():
    assert RESERVED_NAMES == RESERVED_WORDS == (SCRATCH, *BASELINES)


def test_no_saved_run_file_or_own_model_can_shadow_a_reserved_name(baseline_runs, tmp_path, monkeypatch):
    store, outcomes = baseline_runs
    run = outcomes["mean"].run_id
    for name in ("mean", "Composition", "NONE", "ｍｅａｎ"):
        with pytest.raises(InvalidName, match="reserved"):
            save_run_as(store, run, name)
    own = tmp_path / "own"
    own.mkdir()
    shutil.copy(CIF_DIR / "mp-30.cif", own / "mean.pt")  # any file: it must never be picked by this name
    (own / "mean.json").write_text("{}")
    monkeypatch.setenv("CGCNN_PRETRAINED", str(own))
    monkeypatch.chdir(own)  # a file called "mean" in the working folder too
    (own / "mean").write_text("x")
    assert "mean" not in [c.name for c in own_cards()]
    for name in RESERVED_WORDS:
        with pytest.raises(CheckpointError, match="reserved"):
            locate_checkpoint(name, store)


def test_a_baseline_has_no_layers_to_freeze(isolated_home):
    with pytest.raises(CGCNNError, match="no layers to freeze"):
        FinetuneSpec("mean", 1, **SMALL).validate()
    with pytest.raises(CGCNNError, match="warm"):
        FinetuneSpec("composition", 0, warm_start=True, **SMALL).validate()


def test_composition_needs_ten_labels_and_refuses_a_class_label(tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("CGCNN_HOME", str(home))
    with pytest.raises(CGCNNError, match="at least 10 labelled"):
        FinetuneSpec("composition", 0, target="band_gap", n_train=8, n_val=4, n_test=4).validate()
    FinetuneSpec("mean", 0, target="band_gap", n_train=8, n_val=4, n_test=4).validate()  # the mean is fine
    folder = tmp_path / "classes"
    folder.mkdir()
    ids = []
    for copy in range(3):  # 45 crystals: enough for a training block of 12
        for cif in sorted(CIF_DIR.glob("*.cif")):
            ids.append(f"{cif.stem}-{copy}")
            shutil.copy(cif, folder / f"{ids[-1]}.cif")
    (folder / "id_prop.csv").write_text("".join(f"{i},{k % 2}\n" for k, i in enumerate(ids)))
    args = ["finetune", "--data", str(folder), "--train", "12", "--val", "3", "--test", "3"]
    assert main([*args, "--pretrained", "composition", "--queue"]) == 2
    err = capsys.readouterr().err
    assert "class label" in err and "--pretrained" in err
    assert RunStore(home / "runs.sqlite").list_runs() == []  # nothing queued
    assert main([*args, "--pretrained", "mean", "--no-store", "--json"]) == 0  # the base rate is a fine yardstick


def test_sweep_adds_baselines_once_per_split_seed_and_refuses_bad_ones(tmp_path, capsys, monkeypatch):
    from cgcnn.experiments.sweep import SweepGrid

    grid = SweepGrid(["formation-energy-per-atom"], [1], seeds=[0, 1, 2], split_seeds=[0, 1], baselines=["mean"])
    specs = grid.specs()
    baselines = [(s.pretrained, s.freeze, s.seed, s.split_seed) for s in specs if s.pretrained in BASELINES]
    assert baselines == [("mean", 0, 0, 0), ("mean", 0, 0, 1)]
    assert len(specs) == 2 + 2 * 3 * 2  # plus scratch and the fine-tune per (split, seed)
    # no training settings in a baseline's spec: a 3-epoch sweep's baseline is a 100-epoch sweep's
    short, long = (FinetuneSpec("composition", 0, hyperparams={"epochs": e, "lr": 0.1}) for e in (3, 100))
    assert short.to_dict() == long.to_dict()
    assert short.to_dict()["hyperparams"] == {} and short.epochs == 0  # the queue's estimate: set-up only
    assert compute_spec_key(short.to_dict()) == compute_spec_key(long.to_dict())
    home = tmp_path / "home"
    monkeypatch.setenv("CGCNN_HOME", str(home))
    common = ["sweep", "--pretrained", "formation-energy-per-atom", "--freeze", "1"]
    assert main([*common, "--baselines", "mean,median", "--train", "48", "--val", "24", "--test", "24"]) == 2
    assert "median" in capsys.readouterr().err
    assert main([*common, "--baselines", "composition", "--train", "8", "--val", "24", "--test", "24"]) == 2
    assert "at least 10" in capsys.readouterr().err
    assert RunStore(home / "runs.sqlite").list_runs() == []


def test_compare_shows_baseline_runs_beside_a_network(isolated_home):
    from test_app import no_problems, page

    store = RunStore()
    tiny = {**SMALL, "hyperparams": {"epochs": 1, "batch_size": 16}}
    ids = [run_finetune(FinetuneSpec(p, 0, **tiny), store=store, owner="dora").run_id for p in ("none", *BASELINES)]
    cmp = page("app_pages/3_Compare_runs.py", user="dora")
    cmp.multiselect(key="cmp_runs").set_value(ids).run()
    no_problems(cmp)
    shown = cmp.dataframe[0].value
    assert set(ids) <= set(shown["id"].tolist())
    assert {"mean", "composition"} <= set(shown["pretrained"].tolist())
    assert any("mean k0" in label and "baseline" in label for label in cmp.multiselect(key="cmp_runs").options)


def test_a_sweep_of_baselines_runs_them_in_workers_and_writes_them_to_runs_csv(tmp_path):
    import pandas as pd

    from cgcnn.experiments.sweep import LocalExecutor, SweepGrid, run_sweep

    store = RunStore(tmp_path / "runs.sqlite")
    grid = SweepGrid([], [], seeds=[0, 1], baseline=False, split_seeds=[0, 1], baselines=list(BASELINES), **SMALL)
    grid.validate()
    result = run_sweep(grid, store, LocalExecutor(store, workers=1, poll_s=0.2), tmp_path / "out")
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert sorted(zip(runs.pretrained, runs.split_seed, runs.seed, strict=True)) == [
        ("composition", 0, 0), ("composition", 1, 0), ("mean", 0, 0), ("mean", 1, 0)
    ]  # fmt: skip
    assert runs.test_mae.notna().all() and set(result.summary.pretrained) == set(BASELINES)
    # a second sweep finds them done: nothing is fitted again
    again = run_sweep(grid, store, LocalExecutor(store, workers=1, poll_s=0.2))
    assert sorted(again.runs.run_id) == sorted(runs.run_id) and len(store.list_runs()) == 4


def test_a_baseline_sent_back_by_a_ray_task_keeps_its_file_name():
    from cgcnn.runs.ray_jobs import MODEL_FILES, model_file_name

    assert BASELINE_FILE in MODEL_FILES
    assert model_file_name(f"/tmp/task/runs/abc/{BASELINE_FILE}") == BASELINE_FILE
    assert model_file_name("/tmp/task/runs/abc/model.pt") == "model.pt"
    assert model_file_name("/tmp/../../etc/passwd") == "model.pt" and model_file_name(None) == "model.pt"
