"""Edge removal (delete vs zero) and the faithfulness curves, on real crystals and on a hand-made graph."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cgcnn.analysis.attribution import predict_without
from cgcnn.analysis.faithfulness import (
    FRACTIONS,
    auc,
    bootstrap_ci,
    crystal_curves,
    curves_for_orders,
    edge_scores,
    integrated_gradients,
    method_names,
    random_orders,
    ranking_order,
    remove_top,
    select_methods,
    top_count,
)
from cgcnn.data.datasets import load_default_dataset
from cgcnn.data.graph import CrystalGraph, GraphParams, collate
from cgcnn.data.graph_cache import get_graphs
from cgcnn.errors import CGCNNError
from cgcnn.nn.removal import remove_edges
from cgcnn.zoo import load_model

CRYSTAL = "mp-2534"  # zinc blende, 2 atoms, every edge real


@pytest.fixture(scope="module")
def dataset():
    return load_default_dataset()


@pytest.fixture(scope="module")
def attention():
    predictor = load_model("own-attention-4head")
    predictor.model.eval()
    return predictor


@pytest.fixture(scope="module")
def single_head():
    predictor = load_model("own-attention")
    predictor.model.eval()
    return predictor


@pytest.fixture(scope="module")
def gated():
    predictor = load_model("formation-energy-per-atom")
    predictor.model.eval()
    return predictor


def _graph(predictor, dataset, crystal=CRYSTAL):
    return predictor.graph(dataset.structure(crystal))


def test_after_a_delete_the_remaining_real_neighbours_attention_sums_to_one(attention, dataset):
    graph = _graph(attention, dataset, "mp-19149")  # 4 atoms
    batch = collate([graph], attention.graph_params)
    removed = torch.zeros(len(graph.edge_src), dtype=torch.bool)
    removed[[0, 1, 2, 13, 30]] = True  # three edges of atom 0, one of atom 1, one of atom 2
    m = batch.max_neighbors
    for layer in attention.model.edge_weights(remove_edges(batch, removed, "delete")):  # (E, heads)
        assert np.all(layer[removed].numpy() == 0.0)
        sums = layer.view(-1, m, layer.shape[1]).sum(dim=1)  # per atom and head
        assert torch.allclose(sums, torch.ones_like(sums), atol=1e-6)
    # the first layer sees the same atom features either way: delete renormalises today's coefficients over the
    # remaining edges, zero keeps them as they are (only the messages are multiplied by 0)
    before = attention.model.edge_weights(batch)[0]
    deleted = attention.model.edge_weights(remove_edges(batch, removed, "delete"))[0]
    zeroed = attention.model.edge_weights(remove_edges(batch, removed, "zero"))[0]
    assert torch.equal(zeroed, before)
    kept = before.masked_fill(removed.unsqueeze(1), 0.0).view(-1, m, before.shape[1])
    assert torch.allclose(deleted.view(-1, m, before.shape[1]), kept / kept.sum(dim=1, keepdim=True), atol=1e-6)
    full, deleted, zeroed = (
        predict_without(
            attention, graph, np.stack([np.zeros(len(removed), bool), removed.numpy(), removed.numpy()]), "delete"
        )[0],
        *(predict_without(attention, graph, removed.numpy()[None], mode)[0] for mode in ("delete", "zero")),
    )
    assert deleted != pytest.approx(zeroed, abs=1e-6) and deleted != pytest.approx(full, abs=1e-6)


def test_delete_equals_zero_for_a_gated_model(gated, dataset):
    graph = _graph(gated, dataset, "mp-19149")
    rng = np.random.default_rng(0)
    masks = rng.random((8, len(graph.edge_src))) < 0.3
    deleted = predict_without(gated, graph, masks, "delete")
    zeroed = predict_without(gated, graph, masks, "zero")
    assert np.abs(deleted - zeroed).max() < 1e-6
    assert np.ptp(deleted) > 1e-3  # the masks do change the prediction


def test_remove_edges_refuses_a_bad_mode_or_mask(gated, dataset):
    batch = collate([_graph(gated, dataset)], gated.graph_params)
    with pytest.raises(CGCNNError, match="mode"):
        remove_edges(batch, torch.zeros(len(batch.edge_mask), dtype=torch.bool), "drop")
    with pytest.raises(CGCNNError, match="shape"):
        remove_edges(batch, torch.zeros(3, dtype=torch.bool))


def test_methods_per_model_kind(attention, gated):
    available, lacking = method_names(attention)
    assert {"attention_mean", "attention_layer1", "attention_layer4_head4", "integrated_gradients", "random"} <= set(
        available
    )
    assert "gate_mean" in lacking and not any(m.startswith("gate") for m in available)
    available, lacking = method_names(gated)
    assert "gate_layer3" in available and "attention_mean" in lacking
    chosen, missing = select_methods(gated, ["attention", "gradient_input"])
    assert chosen == ["gradient_input", "random"] and "attention_mean" in missing
    with pytest.raises(CGCNNError, match="unknown method"):
        select_methods(gated, ["saliency"])


def _occlusion_aucs(predictor, graphs, mode):
    """Mean deletion AUCs of the occlusion ranking, its reverse and random, removing edges as ``mode`` says."""
    aucs = {"occlusion": [], "reversed": [], "random": []}
    for graph in graphs:
        real = np.asarray(graph.edge_mask)
        scores, _ = edge_scores(predictor, graph, [f"occlusion_{mode}"])
        order = ranking_order(scores[f"occlusion_{mode}"], real)
        orders = {"occlusion": [order], "reversed": [order[::-1]], "random": random_orders(real)}
        curves = curves_for_orders(predictor, graph, orders, mode)
        if not isinstance(curves, str):
            for name, curve in curves[0].items():
                aucs[name].append(auc(curve))
    assert len(aucs["random"]) >= 8
    return {name: float(np.mean(values)) for name, values in aucs.items()}


def test_occlusion_beats_random_and_random_beats_reversed_occlusion(single_head, dataset):
    """On 10 of own-attention's test crystals (the smallest): reversed < random < occlusion, as deletion AUCs.

    Under ``zero``, as here, the three are ordered as the issue expects. Under ``delete`` (measured, not tested:
    it doubles the time) occlusion still beats both, but the reversed ranking beats random too (0.39 against 0.29
    on the first 12 test crystals): an attention layer averages its neighbours, so deleting a random subset of them
    barely changes the average, while deleting the edges that matter least one at a time removes whole groups of
    redundant neighbours, which does change it.
    """
    ids = single_head.card.details["split"]["test_ids"][:60]
    graphs, _ = get_graphs(dataset, ids, single_head.graph_params)
    small = [graphs[i] for i in sorted(graphs, key=lambda i: (graphs[i].n_atoms, i))[:10]]
    zero = _occlusion_aucs(single_head, small, "zero")
    assert zero["reversed"] < zero["random"] < zero["occlusion"], zero


def test_integrated_gradients_converge_on_a_small_crystal(single_head, dataset):
    graph = _graph(single_head, dataset, "mp-21380")  # 4 atoms
    with torch.enable_grad():
        attributions, delta = integrated_gradients(single_head, graph)
    real = np.asarray(graph.edge_mask)
    full, none = predict_without(single_head, graph, np.stack([np.zeros_like(real), real]), "zero")
    assert abs(full - none) > 0.1
    assert delta < 1e-3 * abs(full - none)
    assert attributions.sum() == pytest.approx(full - none, abs=2e-3 * abs(full - none))


def _one_edge_model():
    """A gated network whose only sizeable message is that of edges 2 Å long (the filter opens at 2 Å only)."""
    from cgcnn.nn.cards import ModelCard
    from cgcnn.nn.model import CrystalGraphConvNet, ModelConfig
    from cgcnn.nn.normalizer import Normalizer
    from cgcnn.nn.predictor import Predictor

    params = GraphParams()
    c, g = 4, 41
    model = CrystalGraphConvNet(ModelConfig(orig_atom_fea_len=3, nbr_fea_len=g, atom_fea_len=c, n_conv=1, h_fea_len=4))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        conv = model.convs[0]
        conv.bn1.weight.fill_(1.0)
        conv.bn2.weight.fill_(1.0)
        conv.fc_full.weight[:c, 2 * c + 10] = 40.0  # filter: the Gaussian centred at 2.0 Å
        conv.fc_full.bias[:c] = -30.0
        conv.fc_full.bias[c:] = 1.0  # core: a constant message
        model.conv_to_fc.weight.copy_(torch.eye(4))
        model.fc_out.weight.fill_(1.0)
    model.eval()
    card = ModelCard("hand-made", "file", "test", "", None, None, "", "tests")
    return Predictor(model, Normalizer(np.zeros(1), np.ones(1)), params, card)


def _two_atom_graph(params: GraphParams) -> CrystalGraph:
    m = params.max_neighbors
    distances = np.full(2 * m, 5.0)
    distances[3] = 2.0  # the one edge that carries the signal
    return CrystalGraph(
        atomic_numbers=np.array([1, 2]),
        node_features=np.ones((2, 3), dtype=np.float32),
        edge_src=np.array([1] * m + [0] * m),
        edge_dst=np.repeat([0, 1], m),
        distances=distances,
        images=np.zeros((2 * m, 3), dtype=int),
        edge_mask=np.ones(2 * m, dtype=bool),
        radius=params.radius,
    )


def test_one_edge_carries_the_signal_and_occlusion_finds_it():
    predictor = _one_edge_model()
    graph = _two_atom_graph(predictor.graph_params)
    result = crystal_curves(predictor, graph, ["occlusion_delete", "gradient_input", "random"])
    assert not isinstance(result, str)
    assert top_count(0.05, result.n_real) == 1
    assert auc(result.deletion["occlusion_delete"]) == pytest.approx(1.0, abs=0.03)
    assert auc(result.deletion["gradient_input"]) == pytest.approx(1.0, abs=0.03)
    assert auc(result.deletion["random"]) < 0.8
    assert result.deletion["occlusion_delete"][0] == 0.0 and result.deletion["occlusion_delete"][-1] == 1.0


def test_crystals_without_enough_real_edges_or_change_are_skipped():
    predictor = _one_edge_model()
    graph = _two_atom_graph(predictor.graph_params)
    graph.distances[3] = 5.0  # no edge carries any signal: the full-removal change is below 1e-6
    assert crystal_curves(predictor, graph, ["random"]) == "no change when every edge is removed"
    graph.edge_mask[1:] = False
    assert crystal_curves(predictor, graph, ["random"]) == "fewer than 2 real edges"


def test_bootstrap_ci_and_fractions():
    assert len(FRACTIONS) == 21 and FRACTIONS[0] == 0 and FRACTIONS[-1] == 1
    assert auc(np.ones(21)) == pytest.approx(1.0)
    low, high = bootstrap_ci(np.arange(100.0))
    assert low < 49.5 < high and bootstrap_ci(np.arange(100.0)) == [low, high]


def test_remove_top_caps_and_refuses(gated, dataset):
    graph = _graph(gated, dataset)
    report = remove_top(gated, graph, 1000, "gradient_input")
    assert report["removed"] == int(graph.edge_mask.sum()) and "only" in report["note"]
    assert report["prediction_without_top"] == pytest.approx(report["prediction_without_random"], abs=1e-9)
    with pytest.raises(CGCNNError, match="no attention_mean"):
        remove_top(gated, graph, 2, "attention_mean")
    with pytest.raises(CGCNNError, match="unknown ranking"):
        remove_top(gated, graph, 2, "random")


def test_faithfulness_cli_json(capsys, tmp_path):
    import shutil

    from conftest import CIF_DIR

    from cgcnn.cli.main import main

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(CIF_DIR / "mp-2184.cif", data)
    (data / "id_prop.csv").write_text("mp-2184,0.1\n")
    out = tmp_path / "curves.png"
    argv = ["faithfulness", "--model", "own-attention", "--n", "3", "--data", str(data)]
    assert main([*argv, "--methods", "attention_layer1,occlusion_zero", "--json", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "--n 3 is more than the 1 crystals" in captured.err  # capped and said
    report = json.loads(captured.out.strip().splitlines()[-1])
    assert set(report) >= {"model", "n", "skipped", "occlusion", "methods", "not_applicable", "stability"}
    assert report["n"] + report["skipped"] == 1 and report["occlusion"] == "delete"
    assert set(report["methods"]) == {"attention_layer1", "occlusion_zero", "random"}
    row = report["methods"]["occlusion_zero"]
    assert set(row) == {"deletion_auc", "deletion_auc_ci", "insertion_auc", "fidelity_plus", "fidelity_minus"}
    assert row["deletion_auc_ci"][0] <= row["deletion_auc"] <= row["deletion_auc_ci"][1]
    assert out.stat().st_size > 1000
    assert main(["faithfulness", "--model", "mean"]) == 2
    assert "no edges" in capsys.readouterr().err
    assert main(["faithfulness", "--model", "own-attention", "--methods", "saliency"]) == 2


def test_shipped_results_are_read_not_computed(tmp_path):
    from cgcnn.analysis.faithfulness import method_for_colouring, shipped_faithfulness

    assert method_for_colouring("attention", 1, 2) == "attention_layer2_head3"
    assert method_for_colouring("gate", 0) == "gate_layer1"
    row = {"deletion_auc": 0.6, "deletion_auc_ci": [0.5, 0.7]}
    report = {
        "n": 5,
        "occlusion": "delete",
        "methods": {"attention_layer1": row, "random": row, "occlusion_delete": row},
    }
    (tmp_path / "m.json").write_text(json.dumps(report))
    found = shipped_faithfulness("m", "attention_layer1", tmp_path)
    assert found["deletion_auc"] == 0.6 and found["n"] == 5 and found["random_deletion_auc"] == 0.6
    assert shipped_faithfulness("m", "attention_layer9", tmp_path) is None
    assert shipped_faithfulness("other", "attention_layer1", tmp_path) is None  # "not measured"
    (tmp_path / "bad.json").write_text("{")
    assert shipped_faithfulness("bad", "attention_layer1", tmp_path) is None


def test_one_crystal_deletion_curve_on_demand():
    from cgcnn.analysis.faithfulness import crystal_deletion_curve

    predictor = _one_edge_model()
    curve = crystal_deletion_curve(predictor, _two_atom_graph(predictor.graph_params), "gradient_input")
    assert len(curve["fractions"]) == len(curve["gradient_input"]) == len(curve["random"]) == 21
    assert curve["gradient_input"][1] == pytest.approx(1.0, abs=1e-3) and curve["random"][1] < 0.5
