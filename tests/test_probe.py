from __future__ import annotations

import csv
import io
import json
from contextlib import redirect_stdout

import numpy as np
import pytest
import scipy.linalg
import torch
from conftest import read

from cgcnn.analysis.probe import (
    Projection,
    crystal_map,
    depth_names,
    extract_features,
    fit_ridge,
    fit_ridge_cv,
    linear_probe,
    map_frame,
    pca_map,
    select_ids,
)
from cgcnn.cli.main import main
from cgcnn.data.datasets import load_default_dataset
from cgcnn.data.graph import GraphSet
from cgcnn.data.splits import make_split
from cgcnn.errors import CGCNNError
from cgcnn.nn.model import mean_pool
from cgcnn.zoo import load_model

ORIGINAL_DEPTHS = ["embedding", "conv1", "conv2", "conv3", "conv4", "pooled"]


@pytest.fixture(scope="module")
def formation():
    return load_model("formation-energy-per-atom")


@pytest.fixture(scope="module")
def cif_graphs(formation, all_ids):
    return [formation.graph(read(i)) for i in all_ids]


def _reference_ridge(X: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """Predictions of ridge solved as least squares on the augmented system, intercept unpenalised."""
    mean, scale = X.mean(axis=0), X.std(axis=0)
    Xs = (X - mean) / scale
    n, p = Xs.shape
    design = np.block([[Xs, np.ones((n, 1))], [np.sqrt(alpha) * np.eye(p), np.zeros((p, 1))]])
    target = np.concatenate([y, np.zeros(p)])
    solution, *_ = scipy.linalg.lstsq(design, target)
    return Xs @ solution[:p] + solution[p]


@pytest.mark.parametrize("alpha", [1e-4, 0.3, 10.0, 1e3])
def test_closed_form_ridge_matches_augmented_least_squares(alpha):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 12)) * rng.uniform(0.1, 10, size=12) + rng.normal(size=12)
    y = X @ rng.normal(size=12) + 3.0 + rng.normal(scale=0.5, size=40)
    model = fit_ridge(X, y, alpha)
    np.testing.assert_allclose(model.predict(X), _reference_ridge(X, y, alpha), atol=1e-8, rtol=0)


def test_ridge_more_features_than_samples_and_constant_column():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(15, 30))
    X[:, 3] = 7.0  # a constant feature must not divide by zero
    y = rng.normal(size=15)
    model = fit_ridge(X, y, 1.0)
    assert np.isfinite(model.predict(X)).all()
    assert abs(model.coef[3]) < 1e-12
    keep = np.arange(30) != 3
    np.testing.assert_allclose(model.predict(X), _reference_ridge(X[:, keep], y, 1.0), atol=1e-8, rtol=0)


def test_cv_picks_larger_penalty_for_noisier_data():
    rng = np.random.default_rng(0)
    n, p = 80, 40
    X = rng.normal(size=(n, p))
    w = rng.normal(size=p)
    clean = fit_ridge_cv(X, X @ w + rng.normal(scale=0.01, size=n))
    noisy = fit_ridge_cv(X, X @ w + rng.normal(scale=30.0, size=n))
    assert clean.alpha < noisy.alpha
    assert clean.alpha <= 0.1
    assert noisy.alpha >= 100
    assert len(clean.cv_mae) == len(clean.alphas) == 15
    assert clean.cv_mae.min() == clean.cv_mae[list(clean.alphas).index(clean.alpha)]


def test_cv_refuses_too_few_samples():
    with pytest.raises(CGCNNError, match="too few"):
        fit_ridge_cv(np.ones((6, 2)), np.arange(6.0), folds=5)


def test_feature_shapes_of_an_original_model(formation, cif_graphs):
    assert depth_names(formation) == ORIGINAL_DEPTHS
    feats = extract_features(formation, cif_graphs, batch_size=4)
    assert list(feats) == ORIGINAL_DEPTHS
    n = len(cif_graphs)
    for name in ORIGINAL_DEPTHS[:-1]:
        assert feats[name].shape == (n, 64)
    assert feats["pooled"].shape == (n, 32)
    assert all(np.isfinite(f).all() for f in feats.values())
    # asking for a subset, in any order, gives the same numbers (and stops early for shallow depths)
    some = extract_features(formation.model, cif_graphs, depths=["conv2", "embedding"], params=formation.graph_params)
    assert list(some) == ["embedding", "conv2"]
    np.testing.assert_allclose(some["conv2"], feats["conv2"], rtol=1e-5, atol=1e-6)
    with pytest.raises(CGCNNError, match="unknown depth"):
        extract_features(formation, cif_graphs, depths=["conv9"])


def test_features_agree_with_the_model_forward(formation, cif_graphs):
    net = formation.model
    net.train()  # extract_features must use eval mode and then restore this
    feats = extract_features(formation, cif_graphs)
    assert net.training
    net.eval()
    batch = GraphSet(cif_graphs, formation.graph_params).batch(np.arange(len(cif_graphs)))
    with torch.no_grad():
        last = mean_pool(net.atom_features(batch), batch).double().numpy()
        out = net(batch).double().numpy()
    np.testing.assert_allclose(feats["conv4"], last, rtol=1e-5, atol=1e-6)
    assert len(net.fcs) == 0  # the original regressors: pooled feeds fc_out directly
    with torch.no_grad():
        head = net.fc_out(torch.from_numpy(feats["pooled"]).float()).double().numpy()
    np.testing.assert_allclose(head, out, rtol=1e-4, atol=1e-5)


def test_linear_probe_small_split():
    result = linear_probe("formation-energy-per-atom", n_train=60, n_test=30)
    assert [d.depth for d in result.depths] == ORIGINAL_DEPTHS
    assert result.n_train + result.n_test + len(result.skipped) == 90
    assert np.isfinite(result.baseline_mae) and result.baseline_mae > 0
    assert all(np.isfinite(d.test_mae) and d.alpha > 0 for d in result.depths)
    assert result.split_hash == make_split(load_default_dataset(), "band_gap", 60, 0, 30).content_hash
    with pytest.raises(CGCNNError, match="unknown model"):
        linear_probe("no-such-model", n_train=60, n_test=30)
    with pytest.raises(CGCNNError, match="n_test"):
        linear_probe("formation-energy-per-atom", n_train=60, n_test=10**6)


def _run_cli(argv: list[str]) -> tuple[int, str]:
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        code = main(argv)
    return code, buffer.getvalue()


def test_probe_cli_json():
    code, out = _run_cli(["probe", "--model", "formation-energy-per-atom", "--train", "60", "--test", "30", "--json"])
    assert code == 0
    data = json.loads(out)
    assert data["model"] == "formation-energy-per-atom" and data["target"] == "band_gap"
    assert data["n_train"] == 60 and data["n_test"] == 30
    assert [d["depth"] for d in data["depths"]] == ORIGINAL_DEPTHS
    assert [d["dim"] for d in data["depths"]] == [64, 64, 64, 64, 64, 32]
    assert all(np.isfinite(d["test_mae"]) for d in data["depths"])
    assert np.isfinite(data["baseline_mae"])


def test_probe_cli_table_and_errors(capsys):
    code, out = _run_cli(["probe", "--model", "band-gap", "--train", "60", "--test", "30", "--depths", "pooled"])
    assert code == 0
    assert "pooled" in out and "mean-baseline" in out and "conv1" not in out
    assert main(["probe", "--model", "band-gap", "--target", "nope", "--train", "60", "--test", "30"]) == 2
    assert "unknown target" in capsys.readouterr().err


def test_features_cli_csv_and_npy(tmp_path, capsys):
    csv_path = tmp_path / "f.csv"
    assert (
        main(
            [
                "features",
                "--model",
                "formation-energy-per-atom",
                "--depth",
                "conv2",
                "--n",
                "12",
                "--out",
                str(csv_path),
            ]
        )
        == 0
    )
    rows = list(csv.reader(csv_path.open()))
    assert rows[0] == ["id", *(f"f{k}" for k in range(64))]
    assert len(rows) == 13
    ids = [r[0] for r in rows[1:]]

    id_file = tmp_path / "ids.txt"
    id_file.write_text("id\n" + "\n".join(ids[:5]) + "\n")
    npy_path = tmp_path / "f.npy"
    args = ["features", "--model", "formation-energy-per-atom", "--depth", "pooled", "--ids-from", str(id_file)]
    assert main([*args, "--out", str(npy_path)]) == 0
    array = np.load(npy_path)
    assert array.shape == (5, 32)
    assert (tmp_path / "f.ids.txt").read_text().split() == ids[:5]

    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "f.parquet")]) == 2
    assert "csv or .npy" in capsys.readouterr().err
    id_file.write_text("mp-does-not-exist\n")
    assert main([*args, "--out", str(npy_path)]) == 2
    assert "unknown crystal id" in capsys.readouterr().err


def test_pca_map_shapes_and_variance():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(50, 8)) * np.array([10, 5, 1, 1, 1, 0.1, 0.1, 0.1])
    proj = pca_map(X, n_components=2)
    assert isinstance(proj, Projection)
    assert proj.coords.shape == (50, 2)
    ratios = proj.explained_variance_ratio
    assert ratios.shape == (2,) and ratios[0] >= ratios[1] > 0 and ratios.sum() <= 1 + 1e-12
    # the coordinates are the centred data's projections: their variances follow the ratios
    total = ((X - X.mean(axis=0)) ** 2).sum()
    np.testing.assert_allclose((proj.coords**2).sum(axis=0) / total, ratios)
    np.testing.assert_allclose(pca_map(X).coords, proj.coords)  # deterministic signs
    assert pca_map(X, n_components=8).explained_variance_ratio.sum() == pytest.approx(1.0)
    with pytest.raises(CGCNNError):
        pca_map(X, n_components=9)


def test_crystal_map_frame_has_every_label():
    ds = load_default_dataset()
    ids = select_ids(ds, "band_gap", 20)
    frame, proj = crystal_map("formation-energy-per-atom", "pooled", ids, ds)
    assert list(frame.columns[:4]) == ["id", "formula", "x", "y"]
    assert set(ds.targets) <= set(frame.columns)
    assert len(frame) == 20 and frame["id"].tolist() == ids
    assert frame["formula"].tolist() == [str(ds.formulas[ds.index_of(i)]) for i in ids]
    np.testing.assert_allclose(frame["band_gap"].to_numpy(), ds.labels.loc[ids, "band_gap"].to_numpy())
    assert proj.explained_variance_ratio.sum() <= 1
    with pytest.raises(ValueError):
        map_frame(ds, ids[:3], proj)
    with pytest.raises(CGCNNError, match="unknown map method"):
        crystal_map("formation-energy-per-atom", "pooled", ids, ds, method="tsne")


def test_umap_is_optional():
    from cgcnn.analysis.probe import umap_available, umap_map

    if umap_available():
        assert umap_map(np.random.default_rng(0).normal(size=(30, 5))).coords.shape == (30, 2)
    else:
        with pytest.raises(CGCNNError, match="umap-learn"):
            umap_map(np.zeros((30, 5)))
