"""Calibrated prediction intervals: split conformal prediction on a model's own validation block.

A seed ensemble's spread is not an error bar (it under-covers, and under chemistry shift it shrinks while the
error grows), so intervals are calibrated instead: the absolute validation errors of one model (plain split
conformal), or of an ensemble divided by its spread (normalised split conformal: the interval is wider where
the members disagree), are sorted once; an interval at any confidence is a quantile of them. The quantile is
taken by a maintained library (crepes' ``ConformalRegressor``), not by hand. Coverage holds on average over
crystals drawn like the validation block; the validation block also chose the best epoch, so it is slightly
optimistic, and under chemistry shift it does not hold (see ``docs/results/uncertainty/``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The confidences every calibration serves (``evaluate`` reports the coverage of each).
CONFIDENCES = (0.68, 0.90, 0.95)
PLAIN, NORMALISED = "split-conformal", "normalised split-conformal (ensemble std)"


@dataclass
class Calibration:
    """The sorted nonconformity scores of one calibration, enough for an interval at any confidence.

    Attributes:
        target: the output the intervals are for (an ensemble's or model's first target).
        method: :data:`PLAIN` (scores are absolute errors) or :data:`NORMALISED` (absolute errors divided by
            the ensemble's std).
        scores: the scores of the validation crystals, sorted ascending.
    """

    target: str
    method: str
    scores: np.ndarray

    @property
    def normalised(self) -> bool:
        """Whether interval widths scale with the ensemble's std."""
        return self.method == NORMALISED

    def _regressor(self):
        from crepes import ConformalRegressor

        # crepes keeps |residual| / sigma; refitting on the stored scores with unit sigmas restores exactly them
        ones = np.ones(len(self.scores)) if self.normalised else None
        return ConformalRegressor().fit(self.scores, sigmas=ones)

    def intervals(
        self, predictions: np.ndarray, std: np.ndarray | None, confidence: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(lower, upper)`` of each prediction at ``confidence`` (a normalised calibration needs ``std``).

        Raises:
            ValueError: a normalised calibration without ``std``.
        """
        predictions = np.asarray(predictions, dtype=np.float64).ravel()
        sigmas = None
        if self.normalised:
            if std is None:
                raise ValueError("a normalised calibration needs the ensemble's std")
            # a crystal on which every member agrees exactly still gets a (tiny) interval, never a point
            sigmas = np.maximum(np.asarray(std, dtype=np.float64).ravel(), 1e-12)
        bounds = self._regressor().predict_int(predictions, sigmas=sigmas, confidence=confidence)
        return bounds[:, 0], bounds[:, 1]

    def summary(self) -> dict:
        """What the zoo shows: method, validation size and the score quantile of each confidence."""
        quantiles = {}
        for confidence in CONFIDENCES:
            _, high = self.intervals(np.zeros(1), np.ones(1) if self.normalised else None, confidence)
            quantiles[f"{round(confidence * 100)}"] = float(high[0])
        return {"method": self.method, "target": self.target, "n_val": len(self.scores), "half_width": quantiles}


def fit_calibration(target: str, y_true: np.ndarray, y_pred: np.ndarray, std: np.ndarray | None = None) -> Calibration:
    """Calibrate on validation crystals: plain (one model) or normalised by ``std`` (an ensemble).

    Raises:
        ValueError: fewer than 20 crystals (a 95% interval needs at least 19 scores).
    """
    from crepes import ConformalRegressor

    residuals = np.asarray(y_true, dtype=np.float64).ravel() - np.asarray(y_pred, dtype=np.float64).ravel()
    if len(residuals) < 20:
        raise ValueError(f"{len(residuals)} validation crystals are too few to calibrate (need 20)")
    sigmas = None if std is None else np.maximum(np.asarray(std, dtype=np.float64).ravel(), 1e-12)
    regressor = ConformalRegressor().fit(residuals, sigmas=sigmas)
    return Calibration(target, NORMALISED if std is not None else PLAIN, np.sort(regressor.alphas))
