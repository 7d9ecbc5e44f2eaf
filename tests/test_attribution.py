"""Attribution (occlusion, gradient x input) on real crystals, for gated and attention models."""

from __future__ import annotations

import numpy as np
import pytest

from cgcnn.analysis.attribution import attention_agreement, attribute
from cgcnn.analysis.explain import edge_weight_layers
from cgcnn.data.datasets import load_default_dataset
from cgcnn.zoo import load_model

CRYSTAL = "mp-2534"  # GaAs-like zinc blende sample of the home page; small, every edge real


@pytest.fixture(scope="module", params=["formation-energy-per-atom", "own-attention"])
def model(request):
    return load_model(request.param)


def test_occluding_nothing_changes_nothing_and_everything_is_accounted(model):
    graph = model.graph(read_first())
    result = attribute(model, graph)
    assert result.prediction == pytest.approx(float(model.predict_graphs([graph])[0, 0]), abs=1e-5)
    assert result.edge_occlusion.shape == (len(graph.edge_src),)
    assert result.atom_occlusion.shape == (graph.n_atoms,)
    assert np.isfinite(result.edge_occlusion).all() and np.isfinite(result.edge_gradient).all()
    if model.model.config.conv != "gated":  # attention ignores fill-in edges: their attribution is exactly 0
        assert np.all(result.edge_occlusion[~graph.edge_mask] == 0)
        assert np.all(result.edge_gradient[~graph.edge_mask] == 0)
    # symmetry: the four nearest-neighbour edges of an atom in zinc blende are equivalent
    d = np.asarray(graph.distances).reshape(graph.n_atoms, -1)
    occ = result.edge_occlusion.reshape(graph.n_atoms, -1)
    nearest = np.isclose(d, d.min(axis=1, keepdims=True), atol=1e-6)
    for i in range(graph.n_atoms):
        assert np.ptp(occ[i][nearest[i]]) < 1e-5


def test_edge_gradient_matches_finite_differences(model):
    import torch

    from cgcnn.analysis.attribution import _occlude

    graph = model.graph(read_first())
    result = attribute(model, graph)
    eps = 1e-2
    edges = [0, 4, 12, 16]
    masks = torch.ones(len(edges), len(graph.edge_src))
    for row, e in enumerate(edges):
        masks[row, e] = 1.0 - eps
    finite = (result.prediction - _occlude(model, graph, masks)) / eps
    assert np.allclose(finite, result.edge_gradient[edges], rtol=0.05, atol=2e-4), (finite, result.edge_gradient)


def test_attention_agreement_is_a_correlation(model):
    graph = model.graph(read_first())
    layers, _ = edge_weight_layers(model, graph)
    result = attribute(model, graph)
    rho = attention_agreement(layers, result.edge_occlusion, graph.edge_mask)
    assert np.isnan(rho) or -1.0 <= rho <= 1.0


def read_first():
    return load_default_dataset().structure(CRYSTAL)


def test_explain_cli_json(capsys):
    import json

    from conftest import CIF_DIR

    from cgcnn.cli.main import main

    assert main(["explain", "--model", "own-attention", "--top", "5", "--json", str(CIF_DIR / "mp-2184.cif")]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    keys = {"prediction", "units", "occlusion", "atoms", "top_edges", "attention_vs_occlusion_spearman", "tie"}
    assert set(report) == keys and report["tie"] is None  # mp-2184 has no tie at the cutoff
    assert report["occlusion"] == "delete"
    assert len(report["top_edges"]) == 5 and report["top_edges"][0]["attention"] is not None
    occ = [abs(e["occlusion"]) for e in report["top_edges"]]
    assert occ == sorted(occ, reverse=True)
    assert -1.0 <= report["attention_vs_occlusion_spearman"] <= 1.0
    assert main(["explain", "--model", "own-attention", str(CIF_DIR / "missing.cif")]) == 2  # one-line error


def test_occlusion_modes_differ_for_attention_only(model):
    graph = model.graph(read_first())
    deleted, zeroed = attribute(model, graph, "delete"), attribute(model, graph, "zero")
    assert deleted.occlusion == "delete" and zeroed.occlusion == "zero"
    assert np.array_equal(deleted.edge_gradient, zeroed.edge_gradient)  # a derivative of message scaling either way
    gap = np.abs(deleted.edge_occlusion - zeroed.edge_occlusion).max()
    if model.model.config.conv == "gated":
        assert gap < 1e-6 and np.abs(deleted.atom_occlusion - zeroed.atom_occlusion).max() < 1e-6
    else:  # zero does not renormalise the softmax: removing one of four equal neighbours costs a quarter of them
        assert gap > 1e-4


def test_explain_cli_occlusion_and_remove_top(capsys):
    import json

    from conftest import CIF_DIR

    from cgcnn.cli.main import main

    cif = str(CIF_DIR / "mp-2184.cif")
    assert main(["explain", "--model", "own-attention", "--occlusion", "zero", "--top", "3", "--json", cif]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["occlusion"] == "zero"
    argv = ["explain", "--model", "own-attention", "--remove-top", "5", "--ranking", "attention_layer2", "--json", cif]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"prediction", "prediction_without_top", "prediction_without_random"} <= set(report)
    assert report["removed"] == 5 and report["occlusion"] == "delete"
    assert main([*argv[:4], "100000", *argv[5:]]) == 0
    captured = capsys.readouterr()
    assert "note: only" in captured.err and json.loads(captured.out.strip().splitlines()[-1])["note"]
    assert main(["explain", "--model", "own-attention", "--remove-top", "2", "--ranking", "gate_mean", cif]) == 2
    assert "no gate_mean" in capsys.readouterr().err
    assert main(["explain", "--model", "own-attention", "--remove-top", "2", cif]) == 2
