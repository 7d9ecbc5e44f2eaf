"""Applicability domain: how far a crystal lies from the crystals a model was trained on.

A model's pooled crystal features (the mean over atoms after the last convolution: its last representation
before the target-specific head) are z-scored with the training crystals' mean and standard deviation; a
crystal's distance is the mean Euclidean distance to its ``k`` = 5 nearest training crystals (scikit-learn's
``NearestNeighbors``), divided by the 95th percentile of the same distance over the validation block. So
``distance > 1`` (``far``) is true for 5% of crystals drawn like the training data, by construction, and for
more of the crystals unlike it. An ensemble averages its members' ratios.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Nearest training crystals averaged over, and the validation percentile that defines ``distance`` = 1.
NEIGHBOURS, PERCENTILE = 5, 95


@dataclass
class Domain:
    """What a model needs beside its weights to say how far a crystal is from its training crystals.

    Attributes:
        mean, scale: the training crystals' feature mean and standard deviation (z-scoring).
        train: the training crystals' z-scored features ``(n_train, n_features)``, float16 (stored so; the
            reference is measured against these values, so the rounding cannot shift ``far``).
        reference: the 95th percentile of the validation crystals' mean distance (the unit of ``distance``).
    """

    mean: np.ndarray
    scale: np.ndarray
    train: np.ndarray
    reference: float

    def _mean_distance(self, features: np.ndarray) -> np.ndarray:
        from sklearn.neighbors import NearestNeighbors

        z = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        k = min(NEIGHBOURS, len(self.train))
        distances, _ = NearestNeighbors(n_neighbors=k).fit(self.train.astype(np.float32)).kneighbors(z)
        return distances.mean(axis=1)

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Each crystal's mean distance to its 5 nearest training crystals over the validation 95th percentile."""
        return self._mean_distance(features) / self.reference


def fit_domain(train_features: np.ndarray, val_features: np.ndarray) -> Domain:
    """The domain of a model from its training and validation crystals' pooled features.

    Raises:
        ValueError: fewer training crystals than neighbours, or too few validation crystals for a percentile.
    """
    train_features = np.asarray(train_features, dtype=np.float64)
    if len(train_features) <= NEIGHBOURS or len(val_features) < 20:
        raise ValueError("too few training or validation crystals for an applicability domain")
    mean = train_features.mean(axis=0)
    scale = train_features.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)  # a feature constant over the training set carries no distance
    train = ((train_features - mean) / scale).astype(np.float16)  # stored beside the model: half the bytes
    domain = Domain(mean, scale, train, 1.0)
    reference = float(np.percentile(domain._mean_distance(val_features), PERCENTILE))
    domain.reference = reference if reference > 0 else 1.0
    return domain
