"""Looking inside a model for one crystal: per-edge weights of every convolution and per-atom contributions.

Atom contributions (viewer): the model's dense head applied to each atom's final feature on its own,
``head(softplus-chain of v_i)`` denormalised, i.e. what the model would predict for a crystal made only of
atoms like this one. The crystal prediction is the head applied to the *mean* of these features, so these
are not an exact additive decomposition, but with a near-linear head their mean is close to the prediction
(:func:`atom_contributions` returns that mean as well so the page can say how close).
"""

from __future__ import annotations

import numpy as np

from cgcnn.errors import CGCNNError

# --------------------------------------------------------------------------------------------------- attention


def _single_batch(predictor, graph):
    from cgcnn.data.graph import collate

    return collate([graph], predictor.graph_params)


def edge_weight_layers(predictor, graph) -> tuple[list[np.ndarray], str]:
    """Per-edge weights of every convolution for one crystal graph.

    Uses ``model.edge_weights(batch)`` (attention coefficients ``(E, H)``, or for gated layers the mean filter
    gate ``(E, 1)``) when the model has it; otherwise the gated convolutions' filter gate, averaged over
    channels. Returns ``([array (E, H) per layer], kind)`` with kind ``attention`` or ``gate``.
    """
    import torch

    model = predictor.model
    model.eval()
    batch = _single_batch(predictor, graph)
    kind = "attention" if model.config.conv != "gated" else "gate"
    with torch.no_grad():
        if hasattr(model, "edge_weights"):
            layers = [np.asarray(w.detach().double().cpu().numpy()) for w in model.edge_weights(batch)]
            layers = [w[:, None] if w.ndim == 1 else w for w in layers]
            return layers, kind
        atom_fea = model.embedding(batch.node_features)
        layers = []
        for conv in model.convs:
            try:
                atom_fea, gate = conv(atom_fea, batch, return_gates=True)
            except TypeError:
                raise CGCNNError(
                    f"this model's convolution ({model.config.conv}) exposes no per-edge weights yet"
                ) from None
            layers.append(gate.double().mean(dim=1, keepdim=True).cpu().numpy())
    return layers, kind


def atom_contributions(predictor, graph) -> tuple[np.ndarray, float, float]:
    """Each atom's contribution: the head applied to that atom's final feature (see the module docstring).

    Returns:
        ``(per-atom values (n,) in the model's units, their mean, the model's prediction)``; first target.
    """
    import torch

    model = predictor.model
    model.eval()
    batch = _single_batch(predictor, graph)
    with torch.no_grad():
        atom_fea = model.atom_features(batch)
        raw = model.head(atom_fea)
        crystal = model(batch)
        if model.config.classification:
            per_atom = raw.exp()[:, 1].double().numpy()
            prediction = float(crystal.exp()[0, 1])
        else:
            per_atom = predictor.normalizer.denorm(raw.double())[:, 0].numpy()
            prediction = float(predictor.normalizer.denorm(crystal.double())[0, 0])
    return per_atom, float(per_atom.mean()), prediction
