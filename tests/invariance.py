"""Reusable invariance checks (in the spirit of e3nn's test helpers).

A crystal's prediction must not depend on how we write the crystal down: the order of its atoms, the choice of
unit cell (a supercell is the same crystal) or where the origin sits. Each helper takes a function
``predict(structure) -> np.ndarray`` and a structure with no tie at the neighbour cut (with a tie, which of the
equidistant neighbours is kept depends on order, see ``cgcnn/graph.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from pymatgen.core import Structure

Predict = Callable[[Structure], np.ndarray]


def assert_permutation_invariant(predict: Predict, structure: Structure, seed: int = 0, atol: float = 1e-4) -> None:
    order = np.random.default_rng(seed).permutation(len(structure))
    permuted = Structure.from_sites([structure[int(i)] for i in order])
    np.testing.assert_allclose(predict(permuted), predict(structure), atol=atol)


def assert_supercell_invariant(predict: Predict, structure: Structure, scale=(2, 1, 1), atol: float = 1e-4) -> None:
    np.testing.assert_allclose(predict(structure * scale), predict(structure), atol=atol)


def assert_translation_invariant(predict: Predict, structure: Structure, shift=(0.13, 0.27, 0.41), atol=1e-4) -> None:
    moved = structure.copy()
    moved.translate_sites(list(range(len(moved))), shift, frac_coords=True, to_unit_cell=True)
    np.testing.assert_allclose(predict(moved), predict(structure), atol=atol)
