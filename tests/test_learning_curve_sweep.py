"""The size axis of a sweep and its results folder: --sizes, runs.csv's new columns, predictions.csv.gz, scorings."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from cgcnn.cli.main import main
from cgcnn.data.datasets import load_default_dataset
from cgcnn.data.leakage import twin_leaks
from cgcnn.data.splits import canonical_blocks, make_split
from cgcnn.experiments import results_folder
from cgcnn.experiments.sweep import SweepGrid, runs_frame
from cgcnn.runs.store import RunStore
from cgcnn.training.transfer import SCRATCH

SIZES = [50, 200]


def _grid(**extra) -> SweepGrid:
    return SweepGrid(["bulk-moduli"], [1], [0], sizes=SIZES, split_seeds=[0, 1], n_val=100, n_test=100, **extra)


def test_sizes_expand_the_grid_and_default_to_train():
    specs = _grid().specs()
    assert len(specs) == 2 * 2 * 2  # splits x sizes x (scratch, fine-tune)
    assert sorted({(s.split_seed, s.n_train) for s in specs}) == [(0, 50), (0, 200), (1, 50), (1, 200)]
    assert {(s.n_val, s.n_test) for s in specs} == {(100, 100)}
    assert {s.n_train for s in SweepGrid(["bulk-moduli"], [1], [0], n_train=300).specs()} == {300}


def test_smaller_training_sets_are_prefixes_with_the_same_validation_and_test_ids():
    dataset = load_default_dataset()
    for split_seed in (0, 1):
        splits = [make_split(dataset, "band_gap", n, 100, 100, split_seed) for n in (50, 200, 1000, 4000)]
        for small, large in itertools.pairwise(splits):
            assert large.train[: len(small.train)] == small.train
            assert (small.val, small.test) == (large.val, large.test)
        assert not set(splits[-1].train) & (set(splits[-1].val) | set(splits[-1].test))
    other_split = make_split(dataset, "band_gap", 50, 100, 100, 1)
    assert make_split(dataset, "band_gap", 50, 100, 100, 0).train != other_split.train


def test_sizes_above_the_training_block_or_beside_train_are_refused(isolated_home, capsys):
    block = len(canonical_blocks(load_default_dataset(), "band_gap", 0).train)
    assert block == 4285
    before = len(RunStore().list_runs())  # the session's store holds other tests' runs
    base = ["sweep", "--pretrained", "formation-energy-per-atom", "--freeze", "1", "--seeds", "0", "--epochs", "1"]
    assert main([*base, "--sizes", f"50,{block + 1}"]) == 2
    err = capsys.readouterr().err
    assert "--sizes" in err and f"{block + 1}" in err and f"2..{block}" in err and "Traceback" not in err
    assert main([*base, "--sizes", "50,100", "--train", "100"]) == 2
    assert "--sizes and --train" in capsys.readouterr().err
    assert main([*base, "--sizes", "50,50"]) == 2
    assert len(RunStore().list_runs()) == before  # nothing queued


def _fake_store(tmp_path, grid: SweepGrid) -> tuple[RunStore, pd.DataFrame]:
    """Finished runs of ``grid`` with per-crystal test predictions (no training: noisy labels)."""
    dataset = load_default_dataset()
    store = RunStore(tmp_path / "store" / "runs.sqlite")
    rng = np.random.default_rng(7)
    records = []
    for spec in grid.specs():
        test = list(canonical_blocks(dataset, "band_gap", spec.split_seed).test[: spec.n_test])
        truth = dataset.labels.loc[test, "band_gap"].to_numpy(float)
        shift = 0.0 if spec.pretrained == SCRATCH else -0.05
        pred = truth + shift + rng.normal(0, 0.5 if spec.n_train == 50 else 0.3, len(test))
        run_id = store.create_run(spec.to_dict())
        store.add_predictions(run_id, [(c, "test", t, p) for c, t, p in zip(test, truth, pred, strict=True)])
        store.finish(run_id, "done", test_mae=float(np.abs(pred - truth).mean()), seconds=1.0)
        records.append(store.get(run_id))
    return store, runs_frame(records)


def test_runs_csv_has_strategy_and_finished_at_without_empty_cells(tmp_path):
    _, runs = _fake_store(tmp_path, _grid())
    assert list(runs.columns[-2:]) == ["strategy", "finished_at"]
    recipe = runs[["pretrained", "freeze", "strategy", "finished_at", "n_train", "split_seed"]]
    assert recipe.notna().all().all() and (recipe.astype(str) != "").all().all()
    assert set(map(tuple, runs[["pretrained", "freeze", "strategy"]].values.tolist())) == {
        (SCRATCH, 0, "none"),
        ("bulk-moduli", 1, "freeze"),
    }
    assert pd.to_datetime(runs["finished_at"]).dt.tz is not None  # ISO 8601 with its zone


def test_a_fresh_clone_recomputes_the_summary_from_predictions_csv_gz(tmp_path, isolated_home):
    store, runs = _fake_store(tmp_path, _grid())
    with_store, bare = tmp_path / "with_store", tmp_path / "bare"
    for folder in (with_store, bare):
        folder.mkdir()
        runs.to_csv(folder / "runs.csv", index=False)
    rows = results_folder.write_predictions(store, runs["run_id"].tolist(), bare / results_folder.PREDICTIONS_FILE)
    assert rows == len(runs) * 100
    table = pd.read_csv(bare / results_folder.PREDICTIONS_FILE)
    assert list(table.columns) == ["run_id", "crystal_id", "y_true", "y_pred"]
    empty = tmp_path / "empty" / "runs.sqlite"
    RunStore(empty)
    for scoring in ("all", "primary"):
        assert main(["sweep-summary", str(with_store), "--store", str(store.path), "--scoring", scoring]) == 0
        assert main(["sweep-summary", str(bare), "--store", str(empty), "--scoring", scoring]) == 0
        for name in ("summary.csv", "crossover.csv"):
            expected, got = pd.read_csv(with_store / name), pd.read_csv(bare / name)
            pd.testing.assert_frame_equal(got, expected)
        summary = pd.read_csv(bare / "summary.csv")
        assert summary["ci_low_split"].notna().sum() == 2  # the fine-tune at both sizes; scratch has none
        assert (bare / "learning_curve.png").stat().st_size > 1000
    # without predictions anywhere, the intervals are blank and the command says so
    bare_again = tmp_path / "no_predictions"
    bare_again.mkdir()
    runs.to_csv(bare_again / "runs.csv", index=False)
    assert main(["sweep-summary", str(bare_again), "--store", str(empty)]) == 0
    assert pd.read_csv(bare_again / "summary.csv")["ci_low_split"].isna().all()


def test_primary_scoring_leaves_out_twins_of_the_first_4000_training_crystals(tmp_path, isolated_home):
    store, runs = _fake_store(tmp_path, _grid())
    read = results_folder.folder_test_predictions(tmp_path, store)
    primary = results_folder.score_results(runs, read, results_folder.SCORINGS["primary"])
    dataset = load_default_dataset()
    for split_seed in (0, 1):
        test = set(canonical_blocks(dataset, "band_gap", split_seed).test[:100])
        leaked = set(twin_leaks(dataset, split_seed, n_train=4000).leaked) & test
        scored = primary.runs[primary.runs.split_seed == split_seed]
        assert (scored.n_scored == 100 - len(leaked)).all()  # every size and recipe of a split: one scored set
    clamped = results_folder.score_results(runs, read, results_folder.SCORINGS["clamped"])
    assert (clamped.runs.test_mae.to_numpy() <= primary.runs.test_mae.to_numpy() + 1e-12).all()
    folder = tmp_path / "sens"
    folder.mkdir()
    runs.to_csv(folder / "runs.csv", index=False)
    args = ["sweep-summary", str(folder), "--store", str(store.path), "--scoring", "primary", "--sensitivity"]
    assert main(args) == 0
    sensitivity = pd.read_csv(folder / "sensitivity_summary.csv")
    assert list(sensitivity.columns[:1]) == ["scoring"] and set(sensitivity.scoring) == {"clamped", "all", "unseen"}
    assert sensitivity.scoring_description.str.startswith("sensitivity analysis").all()
    assert set(pd.read_csv(folder / "sensitivity_crossover.csv").scoring) == {"clamped", "all", "unseen"}


def test_primary_scoring_refuses_another_target(tmp_path, capsys):
    folder = tmp_path / "f"
    folder.mkdir()
    row = {"run_id": "a", "pretrained": SCRATCH, "freeze": 0, "seed": 0, "split_seed": 0, "target": "shear_moduli",
           "n_train": 100, "test_mae": 1.0}  # fmt: skip
    pd.DataFrame([row]).to_csv(folder / "runs.csv", index=False)
    empty = tmp_path / "runs.sqlite"
    RunStore(empty)
    assert main(["sweep-summary", str(folder), "--scoring", "primary", "--store", str(empty)]) == 2
    assert "band-gap" in capsys.readouterr().err


def test_a_damaged_predictions_file_is_one_clear_message(tmp_path, capsys):
    folder = tmp_path / "f"
    folder.mkdir()
    pd.DataFrame([{"run_id": "a", "pretrained": SCRATCH, "freeze": 0, "seed": 0, "split_seed": 0, "n_train": 100,
                   "test_mae": 1.0}]).to_csv(folder / "runs.csv", index=False)  # fmt: skip
    (folder / results_folder.PREDICTIONS_FILE).write_bytes(b"not gzip at all")
    empty = tmp_path / "runs.sqlite"
    RunStore(empty)
    assert main(["sweep-summary", str(folder), "--store", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "predictions" in err and "Traceback" not in err


def test_a_folder_of_one_size_gets_no_curve_files(tmp_path):
    store, runs = _fake_store(tmp_path, SweepGrid(["bulk-moduli"], [1], [0, 1], n_train=200, n_val=100, n_test=100))
    folder = tmp_path / "one_size"
    folder.mkdir()
    runs.to_csv(folder / "runs.csv", index=False)
    assert main(["sweep-summary", str(folder), "--store", str(store.path)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["runs.csv", "summary.csv"]  # as Table 2's folders always had
