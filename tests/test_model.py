from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import read

from cgcnn.data.graph import GraphBatch, GraphParams, collate, structure_to_graph
from cgcnn.nn.conv import GatedConv
from cgcnn.nn.model import CrystalGraphConvNet, ModelConfig, mean_pool
from cgcnn.zoo import load_model


def tiny_batch(n=3, m=2, g=4, c=5, seed=0) -> tuple[GraphBatch, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    src = torch.tensor([1, 2, 0, 2, 0, 1])  # a triangle, two neighbours each
    batch = GraphBatch(
        node_features=torch.randn(n, 7, generator=gen),
        edge_features=torch.rand(n * m, g, generator=gen),
        edge_src=src,
        edge_dst=torch.arange(n).repeat_interleave(m),
        edge_mask=torch.ones(n * m, dtype=torch.bool),
        crystal_index=torch.zeros(n, dtype=torch.long),
        n_crystals=1,
        max_neighbors=m,
    )
    return batch, torch.randn(n, c, generator=gen)


def test_gated_conv_equals_the_written_equation():
    """The split dense layer gives the numbers of the concatenation formula of Xie & Grossman."""
    batch, v = tiny_batch()
    conv = GatedConv(5, 4).eval()
    with torch.no_grad():
        for bn in (conv.bn1, conv.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
        out, gate = conv(v, batch, return_edge_weights=True)
    assert out.shape == (3, 5) and gate.shape == (6, 1)

    expected = torch.empty(3, 5)
    expected_gate = torch.empty(6, 1)
    for i in range(3):
        total = torch.zeros(5)
        for e in range(2 * i, 2 * i + 2):
            z = torch.cat([v[i], v[batch.edge_src[e]], batch.edge_features[e]])
            h = conv.fc_full(z)
            h = (h - conv.bn1.running_mean) / torch.sqrt(conv.bn1.running_var + conv.bn1.eps)
            h = h * conv.bn1.weight + conv.bn1.bias
            total += torch.sigmoid(h[:5]) * torch.nn.functional.softplus(h[5:])
            expected_gate[e] = torch.sigmoid(h[:5]).mean()
        total = (total - conv.bn2.running_mean) / torch.sqrt(conv.bn2.running_var + conv.bn2.eps)
        expected[i] = torch.nn.functional.softplus(v[i] + total * conv.bn2.weight + conv.bn2.bias)
    torch.testing.assert_close(out, expected.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gate, expected_gate.detach(), atol=1e-5, rtol=1e-5)


def test_mean_pool_per_crystal():
    batch, _ = tiny_batch()
    batch.crystal_index = torch.tensor([0, 1, 1])
    batch.n_crystals = 2
    pooled = mean_pool(torch.tensor([[1.0], [2.0], [4.0]]), batch)
    assert pooled.tolist() == [[1.0], [3.0]]


def test_model_output_shapes_and_reset():
    cfg = ModelConfig(atom_fea_len=8, n_conv=2, h_fea_len=6, n_h=2, targets=["a", "b", "c"])
    model = CrystalGraphConvNet(cfg).eval()
    graphs = [structure_to_graph(read(i), GraphParams()) for i in ("mp-30", "mp-2184")]
    out = model(collate(graphs, GraphParams()))
    assert out.shape == (2, 3)
    before = model.convs[1].fc_full.weight.clone()
    model.convs[1].reset_parameters()
    assert not torch.equal(before, model.convs[1].fc_full.weight)


@pytest.mark.parametrize(
    "name", ["formation-energy-per-atom", "band-gap", "bulk-moduli", "shear-moduli", "semi-metal-classification"]
)
def test_original_checkpoints_match_the_reference_implementation(name, cif_dir, all_ids):
    from reference import reference_dataset, reference_predictions

    expected = reference_predictions(name, reference_dataset(cif_dir, all_ids)).numpy()
    ours = load_model(name).predict_structures([read(i) for i in all_ids])[:, 0]
    np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_batch_composition_does_not_change_predictions():
    predictor = load_model("band-gap")
    graphs = [structure_to_graph(read(i), GraphParams()) for i in ("mp-30", "mp-2184", "mp-720")]
    together = predictor.predict_graphs(graphs)
    alone = np.vstack([predictor.predict_graphs([g]) for g in graphs])
    np.testing.assert_allclose(together, alone, atol=1e-5)
