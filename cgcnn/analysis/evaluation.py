"""Score a model (or a seed ensemble) on any labelled crystals: the numbers behind ``python -m cgcnn evaluate``.

A card's MAE is measured on a test split drawn from the data the model was trained on; crystals from
elsewhere are often several times harder. This module predicts a labelled :class:`CrystalDataset` (a CGCNN
folder or zip), names every crystal it could not use, and hands the rest to :mod:`cgcnn.analysis.metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cgcnn.analysis.metrics import (
    INTERVAL_KEYS,
    classification_metrics,
    interval_metrics,
    regression_metrics,
    uncertainty_metrics,
)
from cgcnn.data.datasets import CrystalDataset
from cgcnn.data.graph import BuildOptions, CrystalGraph, structure_to_graph
from cgcnn.errors import CGCNNError
from cgcnn.nn.predictor import NON_NEGATIVE_TARGETS, Ensemble, Predictor, assess


@dataclass
class EvaluationResult:
    """Predictions of one target against labels, the metrics, and what could not be scored.

    Attributes:
        target: the model output scored.
        label_column: the dataset column it was compared with.
        ids, y_true, y_pred: the scored crystals (model units).
        std: the ensemble's spread per crystal (None for one model).
        members: ``(n_members, n)`` each member's predictions (None for one model).
        failures: ``(id, reason)`` of crystals that could not be read or featurised.
        metrics: :func:`~cgcnn.analysis.metrics.regression_metrics` (or classification) plus ``failures``
            (a count), the :func:`~cgcnn.analysis.metrics.interval_metrics` (null where not applicable), and
            for an ensemble ``spearman_abs_error_std`` and ``calibration``.
        intervals: confidence → ``(lower, upper)`` per crystal (None: no calibration for this target).
        distance: each crystal's distance from the training data (None: no applicability domain).
        note: one line when the model's calibration exists but could not be used ('' otherwise).
    """

    target: str
    label_column: str
    ids: list[str]
    y_true: np.ndarray
    y_pred: np.ndarray
    std: np.ndarray | None = None
    members: np.ndarray | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    intervals: dict[float, tuple[np.ndarray, np.ndarray]] | None = None
    distance: np.ndarray | None = None
    note: str = ""


def choose_target(model_targets: list[str], target: str | None) -> str:
    """The output to score: ``target`` if given (it must be one of the model's), else the model's only one.

    Raises:
        CGCNNError: a multi-output model without ``target``, or a target the model does not predict.
    """
    if target is None:
        if len(model_targets) > 1:
            raise CGCNNError(
                f"the model predicts several targets ({', '.join(model_targets)}): choose one with --target"
            )
        return model_targets[0]
    if target not in model_targets:
        raise CGCNNError(f"the model does not predict {target!r}; it predicts {', '.join(model_targets)}")
    return target


def label_column(dataset: CrystalDataset, target: str) -> str:
    """The dataset column holding ``target``'s labels: the column of that name, else the first one.

    A CGCNN folder's ``id_prop.csv`` has no header, so its first value column (``target``) is the label.
    """
    columns = list(dataset.labels.columns)
    return target if target in columns else columns[0]


def evaluate_model(
    model: Predictor | Ensemble,
    dataset: CrystalDataset,
    target: str | None = None,
    clamp: bool = False,
    max_atoms: int | None = None,
) -> EvaluationResult:
    """Predict every labelled crystal of ``dataset`` and score one target.

    Args:
        model: one model or a seed ensemble.
        dataset: labelled crystals, labels in the model's units (log10 GPa for the moduli; 0/1 for a
            classifier's positive class).
        target: the output to score (required for a multi-output model).
        clamp: clamp negative predictions of non-negative targets at 0 (see
            :func:`cgcnn.nn.predictor.clamp_nonnegative`).
        max_atoms: refuse crystals with more atoms than this (default:
            :data:`~cgcnn.data.graph.DEFAULT_MAX_ATOMS`).

    Raises:
        CGCNNError: see :func:`choose_target`; or no crystal could be scored.
    """
    target = choose_target(model.targets, target)
    column = label_column(dataset, target)
    column_index = model.targets.index(target)
    params = model.graph_params
    options = BuildOptions() if max_atoms is None else BuildOptions(max_atoms=max_atoms)
    failures = list(dataset.rejected)
    ids, labels, graphs = [], [], []
    values = dataset.labels[column]
    for cid in dataset.ids.tolist():
        label = float(values[cid])
        if not np.isfinite(label):
            failures.append((cid, f"no {column!r} label"))
            continue
        try:
            graph: CrystalGraph = structure_to_graph(dataset.structure(cid), params, options=options)
        except CGCNNError as exc:
            failures.append((cid, str(exc)))
            continue
        ids.append(cid)
        labels.append(label)
        graphs.append(graph)
    if not graphs:
        detail = f"; first problem: {failures[0][0]}: {failures[0][1]}" if failures else ""
        raise CGCNNError(f"no crystal could be scored{detail}")
    y_true = np.asarray(labels, dtype=np.float64)
    std = members = None
    if isinstance(model, Ensemble):
        mean, spread, all_members = model.predict_spread(graphs, clamp=clamp)  # ddof 1, as predict
        y_pred, std, members = mean[:, column_index], spread[:, column_index], all_members[:, :, column_index]
    else:
        y_pred = model.predict_graphs(graphs, clamp=clamp)[:, column_index]
    classifier = (model.members[0] if isinstance(model, Ensemble) else model).classification
    if classifier:
        metrics = classification_metrics(y_true, y_pred)
    else:
        metrics = regression_metrics(y_true, y_pred, non_negative=target in NON_NEGATIVE_TARGETS)
    metrics["failures"] = len(failures)
    intervals = distance = None
    note = ""
    if classifier:
        metrics.update(dict.fromkeys(INTERVAL_KEYS))  # null: a probability gets no interval or distance here
    else:
        found = assess(model, graphs, y_pred, std, clamp=clamp)
        note = found.note
        if found.lower is not None and found.upper is not None and column_index == 0:
            intervals = {c: (found.lower[c], found.upper[c]) for c in found.lower}
        distance = found.distance
        metrics.update(interval_metrics(y_true, y_pred, intervals, distance, std))
    if std is not None:
        metrics.update(uncertainty_metrics(y_true, y_pred, std))
    result = EvaluationResult(target, column, ids, y_true, y_pred, std, members, failures, metrics)
    result.intervals, result.distance, result.note = intervals, distance, note
    return result


def target_units(model: Predictor | Ensemble, target: str) -> str:
    """Units of one of the model's outputs, from its card (a multi-output card lists them comma-separated)."""
    card = model.members[0].card if isinstance(model, Ensemble) else model.card
    if ", " in card.units and target in card.targets:
        parts = card.units.split(", ")
        return parts[card.targets.index(target)] if len(parts) == len(card.targets) else card.units
    return card.units


def parity_png(result: EvaluationResult, path: Path | str, units: str = "", title: str = "") -> Path:
    """Write a parity plot (prediction against label, with the y = x line) as a PNG; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    try:
        if result.std is not None:
            ax.errorbar(result.y_true, result.y_pred, yerr=result.std, fmt="o", ms=3, alpha=0.6, elinewidth=0.8)
        else:
            ax.scatter(result.y_true, result.y_pred, s=10, alpha=0.6)
        lo = float(min(result.y_true.min(), result.y_pred.min()))
        hi = float(max(result.y_true.max(), result.y_pred.max()))
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1)
        unit = f" ({units})" if units else ""
        ax.set_xlabel(f"label{unit}")
        ax.set_ylabel(f"prediction{unit}")
        mae = result.metrics.get("mae")
        ax.set_title(
            title or (f"{result.target}: MAE {mae:.4g}, n = {len(result.ids)}" if mae is not None else result.target)
        )
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out)
    finally:
        plt.close(fig)
    return out
