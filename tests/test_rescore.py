"""Re-scoring stored runs: without the test crystals that have a structure twin, and with the gap clamped at 0."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cgcnn.data.datasets import load_default_dataset
from cgcnn.data.leakage import twin_leaks
from cgcnn.data.splits import canonical_blocks
from cgcnn.errors import CGCNNError
from cgcnn.experiments.rescore import Rescoring, rescore_runs, rescore_summary, store_test_predictions
from cgcnn.experiments.sweep import SweepGrid, summarize
from cgcnn.runs.store import RunStore
from cgcnn.training.transfer import SCRATCH


def _predictions(frames: dict[str, pd.DataFrame]):
    return lambda run_id: frames.get(run_id)


def test_rescore_drops_per_split_and_clamps_by_hand():
    frame = pd.DataFrame({"y_true": [0.0, 1.0, 2.0, 0.5], "y_pred": [-0.4, 1.5, 1.0, 0.5]}, index=list("abcd"))
    runs = pd.DataFrame(
        [
            {"run_id": "r0", "pretrained": SCRATCH, "freeze": 0, "seed": 0, "split_seed": 0, "test_mae": 0.475},
            {"run_id": "r1", "pretrained": SCRATCH, "freeze": 0, "seed": 0, "split_seed": 1, "test_mae": 0.475},
            {"run_id": "gone", "pretrained": SCRATCH, "freeze": 0, "seed": 1, "split_seed": 0, "test_mae": 0.3},
        ]
    )
    predictions = _predictions({"r0": frame, "r1": frame})
    same, _ = rescore_runs(runs, predictions, Rescoring("all"))
    assert list(same.run_id) == ["r0", "r1"]  # a run without stored predictions is left out
    assert same.test_mae.tolist() == pytest.approx([0.475, 0.475])  # |−0.4| + 0.5 + 1 + 0, over 4
    dropped, errors = rescore_runs(runs, predictions, Rescoring("x", drop={0: frozenset({"c"})}))
    assert dropped.test_mae.tolist() == pytest.approx([0.9 / 3, 0.475])  # only split 0 loses crystal c
    assert dropped.n_dropped.tolist() == [1, 0] and dropped.n_scored.tolist() == [3, 4]
    assert list(errors("r0").index) == ["a", "b", "d"]
    clamped, errors = rescore_runs(runs, predictions, Rescoring("c", clamp_at=0.0))
    assert clamped.test_mae.tolist() == pytest.approx([1.5 / 4, 1.5 / 4])  # −0.4 → 0 on a true 0
    assert errors("r1")["a"] == 0.0


def test_summary_variants_side_by_side_on_the_same_runs():
    rng = np.random.default_rng(0)
    ids = [f"x{i}" for i in range(40)]
    truth = rng.uniform(0, 3, 40)
    frames, rows = {}, []
    for seed in range(4):
        for name, freeze, noise in ((SCRATCH, 0, 0.5), ("m", 1, 0.3)):
            pred = truth + rng.normal(0, noise, 40)
            pred[:5] -= 2.0  # negative gaps on five crystals
            run_id = f"{name}{seed}"
            frames[run_id] = pd.DataFrame({"y_true": truth, "y_pred": pred}, index=ids)
            rows.append({"run_id": run_id, "pretrained": name, "freeze": freeze, "seed": seed, "split_seed": 0,
                         "test_mae": float(np.abs(pred - truth).mean())})  # fmt: skip
    runs = pd.DataFrame(rows)
    variants = [Rescoring("without_twins", drop={0: frozenset(ids[:5])}), Rescoring("clamped", clamp_at=0.0)]
    per_run, per_cell = rescore_summary(runs, _predictions(frames), variants)
    assert per_run.mae_all.tolist() == pytest.approx(per_run.test_mae.tolist())
    assert (per_run.n_scored_without_twins == 35).all() and (per_run.mae_clamped <= per_run.mae_all).all()
    cell = per_cell.set_index("pretrained").loc["m"]
    plain = summarize(runs).set_index("pretrained").loc["m"]
    assert cell.mean_diff_all == pytest.approx(plain.mean_diff) and cell.p_value_all == pytest.approx(plain.p_value)
    assert np.isfinite(cell.ci_low_without_twins) and cell.ci_low_clamped < cell.ci_high_clamped
    expected = np.mean([np.abs(frames[f"m{s}"].y_pred - frames[f"m{s}"].y_true)[5:].mean() for s in range(4)])
    assert cell.mean_mae_without_twins == pytest.approx(expected)
    with pytest.raises(CGCNNError, match="per-crystal test predictions"):
        rescore_summary(runs, _predictions({}), variants)


def test_twin_leaks_of_the_shipped_split():
    dataset = load_default_dataset()
    leaks = twin_leaks(dataset, 0)
    test = set(canonical_blocks(dataset, "band_gap", 0).test)
    assert set(leaks.leaked) <= test and len(leaks.leaked) == len(leaks.where["pretraining"])
    assert set(leaks.where["finetune_train"]) <= set(leaks.leaked)  # the pool holds everything outside the block
    assert leaks.where["pretraining_by_id"] == ()
    assert leaks.to_dict() == dataset.metadata["twins_of_test_block"]  # what build-default recorded
    # a fine-tune on split 1 from a model pretrained around the split-0 block met most test crystals by id
    other = twin_leaks(dataset, 1, pretraining_split_seed=0)
    split1 = set(canonical_blocks(dataset, "band_gap", 1).test)
    assert set(other.where["pretraining_by_id"]) == {cid for cid in split1 if cid not in test}


def test_cli_rescores_a_folder_from_a_store(tmp_path, capsys):
    from cgcnn.cli.main import main
    from cgcnn.experiments.sweep import runs_frame

    dataset = load_default_dataset()
    test = list(canonical_blocks(dataset, "band_gap", 0).test)
    truth = dataset.labels.loc[test, "band_gap"].to_numpy()
    store = RunStore(tmp_path / "copy" / "runs.sqlite")
    rng = np.random.default_rng(1)
    records = []
    for spec in SweepGrid(["bulk-moduli"], [1], [0, 1, 2]).specs():
        run_id = store.create_run(spec.to_dict())
        pred = truth + rng.normal(-0.1, 0.4, len(test))
        store.add_predictions(run_id, [(c, "test", t, p) for c, t, p in zip(test, truth, pred, strict=True)])
        records.append(store.get(run_id))
    runs = runs_frame(records)
    runs["test_mae"] = [float(store_test_predictions(store)(r).pipe(lambda f: (f.y_pred - f.y_true).abs().mean()))
                        for r in runs.run_id]  # fmt: skip
    folder = tmp_path / "sweep"
    folder.mkdir()
    runs.to_csv(folder / "runs.csv", index=False)
    args = ["sweep-summary", str(folder), "--exclude-twins", "--clamp", "--store", str(store.path)]
    assert main(args) == 0
    per_run = pd.read_csv(folder / "rescored_runs.csv")
    per_cell = pd.read_csv(folder / "rescored_summary.csv")
    n_leaked = dataset.metadata["twins_of_test_block"]["n_leaked"]
    assert (per_run.n_scored_without_twins == len(test) - n_leaked).all()
    assert per_run.mae_all.tolist() == pytest.approx(per_run.test_mae.tolist())
    assert (per_run.mae_clamped <= per_run.mae_all + 1e-12).all()
    assert {"mean_mae_without_twins_clamped", "p_holm_without_twins", "ci_low_clamped"} <= set(per_cell.columns)
    assert not (folder / "summary.csv").exists()  # the rescoring writes only its own files
    # a folder whose runs are not in the store says so, in one line
    empty = tmp_path / "empty"
    empty.mkdir()
    runs.assign(run_id=["nope"] * len(runs)).to_csv(empty / "runs.csv", index=False)
    assert main(["sweep-summary", str(empty), "--exclude-twins", "--store", str(store.path)]) != 0
    assert "per-crystal test predictions" in capsys.readouterr().err
    assert main(["sweep-summary", str(empty), "--exclude-twins", "--store", str(tmp_path / "typo.sqlite")]) != 0
    assert "no such run store" in capsys.readouterr().err and not (tmp_path / "typo.sqlite").exists()
