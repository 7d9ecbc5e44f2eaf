"""A loaded checkpoint must be able to predict: broken but finite weights are refused at load, not printed as nan.

:mod:`cgcnn.nn.checkpoint` already refuses weights that are not finite. Weights can be finite and still
broken: a batch norm's ``running_var`` below zero makes ``sqrt`` of a negative, weights of 3e38 overflow in the
first matrix product; ``predict`` then printed ``nan`` with exit code 0. So every load also checks that no
running variance is negative and predicts one tiny fixed crystal (rock salt, 2 atoms): a value that is not
finite refuses the checkpoint with a message, which the CLI turns into exit code 2.
"""

from __future__ import annotations

import numpy as np
import torch

from cgcnn.errors import CheckpointError

#: The probe crystal: rock salt NaCl, primitive fcc cell of a = 5.64 Å (lattice rows in Å).
PROBE_LATTICE = np.array([[0.0, 2.82, 2.82], [2.82, 0.0, 2.82], [2.82, 2.82, 0.0]])
PROBE_FRAC = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
PROBE_Z = np.array([11, 17])


def check_predictor(predictor, name: str) -> None:
    """Refuse a predictor whose batch-norm variances are negative or whose probe prediction is not finite.

    Raises:
        CheckpointError: naming the file, the tensor or the probe, and what is wrong.
    """
    for key, tensor in predictor.model.state_dict().items():
        if key.endswith("running_var") and bool((tensor < 0).any()):
            raise CheckpointError(
                f"{name}: batch-norm variance {key} has negative values ({float(tensor.min()):.3g}): the "
                "checkpoint is damaged and would predict no number"
            )
    from cgcnn.data.graph import graph_from_arrays

    graph = graph_from_arrays(PROBE_LATTICE, PROBE_FRAC, PROBE_Z, predictor.graph_params)
    with torch.no_grad():
        values = predictor.predict_graphs([graph])
    if not np.isfinite(values).all():
        raise CheckpointError(
            f"{name}: the model predicts no finite number for rock salt (a probe crystal): its weights are "
            "finite but broken (overflow), so no prediction would be a number"
        )
