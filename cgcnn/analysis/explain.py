"""Looking inside a model for one crystal: per-edge weights of every convolution and per-atom contributions.

Atom contributions (viewer): the model's dense head applied to each atom's final feature on its own,
``head(softplus-chain of v_i)`` denormalised, i.e. what the model would predict for a crystal made only of
atoms like this one. The crystal prediction is the head applied to the *mean* of these features, so these
are not an exact additive decomposition, but with a near-linear head their mean is close to the prediction
(:func:`atom_contributions` returns that mean as well so the page can say how close).
"""

from __future__ import annotations

import numpy as np

# --------------------------------------------------------------------------------------------------- attention


def _single_batch(predictor, graph):
    from cgcnn.data.graph import collate

    return collate([graph], predictor.graph_params)


def edge_weight_layers(predictor, graph) -> tuple[list[np.ndarray], str]:
    """Per-edge weights of every convolution for one crystal graph (see ``CrystalGraphConvNet.edge_weights``).

    Returns:
        ``([array (E, H) per layer], kind)``: attention coefficients (kind ``attention``), or the gated layers'
        filter gate averaged over channels, ``(E, 1)`` (kind ``gate``).
    """
    model = predictor.model
    model.eval()
    layers = model.edge_weights(_single_batch(predictor, graph))
    return [w.double().cpu().numpy() for w in layers], "attention" if model.config.conv != "gated" else "gate"


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
        per_atom = predictor.to_units(raw)[:, 0].numpy()
        prediction = float(predictor.to_units(crystal)[0, 0])
    return per_atom, float(per_atom.mean()), prediction
