"""Labelled uploads on the Predict page: the same scores as ``python -m cgcnn evaluate``, as tables.

A zip of a CGCNN folder (``id_prop.csv`` with labels + CIFs) is read once through the capped parser pool
(:func:`cgcnn.app.launch.save_upload`, as the Fine-tune page's own-data upload) and every chosen model is
scored with :func:`cgcnn.analysis.evaluation.evaluate_model`, the function behind the CLI, so the page and
``evaluate --json`` give the same numbers on the same zip.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from cgcnn.analysis.evaluation import EvaluationResult, evaluate_model
from cgcnn.errors import CGCNNError
from cgcnn.nn.predictor import NON_NEGATIVE_TARGETS, Ensemble, Predictor

#: Metrics of a regression, in the order the page shows them (``mae_by_quintile`` becomes five columns).
REGRESSION_COLUMNS = ["n", "mae", "rmse", "r2", "spearman", "bias", "failures"]
CLASSIFICATION_COLUMNS = ["n", "accuracy", "roc_auc", "failures"]


def labelled_zip(files: list[tuple[str, bytes]]) -> tuple[str, bytes] | None:
    """The first uploaded zip holding an ``id_prop.csv`` (a labelled CGCNN folder), or None.

    Only the zip's directory is read here; the members are read by the capped parser.
    """
    for name, data in files:
        if not name.lower().endswith(".zip"):
            continue
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                if any(PurePosixPath(n).name == "id_prop.csv" for n in archive.namelist()):
                    return name, data
        except zipfile.BadZipFile:
            continue  # the prediction table names it
    return None


def needs_target(models: dict[str, Predictor | Ensemble]) -> list[str]:
    """Targets to choose from when a chosen model predicts several (empty: every model has one output)."""
    targets: dict[str, None] = {}
    for model in models.values():
        if len(model.targets) > 1:
            targets.update(dict.fromkeys(model.targets))
    return list(targets)


@dataclass
class Scores:
    """Every chosen model scored on one labelled upload.

    Attributes:
        source: the zip's name.
        label_columns: the label columns of its ``id_prop.csv``.
        results: model name → its :class:`~cgcnn.analysis.evaluation.EvaluationResult`.
        errors: one line per model that could not be scored and per crystal that failed (by name).
    """

    source: str
    label_columns: list[str]
    results: dict[str, EvaluationResult] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def score_upload(
    store: Any,
    name: str,
    data: bytes,
    models: dict[str, Predictor | Ensemble],
    target: str | None = None,
    max_atoms: int | None = None,
) -> Scores:
    """Read a labelled zip and score every model on it (:func:`evaluate_model`, as ``evaluate``).

    Args:
        store: the run store (the upload is kept under its home, parsed once).
        name: the uploaded zip's file name.
        data: its bytes.
        models: model name → model or seed ensemble.
        target: for a multi-output model, the output the labels hold (ignored by single-output models).
        max_atoms: refuse larger crystals (default: the server's ``CGCNN_MAX_ATOMS``).

    Raises:
        CGCNNError: the zip is not a readable CGCNN folder (one line, from the reader).
    """
    from cgcnn.app.launch import save_upload
    from cgcnn.settings import atom_limit

    _, dataset = save_upload(store, data, name)
    limit = atom_limit(max_atoms)  # as evaluate's --max-atoms
    scores = Scores(name, list(dataset.labels.columns))
    seen: set[str] = set()
    for model_name, model in models.items():
        wanted = target if len(model.targets) > 1 else None
        try:
            result = evaluate_model(model, dataset, target=wanted, max_atoms=limit)
        except CGCNNError as exc:
            scores.errors.append(f"{model_name}: {exc}")
            continue
        scores.results[model_name] = result
        for crystal_id, reason in result.failures:
            line = reason if reason.startswith(crystal_id) else f"{crystal_id}: {reason}"
            if line not in seen:
                seen.add(line)
                scores.errors.append(f"{name}: {line}")
    return scores


def metrics_frame(results: dict[str, EvaluationResult]) -> pd.DataFrame:
    """The ``evaluate`` metrics with one column per model and one row per metric (narrow enough for a projector).

    Rows: ``n``, ``mae``, ``rmse``, ``r2``, ``spearman``, ``bias``, ``failures`` (a classifier: ``accuracy``
    and ``roc_auc``), ``mae_clamped`` (negative predictions set to 0; only where a target cannot be negative),
    ``mae Q1`` … ``mae Q5`` (MAE in each fifth of the crystals sorted by label, lowest labels first) and, for
    an ensemble, ``spearman |error| ~ std`` (does a larger spread mean a larger error?). NaN where a metric
    does not apply to a model.
    """
    columns: dict[str, dict[str, float]] = {}
    for model_name, result in results.items():
        m = result.metrics
        keys = CLASSIFICATION_COLUMNS if "accuracy" in m else REGRESSION_COLUMNS
        column = {k: m.get(k) for k in keys}
        if "accuracy" not in m:
            if result.target in NON_NEGATIVE_TARGETS:
                column["mae_clamped"] = m.get("mae_clamped")
            for k, value in enumerate(m.get("mae_by_quintile") or [], start=1):
                column[f"mae Q{k}"] = value
        if "spearman_abs_error_std" in m:
            column["spearman |error| ~ std"] = m["spearman_abs_error_std"]
        columns[model_name] = {k: float("nan") if v is None else float(v) for k, v in column.items()}
    order = list(dict.fromkeys(k for column in columns.values() for k in column))
    frame = pd.DataFrame(columns, index=order, dtype=float)
    return frame.rename_axis("metric").reset_index()


def targets_line(results: dict[str, EvaluationResult]) -> str:
    """``band-gap: band_gap · own-combined: e_above_hull``: which output of each model was scored."""
    return " · ".join(f"{name}: {result.target}" for name, result in results.items())


def best_first(results: dict[str, EvaluationResult]) -> list[str]:
    """Model names, lowest MAE first (a classifier: highest accuracy first): the parity plot opens on the best."""

    def key(name: str) -> float:
        m = results[name].metrics
        value = -m["accuracy"] if "accuracy" in m else m.get("mae")
        return float("inf") if value is None or np.isnan(value) else float(value)

    return sorted(results, key=key)


def calibration_frame(result: EvaluationResult) -> pd.DataFrame:
    """An ensemble's calibration table (crystals binned by its std), empty for one model."""
    return pd.DataFrame(result.metrics.get("calibration") or [])


def parity_frame(result: EvaluationResult) -> pd.DataFrame:
    """``crystal_id``, ``y_true``, ``y_pred`` (and ``y_std`` for an ensemble) for the parity figure.

    See :func:`cgcnn.analysis.figures.parity_figure`.
    """
    frame = pd.DataFrame(
        {"crystal_id": result.ids, "y_true": np.asarray(result.y_true), "y_pred": np.asarray(result.y_pred)}
    )
    if result.std is not None:
        frame["y_std"] = np.asarray(result.std)
    return frame
