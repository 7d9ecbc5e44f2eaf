"""``evaluate``: metrics, clamping, ensembles, and agreement with ``predict`` on the same labels."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import torch
from scipy import stats

from cgcnn.analysis.evaluation import evaluate_model
from cgcnn.analysis.metrics import (
    calibration_table,
    classification_metrics,
    json_safe,
    regression_metrics,
    uncertainty_metrics,
)
from cgcnn.cli.main import main
from cgcnn.data.datasets import load_default_dataset
from cgcnn.data.folders import export_cgcnn_folder, read_cgcnn_folder
from cgcnn.errors import CGCNNError
from cgcnn.nn.checkpoint import save_checkpoint
from cgcnn.nn.predictor import Ensemble, clamp_nonnegative
from cgcnn.zoo import load_model

N_CRYSTALS = 16


@pytest.fixture(scope="module")
def band_gap_folder(tmp_path_factory):
    """16 labelled band-gap crystals of the default data, some of them metals (gap 0), plus one broken CIF."""
    ds = load_default_dataset()
    ids = ds.with_target("band_gap")[:N_CRYSTALS]
    folder = export_cgcnn_folder(ds, ids, "band_gap", tmp_path_factory.mktemp("bg") / "data")
    (folder / "broken.cif").write_text("this is not a CIF\n")
    with open(folder / "id_prop.csv", "a") as f:
        f.write("broken,1.0\n")
    return folder


def _cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------------------------ metrics


def test_regression_metrics_by_hand():
    y = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    p = y + np.array([-1, -1, 1, -1, 1, -1, 1, -1, 2, -0.5]) * 0.5
    m = regression_metrics(y, p, non_negative=True)
    err = p - y
    assert m["n"] == 10
    assert m["mae"] == pytest.approx(np.abs(err).mean())
    assert m["rmse"] == pytest.approx(np.sqrt((err**2).mean()))
    assert m["r2"] == pytest.approx(1 - (err**2).sum() / ((y - y.mean()) ** 2).sum())
    assert m["spearman"] == pytest.approx(stats.spearmanr(y, p).statistic)
    assert m["bias"] == pytest.approx(err.mean())
    assert m["mae_by_quintile"] == pytest.approx([np.abs(err[2 * k : 2 * k + 2]).mean() for k in range(5)])
    assert m["mae_clamped"] == pytest.approx(np.abs(np.maximum(p, 0) - y).mean())
    assert m["mae_clamped"] < m["mae"]  # the first prediction was negative
    # A target that can be negative (formation energy): clamping is no correction, so no number.
    assert np.isnan(regression_metrics(y, p)["mae_clamped"])


def test_metrics_of_nothing_are_nan_and_json_writes_null():
    m = regression_metrics(np.array([]), np.array([]))
    assert m["n"] == 0 and np.isnan(m["mae"])
    text = json.dumps(json_safe(m), allow_nan=False)
    assert json.loads(text)["mae_by_quintile"] == [None] * 5


def test_classification_metrics_match_the_rank_formula():
    y = np.array([0, 0, 1, 1, 0, 1])
    prob = np.array([0.1, 0.6, 0.4, 0.9, 0.2, 0.8])
    m = classification_metrics(y, prob)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # pairs (positive, negative) ranked right: 0.4 beats 0.1, 0.2 (2); 0.9 and 0.8 beat all 3 (6) -> 8 of 9
    assert m["roc_auc"] == pytest.approx(8 / 9)
    assert np.isnan(classification_metrics(np.ones(3), prob[:3])["roc_auc"])


def test_calibration_bins_by_std():
    y = np.zeros(10)
    std = np.arange(1, 11, dtype=float)
    mean = std * np.array([0.5, 2, 0.5, 2, 0.5, 2, 0.5, 2, 0.5, 2])  # half within one std
    rows = calibration_table(y, mean, std, bins=5)
    assert [r["n"] for r in rows] == [2] * 5
    assert [r["std"] for r in rows] == pytest.approx([1.5, 3.5, 5.5, 7.5, 9.5])
    assert all(r["within_1std"] == 0.5 for r in rows)
    assert uncertainty_metrics(y, mean, std)["spearman_abs_error_std"] == pytest.approx(
        stats.spearmanr(np.abs(mean), std).statistic
    )


def test_clamp_only_touches_nonnegative_targets():
    values = np.array([[-0.5, -0.5], [1.0, -2.0]])
    out = clamp_nonnegative(values, ["band_gap", "formation_energy_per_atom"])
    assert out.tolist() == [[0.0, -0.5], [1.0, -2.0]]
    with pytest.raises(CGCNNError, match="cannot be negative"):
        clamp_nonnegative(values, ["formation_energy_per_atom", "efermi"])


# ------------------------------------------------------------------------------------------------ the command


def test_evaluate_json_agrees_with_predict(band_gap_folder, capsys):
    code, out, err = _cli(["evaluate", "--model", "band-gap", "--data", str(band_gap_folder), "--json"], capsys)
    assert code == 1  # the broken file, named on stderr, as predict does
    assert "broken" in err
    metrics = json.loads(out.strip().splitlines()[-1])
    assert metrics["n"] == N_CRYSTALS and metrics["failures"] == 1
    assert len(metrics["mae_by_quintile"]) == 5
    assert {"mae", "rmse", "r2", "spearman", "bias", "mae_clamped"} <= set(metrics)

    code, out, _ = _cli(["predict", "--model", "band-gap", str(band_gap_folder)], capsys)
    assert code == 1
    rows = {r["id"]: float(r["prediction"]) for r in csv.DictReader(io.StringIO(out))}
    labels = {}
    for line in (band_gap_folder / "id_prop.csv").read_text().splitlines():
        cid, value = line.split(",")
        labels[cid] = float(value)
    predict_mae = np.mean([abs(rows[c] - labels[c]) for c in rows])
    assert metrics["mae"] == pytest.approx(predict_mae, rel=1e-12)


def test_clamp_in_predict_and_evaluate(band_gap_folder, capsys):
    _, out, _ = _cli(["predict", "--model", "band-gap", str(band_gap_folder)], capsys)
    raw = [float(r["prediction"]) for r in csv.DictReader(io.StringIO(out))]
    _, out, _ = _cli(["predict", "--model", "band-gap", "--clamp", str(band_gap_folder)], capsys)
    clamped = [float(r["prediction"]) for r in csv.DictReader(io.StringIO(out))]
    assert clamped == [max(v, 0.0) for v in raw]
    _, out, _ = _cli(["evaluate", "--model", "band-gap", "--data", str(band_gap_folder), "--json", "--clamp"], capsys)
    metrics = json.loads(out.strip().splitlines()[-1])
    assert metrics["mae"] == pytest.approx(metrics["mae_clamped"])
    code, _, err = _cli(["predict", "--model", "formation-energy-per-atom", "--clamp", str(band_gap_folder)], capsys)
    assert code == 2 and "cannot be negative" in err


def test_mae_clamped_is_null_for_a_target_that_can_be_negative(band_gap_folder, capsys):
    # The folder's labels are band gaps; only the key's presence and emptiness matter here.
    args = ["evaluate", "--model", "formation-energy-per-atom", "--data", str(band_gap_folder), "--json"]
    _, out, _ = _cli(args, capsys)
    metrics = json.loads(out.strip().splitlines()[-1])
    assert metrics["mae"] is not None and metrics["mae_clamped"] is None


def test_multi_output_model_needs_target(band_gap_folder, capsys):
    code, _, err = _cli(["evaluate", "--model", "own-combined", "--data", str(band_gap_folder)], capsys)
    assert code == 2 and "--target" in err
    args = [
        "evaluate",
        "--model",
        "own-combined",
        "--data",
        str(band_gap_folder),
        "--target",
        "formation_energy_per_atom",
    ]
    code, out, _ = _cli([*args, "--json"], capsys)
    assert json.loads(out.strip().splitlines()[-1])["target"] == "formation_energy_per_atom"


def test_classifier_gets_accuracy_and_auc(band_gap_folder, tmp_path, capsys):
    lines = (band_gap_folder / "id_prop.csv").read_text().splitlines()
    folder = tmp_path / "metals"
    folder.mkdir()
    rows = []
    for line in lines:
        cid, gap = line.split(",")
        if cid != "broken":
            (folder / f"{cid}.cif").write_text((band_gap_folder / f"{cid}.cif").read_text())
            rows.append(f"{cid},{int(float(gap) == 0.0)}")
    (folder / "id_prop.csv").write_text("\n".join(rows) + "\n")
    args = ["evaluate", "--model", "semi-metal-classification", "--data", str(folder), "--json"]
    code, out, _ = _cli(args, capsys)
    metrics = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and metrics["n"] == N_CRYSTALS and {"accuracy", "roc_auc"} <= set(metrics)
    assert "mae" not in metrics


def test_parity_png_and_max_atoms(band_gap_folder, tmp_path, capsys):
    png = tmp_path / "parity.png"
    args = ["evaluate", "--model", "band-gap", "--data", str(band_gap_folder), "--out", str(png), "--max-atoms", "4"]
    code, out, err = _cli(args, capsys)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "limit is 4" in err and code == 1
    assert "mae_by_quintile" in out


def _perturbed_copy(path, scale: float, seed: int):
    predictor = load_model("formation-energy-per-atom")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in predictor.model.fcs.parameters() if len(predictor.model.fcs) else predictor.model.fc_out.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return save_checkpoint(path, predictor)


def test_ensemble_predict_and_evaluate(tmp_path, capsys):
    ds = load_default_dataset()
    ids = ds.with_target("formation_energy_per_atom")[:12]
    folder = export_cgcnn_folder(ds, ids, "formation_energy_per_atom", tmp_path / "fe")
    paths = [str(_perturbed_copy(tmp_path / f"m{k}.pt", 0.05, k)) for k in range(3)]
    code, out, _ = _cli(["predict", "--model", ",".join(paths), str(folder)], capsys)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    members = [c for c in rows[0] if c.startswith("member_")]
    assert len(members) == 3 and len(rows) == 12
    for r in rows:
        values = np.array([float(r[c]) for c in members])
        assert float(r["prediction"]) == pytest.approx(values.mean())
        assert float(r["std"]) == pytest.approx(values.std(ddof=1))

    ensemble = Ensemble([load_model(p) for p in paths])
    result = evaluate_model(ensemble, read_cgcnn_folder(folder))
    assert result.std is not None and result.members.shape == (3, 12)
    assert -1 <= result.metrics["spearman_abs_error_std"] <= 1
    assert sum(row["n"] for row in result.metrics["calibration"]) == 12
    code, out, _ = _cli(["evaluate", "--model", ",".join(paths), "--data", str(folder), "--json"], capsys)
    metrics = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and metrics["mae"] == pytest.approx(result.metrics["mae"]) and len(metrics["members"]) == 3
