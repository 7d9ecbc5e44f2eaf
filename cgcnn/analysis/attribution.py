r"""Attribution: how much each edge and each atom moves a model's prediction for one crystal.

Attention coefficients say how an atom *mixes* its neighbours' messages; they are not an explanation of the
prediction (a heavily weighted message can still change little). These two attributions are:

- **occlusion**: remove the message of one edge (or every message an atom sends) in every convolution and
  predict again; the attribution is :math:`f(x) - f(x \setminus e)`, in the model's units. Exact for what it
  asks, one forward pass per edge (all occluded copies go through the model as one batch).
- **gradient × input**: the derivative of the prediction with respect to a factor :math:`s_e` on each edge's
  message, at :math:`s_e = 1` (for a multiplicative factor this is gradient × input); per atom, the gradient
  with respect to its input features times those features, summed. One backward pass; a first-order
  estimate of occlusion.

Both work for every layer kind (gated and attention), through ``GraphBatch.edge_scale``. Fill-in edges (added
where an atom has fewer than ``M`` neighbours in the cutoff) get attribution 0 for attention models, which
ignore them; the gated layer does use them, so theirs is measured too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from cgcnn.data.graph import CrystalGraph, GraphBatch, collate
from cgcnn.nn.predictor import Predictor


@dataclass
class Attribution:
    """Attributions of one crystal's prediction (first output, in the model's units).

    Attributes:
        prediction: the model's prediction for the crystal.
        edge_occlusion: ``(E,)`` prediction − prediction without that edge's message.
        atom_occlusion: ``(N,)`` prediction − prediction without any message the atom sends.
        edge_gradient: ``(E,)`` d prediction / d (factor on the edge's message), at 1.
        atom_gradient: ``(N,)`` sum over input features of gradient × feature.
    """

    prediction: float
    edge_occlusion: np.ndarray
    atom_occlusion: np.ndarray
    edge_gradient: np.ndarray
    atom_gradient: np.ndarray


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


def attribute(predictor: Predictor, graph: CrystalGraph) -> Attribution:
    """Occlusion and gradient × input attributions of ``predictor``'s prediction for one crystal graph."""
    model = predictor.model
    was_training = model.training
    model.eval()  # batch norms use their running statistics, as for a prediction
    try:
        n_edges = len(graph.edge_src)
        with torch.no_grad():
            full = float(_predict(predictor, _batch(predictor, [graph], None))[0])
        keep_all = torch.ones(n_edges, dtype=torch.float32)
        edge_masks = keep_all.repeat(n_edges, 1).fill_diagonal_(0.0)
        edge_occ = full - _occlude(predictor, graph, edge_masks)
        src = torch.as_tensor(np.asarray(graph.edge_src), dtype=torch.long)
        atom_masks = (src.unsqueeze(0) != torch.arange(graph.n_atoms).unsqueeze(1)).float()  # (N, E)
        atom_occ = full - _occlude(predictor, graph, atom_masks)

        edge_grad, atom_grad = _gradients(predictor, graph)
    finally:
        model.train(was_training)
    return Attribution(full, edge_occ, atom_occ, edge_grad, atom_grad)


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
    scale = torch.ones(len(graph.edge_src), dtype=torch.float32).requires_grad_(True)
    batch = _batch(predictor, [graph], scale)
    features = batch.node_features.clone().requires_grad_(True)
    batch = dataclasses.replace(batch, node_features=features)
    _predict(predictor, batch).sum().backward()
    return scale.grad.numpy().copy(), (features.grad * features).sum(dim=1).detach().numpy()


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


def explain_report(predictor: Predictor, structure, top: int = 10) -> dict:
    """Plain-data report of one crystal: prediction, per-atom and top per-edge attributions, attention agreement.

    Edges are listed by ``|occlusion|``, largest first, each with its atoms, distance, occlusion, gradient ×
    input and (for attention models) the mean attention weight over layers and heads. ``agreement`` is the
    Spearman correlation between attention and ``|occlusion|`` over real edges (None for gated models).
    """
    from cgcnn.analysis.explain import edge_weight_layers

    graph = predictor.graph(structure)
    result = attribute(predictor, graph)
    layers, kind = edge_weight_layers(predictor, graph)
    attention = np.mean([w.mean(axis=1) for w in layers], axis=0) if kind == "attention" else None
    symbols = [site.specie.symbol for site in structure]
    order = np.argsort(-np.abs(result.edge_occlusion), kind="stable")
    order = [int(e) for e in order if graph.edge_mask[e]][:top]
    agreement = attention_agreement(layers, result.edge_occlusion, graph.edge_mask) if attention is not None else None
    return {
        "prediction": result.prediction,
        "units": predictor.card.units,
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
