"""How good a model is on labelled crystals: regression and classification metrics, and ensemble calibration.

Pure functions of NumPy arrays, so ``evaluate`` (CLI), the Predict page and the tests compute the same numbers.
A model card's MAE is measured on its own test split; these functions measure it on anyone's labelled data,
where the error may be several times larger (crystals unlike the training set).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

#: Number of label bins of ``mae_by_quintile``.
QUINTILES = 5


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray, non_negative: bool = False) -> dict[str, Any]:
    """MAE and friends of predictions against labels (both in the model's units).

    Args:
        y_true: labels.
        y_pred: predictions.
        non_negative: the target cannot be negative (a band gap), so clamping its predictions at 0 is a
            correction; for any other target (a formation energy) ``mae_clamped`` would be meaningless and is NaN.

    Returns:
        ``n``; ``mae``; ``rmse``; ``r2`` (1 - SSE/SST; NaN for fewer than 2 labels or constant labels);
        ``spearman`` (rank correlation; NaN when undefined); ``bias`` (mean prediction - label: positive means
        the model over-predicts); ``mae_by_quintile`` (MAE within each fifth of the crystals sorted by label,
        lowest labels first: where on the scale the model fails); ``mae_clamped`` (MAE after setting negative
        predictions to 0: what :func:`cgcnn.nn.predictor.clamp_nonnegative` would give for a band gap; NaN
        unless ``non_negative``).
    """
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError("labels and predictions differ in length")
    n = len(y_true)
    nan = float("nan")
    if n == 0:
        return {
            "n": 0,
            "mae": nan,
            "rmse": nan,
            "r2": nan,
            "spearman": nan,
            "bias": nan,
            "mae_by_quintile": [nan] * QUINTILES,
            "mae_clamped": nan,
        }
    err = y_pred - y_true
    sst = float(np.sum((y_true - y_true.mean()) ** 2))
    r2 = 1.0 - float(np.sum(err**2)) / sst if n >= 2 and sst > 0 else nan
    order = np.argsort(y_true, kind="stable")
    quintiles = [float(np.mean(np.abs(err[part]))) if len(part) else nan for part in np.array_split(order, QUINTILES)]
    return {
        "n": n,
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "r2": r2,
        "spearman": spearman(y_true, y_pred),
        "bias": float(np.mean(err)),
        "mae_by_quintile": quintiles,
        "mae_clamped": float(np.mean(np.abs(np.maximum(y_pred, 0.0) - y_true))) if non_negative else nan,
    }


def classification_metrics(y_true: np.ndarray, probability: np.ndarray) -> dict[str, Any]:
    """Accuracy (threshold 0.5) and ROC AUC of positive-class probabilities against 0/1 labels.

    ROC AUC is the Mann-Whitney statistic (ties count one half); NaN when only one class is present.
    """
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    probability = np.asarray(probability, dtype=np.float64).ravel()
    if not np.isin(y_true, (0.0, 1.0)).all():
        raise ValueError("classification labels must be 0 or 1")
    n = len(y_true)
    positives, negatives = probability[y_true == 1], probability[y_true == 0]
    if len(positives) and len(negatives):
        ranks = stats.rankdata(np.concatenate([positives, negatives]))
        u = ranks[: len(positives)].sum() - len(positives) * (len(positives) + 1) / 2
        auc = float(u / (len(positives) * len(negatives)))
    else:
        auc = float("nan")
    accuracy = float(np.mean((probability >= 0.5) == (y_true == 1))) if n else float("nan")
    return {"n": n, "accuracy": accuracy, "roc_auc": auc}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (NaN with fewer than 3 points or a constant input)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)


def calibration_table(y_true: np.ndarray, mean: np.ndarray, std: np.ndarray, bins: int = 5) -> list[dict[str, Any]]:
    """How well an ensemble's spread predicts its error: crystals binned by ``std`` (equal counts).

    Each row: ``n``, ``std`` (mean ensemble std in the bin), ``rmse`` and ``mae`` of the ensemble mean, and
    ``within_1std`` (fraction of crystals whose error is at most one std; about 0.68 if errors were Gaussian
    with that std). A useful spread has ``rmse`` rising with ``std``; seed ensembles are usually
    over-confident (``rmse`` > ``std``), since every member saw the same training crystals.
    """
    y_true, mean, std = (np.asarray(v, dtype=np.float64).ravel() for v in (y_true, mean, std))
    err = mean - y_true
    rows = []
    for part in np.array_split(np.argsort(std, kind="stable"), bins):
        if len(part) == 0:
            continue
        rows.append(
            {
                "n": len(part),
                "std": float(std[part].mean()),
                "rmse": float(np.sqrt(np.mean(err[part] ** 2))),
                "mae": float(np.mean(np.abs(err[part]))),
                "within_1std": float(np.mean(np.abs(err[part]) <= std[part])),
            }
        )
    return rows


def uncertainty_metrics(y_true: np.ndarray, mean: np.ndarray, std: np.ndarray) -> dict[str, Any]:
    """``spearman_abs_error_std`` (does a larger spread mean a larger error?) and the :func:`calibration_table`."""
    err = np.abs(np.asarray(mean, dtype=np.float64) - np.asarray(y_true, dtype=np.float64))
    return {
        "spearman_abs_error_std": spearman(err, np.asarray(std, dtype=np.float64)),
        "calibration": calibration_table(y_true, mean, std),
    }


#: Fraction of the crystals of an evaluation, the largest absolute errors, that the error AUROCs try to find.
LARGE_ERROR_FRACTION = 0.10
#: The keys :func:`interval_metrics` always returns (null where the model has no interval or domain).
INTERVAL_KEYS = (
    "coverage_68",
    "coverage_90",
    "coverage_95",
    "interval_width_90",
    "interval_width_90_std",
    "far_fraction",
    "mae_near",
    "mae_far",
    "error_auroc_std",
    "error_auroc_distance",
)


def error_auroc(abs_error: np.ndarray, score: np.ndarray) -> float:
    """How well ``score`` finds the largest errors: ROC AUC with the 10% largest ``abs_error`` as positives.

    0.5 is chance, 1 ranks every large error above every other crystal. NaN with fewer than 10 crystals.
    """
    abs_error, score = np.asarray(abs_error, dtype=np.float64), np.asarray(score, dtype=np.float64)
    n = len(abs_error)
    n_pos = int(np.ceil(LARGE_ERROR_FRACTION * n))
    if n < 10 or n_pos >= n:
        return float("nan")
    labels = np.zeros(n)
    labels[np.argsort(-abs_error, kind="stable")[:n_pos]] = 1.0
    return classification_metrics(labels, score)["roc_auc"]


def interval_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    intervals: dict[float, tuple[np.ndarray, np.ndarray]] | None,
    distance: np.ndarray | None,
    std: np.ndarray | None,
) -> dict[str, Any]:
    """Coverage and width of calibrated intervals, and how well the spread and the distance flag large errors.

    Args:
        y_true: labels (of the target the intervals are for).
        y_pred: predictions.
        intervals: confidence → ``(lower, upper)`` (None: the model has no calibration).
        distance: each crystal's distance from the training data (None: no applicability domain).
        std: an ensemble's spread (None: one model).

    Returns:
        Every key of :data:`INTERVAL_KEYS`; NaN where not applicable. ``coverage_C``: fraction of labels inside
        the interval at confidence C; ``interval_width_90``: its mean width (``_std``: how much the width varies
        across crystals: 0 for one model's plain intervals); ``far_fraction``: fraction with ``distance > 1``;
        ``mae_near``/``mae_far``: the MAE of either side; ``error_auroc_std``/``error_auroc_distance``: see
        :func:`error_auroc`.
    """
    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    err = np.abs(y_pred - y_true)
    nan = float("nan")
    out: dict[str, Any] = dict.fromkeys(INTERVAL_KEYS, nan)
    if intervals:
        for confidence, (lower, upper) in intervals.items():
            out[f"coverage_{round(confidence * 100)}"] = float(np.mean((lower <= y_true) & (y_true <= upper)))
        lower, upper = intervals[0.90]
        out["interval_width_90"] = float(np.mean(upper - lower))
        out["interval_width_90_std"] = float(np.std(upper - lower))
    if distance is not None:
        far = np.asarray(distance) > 1.0
        out["far_fraction"] = float(np.mean(far))
        out["mae_near"] = float(np.mean(err[~far])) if (~far).any() else nan
        out["mae_far"] = float(np.mean(err[far])) if far.any() else nan
        out["error_auroc_distance"] = error_auroc(err, distance)
    if std is not None:
        out["error_auroc_std"] = error_auroc(err, std)
    return out


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None (JSON has no NaN), recursively."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
