r"""Attribution: how much each edge and each atom moves a model's prediction for one crystal.

Attention coefficients say how an atom *mixes* its neighbours' messages; they are not an explanation of the
prediction (a heavily weighted message can still change little). These two attributions are:

- **occlusion**: remove one edge (or every edge an atom sends) in every convolution and predict again; the
  attribution is :math:`f(x) - f(x \setminus e)`, in the model's units. Exact for what it asks, one forward pass
  per edge (all occluded copies go through the model as one batch). What "remove" means is
  :func:`cgcnn.nn.removal.remove_edges`'s mode: ``delete`` (default; the edge is gone and an attention layer
  renormalises over the remaining neighbours) or ``zero`` (its message × 0 after the softmax, which to first order
  is attention × message, so it agrees with attention by construction). Gated layers: the two are the same.
- **gradient × input**: the derivative of the prediction with respect to a factor :math:`s_e` on each edge's
  message, at :math:`s_e = 1` (for a multiplicative factor this is gradient × input); per atom, the gradient
  with respect to its input features times those features, summed. One backward pass; a first-order
  estimate of ``zero`` occlusion (the factor scales the message after the softmax, whatever the mode).

Both work for every layer kind (gated and attention), through ``GraphBatch.edge_scale`` and ``edge_mask``.
Fill-in edges (added where an atom has fewer than ``M`` neighbours in the cutoff) get attribution 0 for
attention models, which ignore them; the gated layer does use them, so theirs is measured too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from cgcnn.data.graph import CrystalGraph, GraphBatch, collate
from cgcnn.nn.predictor import Predictor
from cgcnn.nn.removal import remove_edges


@dataclass
class Attribution:
    """Attributions of one crystal's prediction (first output, in the model's units).

    Attributes:
        prediction: the model's prediction for the crystal.
        edge_occlusion: ``(E,)`` prediction − prediction without that edge (removed as ``occlusion`` says).
        atom_occlusion: ``(N,)`` prediction − prediction without any edge the atom sends.
        edge_gradient: ``(E,)`` d prediction / d (factor on the edge's message), at 1.
        atom_gradient: ``(N,)`` sum over input features of gradient × feature.
    """

    prediction: float
    edge_occlusion: np.ndarray
    atom_occlusion: np.ndarray
    edge_gradient: np.ndarray
    atom_gradient: np.ndarray
    occlusion: str = "delete"


def _batch(predictor: Predictor, graphs: list[CrystalGraph], edge_scale: torch.Tensor | None) -> GraphBatch:
    batch = collate(graphs, predictor.graph_params)
    return dataclasses.replace(batch, edge_scale=edge_scale)


def _predict(predictor: Predictor, batch: GraphBatch) -> torch.Tensor:
    """First output in the model's units, per crystal of the batch."""
    return predictor.to_units(predictor.model(batch))[:, 0]


def _occlude(predictor: Predictor, graph: CrystalGraph, masks: torch.Tensor, chunk: int = 64) -> np.ndarray:
    """Predictions with each row of ``masks`` ``(K, E)`` as the edges' factors (copies batched ``chunk`` at a time)."""
    out = []
    with torch.no_grad():
        for start in range(0, len(masks), chunk):
            part = masks[start : start + chunk]
            batch = _batch(predictor, [graph] * len(part), part.reshape(-1))
            out.append(_predict(predictor, batch))
    return torch.cat(out).numpy() if out else np.zeros(0)


def predict_without(
    predictor: Predictor, graph: CrystalGraph, removed: np.ndarray | torch.Tensor, mode: str = "delete", chunk: int = 64
) -> np.ndarray:
    """Predictions (first output, model units) of copies of ``graph``, each without the edges of one row of ``removed``.

    Args:
        predictor: the model (call in eval mode).
        graph: the crystal.
        removed: ``(K, E)`` bool, True for the edges each copy lacks.
        mode: ``delete`` or ``zero`` (see :func:`cgcnn.nn.removal.remove_edges`).
        chunk: copies per forward pass (the ``K`` copies go through the model ``chunk`` at a time).
    """
    removed = torch.as_tensor(np.asarray(removed), dtype=torch.bool)
    out = []
    with torch.no_grad():
        for start in range(0, len(removed), chunk):
            part = removed[start : start + chunk]
            batch = remove_edges(collate([graph] * len(part), predictor.graph_params), part.reshape(-1), mode)
            out.append(_predict(predictor, batch))
    return torch.cat(out).double().numpy() if out else np.zeros(0)


def edge_occlusion(predictor: Predictor, graph: CrystalGraph, mode: str = "delete", edges=None) -> np.ndarray:
    """Prediction minus the prediction without each edge of ``edges`` (default: every edge), one copy per edge.

    Call in eval mode. ``mode``: ``delete`` or ``zero`` (see :func:`cgcnn.nn.removal.remove_edges`).
    """
    n_edges = len(graph.edge_src)
    edges = np.arange(n_edges) if edges is None else np.asarray(edges)
    with torch.no_grad():
        full = float(_predict(predictor, _batch(predictor, [graph], None))[0])
    removed = np.zeros((len(edges), n_edges), dtype=bool)
    removed[np.arange(len(edges)), edges] = True
    return full - predict_without(predictor, graph, removed, mode)


def edge_gradient(predictor: Predictor, graph: CrystalGraph) -> np.ndarray:
    """The derivative of the prediction by a factor on each edge's message, at 1: gradient × input, ``(E,)``."""
    scale = torch.ones(len(graph.edge_src), dtype=torch.float32, requires_grad=True)
    _predict(predictor, _batch(predictor, [graph], scale)).sum().backward()
    return scale.grad.double().numpy().copy()


def attribute(predictor: Predictor, graph: CrystalGraph, occlusion: str = "delete") -> Attribution:
    """Occlusion and gradient × input attributions of ``predictor``'s prediction for one crystal graph.

    ``occlusion`` is how an edge is removed: ``delete`` (default) or ``zero`` (see the module docstring).
    """
    model = predictor.model
    was_training = model.training
    model.eval()  # batch norms use their running statistics, as for a prediction
    try:
        with torch.no_grad():
            full = float(_predict(predictor, _batch(predictor, [graph], None))[0])
        edge_occ = edge_occlusion(predictor, graph, occlusion)
        src = np.asarray(graph.edge_src)
        sent = src[None, :] == np.arange(graph.n_atoms)[:, None]  # (N, E): the edges each atom sends
        atom_occ = full - predict_without(predictor, graph, sent, occlusion)
        edge_grad = edge_gradient(predictor, graph)
        batch = _batch(predictor, [graph], None)
        features = batch.node_features.clone().requires_grad_(True)
        _predict(predictor, dataclasses.replace(batch, node_features=features)).sum().backward()
        atom_grad = (features.grad * features).sum(dim=1).detach().numpy()
    finally:
        model.train(was_training)
    return Attribution(full, edge_occ, atom_occ, edge_grad, atom_grad, occlusion)


def gradient_attribution(predictor: Predictor, graph: CrystalGraph) -> tuple[np.ndarray, np.ndarray]:
    """Only gradient × input, ``(per edge, per atom)``: one backward pass, for crystals too large for occlusion."""
    model = predictor.model
    was_training = model.training
    model.eval()
    try:
        return _gradients(predictor, graph)
    finally:
        model.train(was_training)


def _gradients(predictor: Predictor, graph: CrystalGraph) -> tuple[np.ndarray, np.ndarray]:
    edge_grad = edge_gradient(predictor, graph)
    batch = _batch(predictor, [graph], None)
    features = batch.node_features.clone().requires_grad_(True)
    _predict(predictor, dataclasses.replace(batch, node_features=features)).sum().backward()
    return edge_grad, (features.grad * features).sum(dim=1).detach().numpy()


def attention_agreement(edge_weights: list[np.ndarray], attribution: np.ndarray, real: np.ndarray) -> float:
    """Spearman correlation between an edge's attention (mean over layers and heads) and ``|attribution|``.

    Over real edges only (``real``: the fill-in mask is False on fill-ins). 1: attention ranks edges as the
    attribution does; about 0: attention says nothing about which edges move the prediction. NaN when either
    side is constant.
    """
    weights = np.mean([w.mean(axis=1) for w in edge_weights], axis=0)[real]
    target = np.abs(attribution)[real]
    if np.ptp(weights) == 0 or np.ptp(target) == 0:
        return float("nan")
    return float(stats.spearmanr(weights, target).statistic)


def explain_report(predictor: Predictor, structure, top: int = 10, occlusion: str = "delete") -> dict:
    """Plain-data report of one crystal: prediction, per-atom and top per-edge attributions, attention agreement.

    Edges are listed by ``|occlusion|``, largest first, each with its atoms, distance, occlusion, gradient ×
    input and (for attention models) the mean attention weight over layers and heads. ``agreement`` is the
    Spearman correlation between attention and ``|occlusion|`` over real edges (None for gated models).
    ``occlusion`` is how an edge is removed (``delete`` or ``zero``, see the module docstring).
    """
    from cgcnn.analysis.explain import edge_weight_layers

    graph = predictor.graph(structure)
    result = attribute(predictor, graph, occlusion)
    layers, kind = edge_weight_layers(predictor, graph)
    attention = np.mean([w.mean(axis=1) for w in layers], axis=0) if kind == "attention" else None
    symbols = [site.specie.symbol for site in structure]
    order = np.argsort(-np.abs(result.edge_occlusion), kind="stable")
    order = [int(e) for e in order if graph.edge_mask[e]][:top]
    agreement = attention_agreement(layers, result.edge_occlusion, graph.edge_mask) if attention is not None else None
    return {
        "prediction": result.prediction,
        "units": predictor.card.units,
        "occlusion": occlusion,
        "atoms": [
            {
                "index": i,
                "element": symbols[i],
                "occlusion": float(result.atom_occlusion[i]),
                "gradient_x_input": float(result.atom_gradient[i]),
            }
            for i in range(graph.n_atoms)
        ],
        "top_edges": [
            {
                "edge": e,
                "from": f"{symbols[int(graph.edge_src[e])]}{int(graph.edge_src[e])}",
                "to": f"{symbols[int(graph.edge_dst[e])]}{int(graph.edge_dst[e])}",
                "distance": float(graph.distances[e]),
                "occlusion": float(result.edge_occlusion[e]),
                "gradient_x_input": float(result.edge_gradient[e]),
                "attention": None if attention is None else float(attention[e]),
            }
            for e in order
        ],
        "attention_vs_occlusion_spearman": None if agreement is None or np.isnan(agreement) else agreement,
    }
