from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import read
from pymatgen.core import Lattice, Structure

from cgcnn.data.graph import GraphBatch, GraphParams, GraphSet, collate, gaussian_expand, structure_to_graph
from cgcnn.errors import CGCNNError
from cgcnn.nn.attention import AttentionConv, EdgeAttentionConv, conv_parameter_counts
from cgcnn.nn.checkpoint import load_checkpoint, save_checkpoint
from cgcnn.nn.conv import GatedConv
from cgcnn.nn.layers import CONV_LAYERS
from cgcnn.nn.model import CrystalGraphConvNet, ModelConfig
from cgcnn.nn.normalizer import Normalizer
from cgcnn.nn.predictor import Predictor
from cgcnn.training.train import LabelledGraphs, TrainConfig, train_model
from cgcnn.training.transfer import prepare_transfer

KINDS = ["attention", "attention-edge"]


def sparse_cu():
    """Simple cubic Cu, a = 7 Å: 6 neighbours within 8 Å (the next shell is at 9.9 Å), so 6 fill-ins of 12."""
    return Structure(Lattice.cubic(7.0), ["Cu"], [[0, 0, 0]])


@pytest.fixture(scope="module")
def mixed_batch() -> GraphBatch:
    """A dense crystal, the sparse Cu and another dense crystal, as one batch."""
    graphs = [structure_to_graph(s, GraphParams()) for s in (read("mp-2184"), sparse_cu(), read("mp-30"))]
    return collate(graphs, GraphParams())


def _conv(kind: str, c: int = 64, heads: int = 1, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    conv = CONV_LAYERS[kind](c, 41, heads=heads).eval()
    with torch.no_grad():  # non-trivial eval statistics, so that the folded path is exercised
        for bn in (conv.bn1, conv.bn2):
            bn.running_mean.uniform_(-0.3, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
    return conv


def test_sparse_cu_has_fill_in_edges():
    graph = structure_to_graph(sparse_cu(), GraphParams())
    assert graph.edge_mask.sum() == 6 and len(graph.edge_mask) == 12
    assert np.allclose(graph.distances[graph.edge_mask], 7.0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("heads", [1, 4])
def test_coefficients_sum_to_one_over_real_neighbours_and_vanish_on_fill_ins(mixed_batch, kind, heads):
    conv = _conv(kind, heads=heads)
    v = torch.randn(mixed_batch.n_atoms, 64)
    for mode in ("eval", "train"):
        conv.train(mode == "train")
        out, coef = conv(v, mixed_batch, return_edge_weights=True)
        assert out.shape == v.shape and coef.shape == (mixed_batch.n_atoms * 12, heads)
        mask = mixed_batch.edge_mask
        assert (~mask).sum() >= 6  # the Cu atom's fill-ins are in the batch
        assert torch.all(coef[~mask] == 0.0)  # exactly zero, not just small
        sums = (coef * mask.unsqueeze(1)).view(-1, 12, heads).sum(dim=1)
        assert torch.allclose(sums, torch.ones_like(sums), atol=1e-6)
        assert torch.all(coef[mask] >= 0)


@pytest.mark.parametrize("kind", KINDS)
def test_fill_in_edges_do_not_change_the_output(kind):
    """Whatever sits on a fill-in edge (its neighbour, its distance) does not reach the atom."""
    batch = collate(
        [structure_to_graph(sparse_cu(), GraphParams()), structure_to_graph(read("mp-2184"), GraphParams())],
        GraphParams(),
    )
    conv = _conv(kind, heads=2)
    v = torch.randn(batch.n_atoms, 64)
    out = conv(v, batch)
    fill = ~batch.edge_mask
    altered = GraphBatch(**{**batch.__dict__})
    altered.edge_src = batch.edge_src.clone()
    altered.edge_src[fill] = batch.n_atoms - 1  # point the fill-ins of Cu at an atom of the other crystal
    altered.edge_features = batch.edge_features.clone()
    altered.edge_features[fill] = torch.rand(int(fill.sum()), 41)
    # the core passes through bn1, which in eval mode is per edge, so only the coefficients could leak
    assert torch.allclose(conv(v, altered), out, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_permutation_equivariance(mixed_batch, kind):
    conv = _conv(kind, heads=2)
    n, m = mixed_batch.n_atoms, mixed_batch.max_neighbors
    v = torch.randn(n, 64)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(1))  # new atom t is old atom order[t]
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(n)
    edges = (order.unsqueeze(1) * m + torch.arange(m)).reshape(-1)
    permuted = GraphBatch(
        node_features=mixed_batch.node_features[order],
        edge_features=mixed_batch.edge_features[edges],
        edge_src=inverse[mixed_batch.edge_src[edges]],
        edge_dst=torch.arange(n).repeat_interleave(m),
        edge_mask=mixed_batch.edge_mask[edges],
        crystal_index=mixed_batch.crystal_index[order],
        n_crystals=mixed_batch.n_crystals,
        max_neighbors=m,
    )
    out, coef = conv(v, mixed_batch, return_edge_weights=True)
    out_p, coef_p = conv(v[order], permuted, return_edge_weights=True)
    assert torch.allclose(out_p, out[order], atol=1e-5)
    assert torch.allclose(coef_p, coef[edges], atol=1e-6)


def tiny_batch(n: int = 3, m: int = 2, g: int = 4, seed: int = 0) -> GraphBatch:
    gen = torch.Generator().manual_seed(seed)
    return GraphBatch(
        node_features=torch.randn(n, 7, generator=gen),
        edge_features=torch.rand(n * m, g, generator=gen),
        edge_src=torch.tensor([1, 2, 0, 2, 0, 1]),  # a triangle, two neighbours each
        edge_dst=torch.arange(n).repeat_interleave(m),
        edge_mask=torch.tensor([True, True, True, False, True, True]),
        crystal_index=torch.zeros(n, dtype=torch.long),
        n_crystals=1,
        max_neighbors=m,
    )


def test_attention_equals_the_written_equation():
    """The split dense layer and folded batch norm give the numbers of the concatenation formula."""
    batch = tiny_batch()
    torch.manual_seed(0)
    conv = AttentionConv(6, 4).eval()
    with torch.no_grad():
        for bn in (conv.bn1, conv.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
        v = torch.randn(3, 6)
        out, coef = conv(v, batch, return_edge_weights=True)
        src, dst, u = batch.edge_src, batch.edge_dst, batch.edge_features
        z = torch.cat([v[dst], v[src], u], dim=1)
        core = F.softplus(conv.bn1(conv.fc_core(z)))
        score = (v[dst] * v[src]).sum(1) * (u * u).sum(1)
        expected_coef = torch.zeros(6)
        for i in range(3):
            edges = [e for e in range(6) if dst[e] == i and batch.edge_mask[e]]
            expected_coef[edges] = torch.softmax(score[edges], dim=0)
        summed = torch.zeros(3, 6).index_add_(0, dst, expected_coef.unsqueeze(1) * core)
        expected = F.softplus(v + conv.bn2(summed))
    assert out.shape == (3, 6) and coef.shape == (6, 1)
    assert torch.allclose(coef[:, 0], expected_coef, atol=1e-6)
    assert torch.allclose(out, expected, atol=1e-5)


def test_edge_attention_score_equation():
    batch = tiny_batch()
    torch.manual_seed(0)
    conv = EdgeAttentionConv(6, 4, heads=2, key_dim=3).eval()
    v = torch.randn(3, 6)
    with torch.no_grad():
        _, coef = conv(v, batch, return_edge_weights=True)
        q, k = conv.fc_query(v).view(3, 2, 3), conv.fc_key(v).view(3, 2, 3)
        src, dst = batch.edge_src, batch.edge_dst
        score = (q[dst] * k[src]).sum(-1) / math.sqrt(3) + batch.edge_features @ conv.fc_edge_score.weight.T
    for i in range(3):
        edges = [e for e in range(6) if dst[e] == i and batch.edge_mask[e]]
        assert torch.allclose(coef[edges], torch.softmax(score[edges], dim=0), atol=1e-6)
    assert coef[3].abs().sum() == 0  # the masked edge


def test_heads_shapes_and_options():
    batch = tiny_batch()
    v = torch.randn(3, 8)
    conv = AttentionConv(8, 4, heads=4)
    out, coef = conv(v, batch, return_edge_weights=True)
    assert out.shape == (3, 8) and coef.shape == (6, 4) and conv.fc_heads is not None
    assert not torch.allclose(coef[:, 0], coef[:, 1])  # the heads look at different channel slices
    assert AttentionConv(8, 4).fc_heads is None
    with pytest.raises(CGCNNError, match="divide"):
        AttentionConv(8, 4, heads=3)
    out, coef = EdgeAttentionConv(8, 4, heads=3, key_dim=2)(v, batch, return_edge_weights=True)
    assert out.shape == (3, 8) and coef.shape == (6, 3)
    assert AttentionConv(8, 4, scale_score=True)(v, batch).shape == (3, 8)


def test_reset_parameters_changes_the_weights():
    for conv in (AttentionConv(8, 4, heads=2), EdgeAttentionConv(8, 4, heads=2)):
        before = {k: v.clone() for k, v in conv.state_dict().items()}
        conv.reset_parameters()
        changed = [k for k, v in conv.state_dict().items() if not torch.equal(v, before[k])]
        assert "fc_core.weight" in changed and "fc_heads.weight" in changed
        assert (not isinstance(conv, EdgeAttentionConv)) or "fc_query.weight" in changed


def test_parameter_counts_about_half_the_gated_layer():
    counts = conv_parameter_counts()
    assert counts == {"gated": 22144, "attention": 11136, "attention-edge": 13225}  # the docstring's table
    assert 0.45 < counts["attention"] / counts["gated"] < 0.55
    assert counts["attention-edge"] / counts["gated"] < 0.65
    assert conv_parameter_counts(heads=4)["attention"] == 60608


def test_edge_norm_is_nearly_constant_so_the_study_score_ignores_distance(untied_ids):
    """<u, u> of the Gaussian-expanded distance over real neighbours: ≈ sqrt(pi/2), ripple ~1 %."""
    params = GraphParams()
    graphs = [structure_to_graph(s, params) for s in [*(read(i) for i in untied_ids), sparse_cu()]]
    batch = collate(graphs, params)
    uu = batch.edge_features[batch.edge_mask].double().pow(2).sum(1)
    d = torch.from_numpy(np.concatenate([g.distances[g.edge_mask] for g in graphs]))
    assert d.min() < 2.0 and d.max() > 6.5  # a real spread of distances (1.4 .. 7 Å)
    ratio = uu / math.sqrt(math.pi / 2)
    assert ratio.std() < 0.01 and (ratio - 1).abs().max() < 0.02
    # the same on a sweep of every distance a neighbour can have, up to 0.3 Å below the cutoff
    sweep = np.linspace(0.3, params.radius - 0.3, 2000)
    uu_sweep = (gaussian_expand(sweep, params).astype(np.float64) ** 2).sum(1) / math.sqrt(math.pi / 2)
    assert np.abs(uu_sweep - 1).max() < 0.02
    # the gated layer's filter sees u itself, which does vary: features at 2 Å and 6 Å do not even overlap
    u = gaussian_expand(np.array([2.0, 6.0]), params)
    assert float(u[0] @ u[1]) < 1e-6


@pytest.mark.parametrize("kind", ["gated", *KINDS])
def test_model_edge_weights(mixed_batch, kind):
    options = {} if kind == "gated" else {"heads": 2}
    torch.manual_seed(0)
    model = CrystalGraphConvNet(ModelConfig(n_conv=3, conv=kind, conv_options=options)).eval()
    weights = model.edge_weights(mixed_batch)
    e = mixed_batch.n_atoms * 12
    assert len(weights) == 3
    for w in weights:
        assert w.shape == (e, 1 if kind == "gated" else 2) and not w.requires_grad
        if kind == "gated":
            assert torch.all((w > 0) & (w < 1))
        else:
            assert torch.all(w[~mixed_batch.edge_mask] == 0)
    if kind == "gated":  # the same numbers as the layers' own gates
        _, gate = model.convs[0](model.embedding(mixed_batch.node_features), mixed_batch, return_edge_weights=True)
        assert torch.equal(weights[0], gate)


@pytest.fixture(scope="module")
def small_sets(all_ids):
    """A few real crystals with a synthetic smooth target (tests must not depend on the dataset here)."""
    graphs = [structure_to_graph(read(i), GraphParams()) for i in all_ids]
    y = np.array([g.distances[g.edge_mask].mean() for g in graphs])

    def part(idx):
        return LabelledGraphs([all_ids[i] for i in idx], GraphSet([graphs[i] for i in idx], GraphParams()), y[idx])

    return part(range(0, 9)), part(range(9, 12)), part(range(12, len(all_ids)))


@pytest.mark.parametrize("kind", KINDS)
def test_train_transfer_and_checkpoint_round_trip_for_attention(small_sets, tmp_path, kind, monkeypatch):
    train, val, test = small_sets
    torch.manual_seed(0)
    config = ModelConfig(n_conv=3, atom_fea_len=16, h_fea_len=16, targets=["d"], conv=kind, conv_options={"heads": 2})
    source = train_model(CrystalGraphConvNet(config), train, val, test, TrainConfig(epochs=2, batch_size=4))
    assert np.isfinite(source.test.mae)

    # the zoo loads it as any other own model, and predictions survive the round trip
    predictor = Predictor(source.model, source.normalizer, GraphParams(), card=_card(kind))
    save_checkpoint(tmp_path / f"own-{kind}.pt", predictor)
    monkeypatch.setenv("CGCNN_PRETRAINED", str(tmp_path))
    from cgcnn.zoo import load_model

    loaded = load_model(f"own-{kind}")
    assert loaded.model.config.conv == kind and loaded.model.config.conv_options == {"heads": 2}
    structures = [read("mp-30"), sparse_cu()]
    assert np.allclose(loaded.predict_structures(structures), predictor.predict_structures(structures), atol=1e-6)
    assert load_checkpoint(tmp_path / f"own-{kind}.pt").model.convs[0].heads == 2

    # transfer: freeze the embedding and 2 attention layers, re-initialise the third and the head
    model, report = prepare_transfer(loaded.model, 2, ["other"], seed=1)
    assert isinstance(model.convs[2], type(loaded.model.convs[2]))
    assert report.frozen_layers == ["embedding", "convs.0", "convs.1"]
    assert "convs.2" in report.reinitialised_layers
    assert torch.equal(model.convs[1].fc_core.weight, loaded.model.convs[1].fc_core.weight)
    assert not torch.equal(model.convs[2].fc_core.weight, loaded.model.convs[2].fc_core.weight)
    frozen_before = {k: v.clone() for k, v in model.convs[1].state_dict().items()}
    result = train_model(model, train, val, test, TrainConfig(epochs=2, batch_size=4), frozen_depth=report.freeze)
    assert np.isfinite(result.test.mae)
    for key, value in model.convs[1].state_dict().items():
        assert torch.equal(value, frozen_before[key]), key  # weights and batch-norm statistics
    # cached frozen features give the full forward
    batch = train.graphs.batch(np.arange(len(train.ids)))
    model.eval()
    with torch.no_grad():
        cached = model.atom_features(batch, up_to=2)
        assert torch.allclose(model.forward_from(cached, batch, 2), model(batch), atol=1e-5)


def test_gated_layer_numbers_are_unchanged_by_the_registry():
    """Registering attention layers does not touch the gated layer or its default."""
    assert CONV_LAYERS["gated"] is GatedConv and ModelConfig().conv == "gated"
    assert Normalizer.fit(np.array([1.0, 3.0])).mean[0] == 2.0


def _card(kind: str):
    from cgcnn.nn.cards import ModelCard

    return ModelCard(
        name=f"own-{kind}", kind="own", property="d", units="Å", train_size=9, mae=None, mae_metric="", source="test"
    )


def test_layers_show_their_sizes_when_printed():
    model = CrystalGraphConvNet(ModelConfig(atom_fea_len=8, n_conv=1, conv="attention-edge", conv_options={"heads": 3}))
    assert "heads=3, key_dim=16" in repr(model.convs[0])
    assert "atom_fea_len=8, nbr_fea_len=41" in repr(GatedConv(8, 41))


@pytest.mark.parametrize(
    "first_import",
    [
        "from cgcnn.nn import CONV_LAYERS",
        "from cgcnn.nn.layers import CONV_LAYERS",
        "from cgcnn.nn.checkpoint import CONV_LAYERS",
        "from cgcnn.training.pretrain import CONV_LAYERS",
    ],
)
def test_every_conv_kind_is_registered_on_any_import_path(first_import):
    """A fresh interpreter that never imports cgcnn.nn.model still sees every built-in kind."""
    import subprocess
    import sys
    from pathlib import Path

    code = f"{first_import}\nimport sys\nprint(sorted(CONV_LAYERS), 'cgcnn.nn.model' in sys.modules)"
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    kinds = out.stdout.split("]")[0]
    for kind in ("'gated'", "'attention'", "'attention-edge'"):
        assert kind in kinds, out.stdout
    if first_import.startswith("from cgcnn.nn "):
        assert out.stdout.strip().endswith("False")  # registered without the model being imported


def test_the_partial_table_is_not_public():
    from cgcnn.nn import conv

    assert not hasattr(conv, "CONV_LAYERS")  # a name that would hold only the kinds imported so far
