"""Target normalisation: the model learns ``(y - mean) / std`` per target and predictions are mapped back.

The normaliser belongs to a target: a fine-tune to a new property gets a new one from its own training labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Normalizer:
    """Per-target mean and standard deviation (arrays of length ``n_targets``)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, targets: np.ndarray) -> Normalizer:
        """Fit on training labels ``(n,)`` or ``(n, n_targets)``; NaN (missing labels) are ignored."""
        values = np.asarray(targets, dtype=np.float64)
        values = values.reshape(len(values), -1)
        mean = np.nanmean(values, axis=0)
        std = np.nanstd(values, axis=0)
        std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
        return cls(np.nan_to_num(mean), std)

    def norm(self, values: torch.Tensor) -> torch.Tensor:
        """Physical units → normalised units."""
        return (values - self._t(self.mean, values)) / self._t(self.std, values)

    def denorm(self, values: torch.Tensor) -> torch.Tensor:
        """Normalised units → physical units."""
        return values * self._t(self.std, values) + self._t(self.mean, values)

    def to_dict(self) -> dict[str, list[float]]:
        """JSON- and ``weights_only``-safe form."""
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}

    @classmethod
    def from_dict(cls, data: dict) -> Normalizer:
        """Read :meth:`to_dict` output, or the original checkpoints' scalar tensors."""
        mean = np.atleast_1d(np.asarray(torch.as_tensor(data["mean"]), dtype=np.float64))
        std = np.atleast_1d(np.asarray(torch.as_tensor(data["std"]), dtype=np.float64))
        return cls(mean, std)

    @staticmethod
    def _t(array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(array, dtype=like.dtype, device=like.device)
