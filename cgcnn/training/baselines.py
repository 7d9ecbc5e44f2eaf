"""Baselines, the yardsticks every network is read against: the training mean, and the composition alone.

A test MAE means little on its own: 0.55 eV on band gaps is good or bad only next to what needs no crystal
graph at all. Two runs answer that, on the very split and test crystals of the networks:

- ``mean`` predicts the training labels' mean for every crystal: the error of knowing nothing about a crystal.
  A model that does not beat it has learnt nothing.
- ``composition`` is gradient-boosted trees (scikit-learn's ``HistGradientBoostingRegressor``) on Magpie-style
  element-property statistics of the formula (:mod:`cgcnn.data.composition`; Ward et al. 2016, npj Comput.
  Mater. 2, 16028), early-stopped on the run's own validation block. It knows the chemistry but not the
  structure: what a graph network adds beyond it is what the structure buys.

They are specs like any other (``pretrained`` = ``mean`` or ``composition``, freeze 0), go through the same
queue and worker (:func:`cgcnn.training.finetune.execute_run`) and are stored as runs with their test
predictions, so Compare, the sweeps, ``predict --model run:ID`` and ``evaluate`` treat them as models. They are
deterministic: a sweep runs them once per split seed, not per model seed.
"""

from __future__ import annotations

import numpy as np

from cgcnn.data.graph import CrystalGraph
from cgcnn.errors import CGCNNError
from cgcnn.nn.baseline import BaselineModel, graph_features
from cgcnn.training.transfer import SCRATCH

#: The baselines, as ``FinetuneSpec.pretrained`` names them.
BASELINES: tuple[str, ...] = ("mean", "composition")

#: Names that mean "no pretrained network": no file, saved run or zoo model may be called so.
RESERVED_NAMES: tuple[str, ...] = (SCRATCH, *BASELINES)

#: The fewest labelled training crystals the composition baseline fits on.
MIN_LABELS = 10


def is_baseline(pretrained: str | None) -> bool:
    """Whether a spec's ``pretrained`` names a baseline rather than a network."""
    return pretrained in BASELINES


def check_baseline_request(pretrained: str, freeze: int, warm_start: bool = False) -> None:
    """What can be checked of a baseline spec before its data is loaded.

    Raises:
        CGCNNError: a freeze depth or warm start (a baseline has no layers).
    """
    if freeze != 0:
        raise CGCNNError(f"--pretrained {pretrained} is a baseline with no layers to freeze: use freeze 0")
    if warm_start:
        raise CGCNNError(f"--pretrained {pretrained} is a baseline with no layers to keep: drop --warm-start")


def check_baseline_labels(pretrained: str, target: str, labels: np.ndarray) -> None:
    """Whether the composition baseline can learn ``target`` from these training labels.

    Raises:
        CGCNNError: for ``composition``, fewer than :data:`MIN_LABELS` labelled crystals, or a class label
            (only the values 0 and 1): the trees are a regressor.
    """
    if pretrained != "composition":
        return
    values = np.asarray(labels, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) < MIN_LABELS:
        raise CGCNNError(
            f"--pretrained composition needs at least {MIN_LABELS} labelled training crystals; {target!r} has "
            f"{len(values)} in this split (use --pretrained mean, or a larger --train)"
        )
    if set(np.unique(values).tolist()) == {0.0, 1.0}:
        raise CGCNNError(
            f"--pretrained composition is a regressor and {target!r} is a class label (only 0 and 1): choose "
            f"--pretrained mean or none, or another target"
        )


def fit_baseline(
    pretrained: str,
    target: str,
    train: tuple[list[str], list[CrystalGraph], np.ndarray],
    val: tuple[list[str], list[CrystalGraph], np.ndarray],
) -> BaselineModel:
    """Fit a baseline on ``train`` = ``(ids, graphs, labels)``, early-stopping on ``val`` (same form).

    Crystals without a label are left out of the fit (the mean and the trees need one per crystal).

    Raises:
        CGCNNError: see :func:`check_baseline_labels`.
    """
    check_baseline_labels(pretrained, target, train[2])

    def block(ids: list[str], graphs: list[CrystalGraph], labels: np.ndarray):
        labels = np.asarray(labels, dtype=np.float64).reshape(-1)
        keep = np.flatnonzero(np.isfinite(labels))
        kept = [graphs[k] for k in keep]
        features = graph_features(kept) if pretrained == "composition" else np.zeros((len(kept), 0))
        return [ids[k] for k in keep], features, labels[keep]

    return BaselineModel.fit(pretrained, target, block(*train), block(*val))
