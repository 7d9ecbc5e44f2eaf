"""A finished run calibrates itself: split-conformal scores and the applicability domain from its own blocks.

Separate from :mod:`cgcnn.training.calibrate` (which reproduces an own model's split and so needs the
pretraining code): a run already holds its training and validation blocks, collated for training, so it
calibrates from them without rebuilding a graph. What this adds to a run is one forward pass over its training
and validation crystals.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cgcnn.data.graph import GraphSet
from cgcnn.errors import CGCNNError
from cgcnn.nn.conformal import fit_calibration
from cgcnn.nn.domain import fit_domain
from cgcnn.nn.model import mean_pool
from cgcnn.nn.predictor import Predictor
from cgcnn.nn.uncertainty import Uncertainty, file_sha256


def set_outputs(model: Predictor, graphs: GraphSet, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``(first-target predictions, pooled features)`` of a collated set, in one forward pass per batch.

    What a finished run calibrates with: its blocks are already collated for training (no graph is rebuilt).
    """
    net = model.model
    was_training = net.training
    net.eval()
    predictions, features = [], []
    with torch.no_grad():
        for lo in range(0, len(graphs), batch_size):
            batch = graphs.batch(np.arange(lo, min(lo + batch_size, len(graphs))))
            pooled = mean_pool(net.atom_features(batch), batch)
            predictions.append(model.to_units(net.head(pooled))[:, 0].cpu().numpy())
            features.append(pooled.double().cpu().numpy())
    net.train(was_training)
    width = net.config.atom_fea_len
    return (np.concatenate(predictions) if predictions else np.zeros(0)), (
        np.concatenate(features) if features else np.zeros((0, width))
    )


def calibrate_run(
    model: Predictor, checkpoint: str | Path, train: GraphSet, val: GraphSet, val_labels: np.ndarray
) -> tuple[Uncertainty, np.ndarray]:
    """A finished run's calibration (as :func:`calibrate_model`) and validation predictions, from collated blocks.

    The run store keeps the validation predictions with ``split='val'``.

    Raises:
        CGCNNError: blocks too small to calibrate (a run with fewer than 20 validation crystals gets none).
    """
    val_pred, val_features = set_outputs(model, val)
    _, train_features = set_outputs(model, train)
    try:
        calibration = fit_calibration(model.targets[0], val_labels, val_pred)
        domain = fit_domain(train_features, val_features)
    except ValueError as exc:
        raise CGCNNError(f"{model.card.name}: {exc}") from None
    return Uncertainty([file_sha256(checkpoint)], calibration, domain), val_pred
