"""Magpie-style composition features, from pymatgen's element table: what a structure-blind model sees.

The composition baseline (:mod:`cgcnn.training.baselines`) asks how much of a property the formula alone
explains. Its features follow Magpie (Ward et al. 2016, npj Comput. Mater. 2, 16028; the ``magpie`` preset of
matminer's ``ElementProperty``): element properties summarised over a composition by six statistics weighted
by atomic fraction: minimum, maximum, range, mean, average absolute deviation from the mean, and mode (the
value of the most abundant element; the smallest value on a tie).

matminer is not used: every release so far (0.10.1) requires ``pandas<3``, and this project runs on pandas 3.
So the element properties come from pymatgen's element table (shipped inside pymatgen: nothing is
downloaded). 19 of Magpie's 22 properties are here (114 features); the others are substituted or missing:

- ``GSvolume_pa`` (DFT ground-state volume per atom) becomes the elemental solid's experimental volume per atom
  (pymatgen's molar volume / Avogadro's number);
- ``GSbandgap``, ``GSmagmom`` and ``SpaceGroupNumber`` (of the elemental ground state) are not in pymatgen's
  table and are left out;
- ``CovalentRadius`` is pymatgen's empirical atomic radius (Slater's).

A property the table lacks for an element (the electronegativity of He, Ne, Ar) makes that composition's
statistics of it NaN, which the gradient-boosted trees treat as missing (never as 0).
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Sequence

import numpy as np

#: Avogadro's number (cm³/mol → Å³/atom: × 1e24 / N_A).
_AVOGADRO = 6.02214076e23

#: The element properties, in Magpie's names (see the module docstring for the three that differ).
PROPERTIES: tuple[str, ...] = (
    "Number",
    "MendeleevNumber",
    "AtomicWeight",
    "MeltingT",
    "Column",
    "Row",
    "CovalentRadius",
    "Electronegativity",
    "NsValence",
    "NpValence",
    "NdValence",
    "NfValence",
    "NValence",
    "NsUnfilled",
    "NpUnfilled",
    "NdUnfilled",
    "NfUnfilled",
    "NUnfilled",
    "VolumePerAtom",
)

#: The statistics over a composition, in Magpie's names and order.
STATISTICS: tuple[str, ...] = ("minimum", "maximum", "range", "mean", "avg_dev", "mode")

#: Highest atomic number with a row in the table.
MAX_Z = 103

_CAPACITY = {"s": 2, "p": 6, "d": 10, "f": 14}


def feature_names() -> list[str]:
    """The columns of :func:`composition_features`: ``"<statistic> <property>"`` (matminer's naming)."""
    return [f"MagpieStyle {stat} {prop}" for prop in PROPERTIES for stat in STATISTICS]


def valence_counts(electronic_structure: str) -> dict[str, int]:
    """Electrons outside the noble-gas core by orbital type, from pymatgen's ``[Ar].3d10.4s2.4p1`` notation.

    Magpie counts every electron beyond the core, filled d and f shells included (Ga: 2 s, 1 p, 10 d).
    """
    counts = dict.fromkeys(_CAPACITY, 0)
    for orbital in electronic_structure.split("."):
        match = re.fullmatch(r"\d+([spdf])(\d+)", orbital)
        if match:  # the "[Ar]" core is skipped
            counts[match.group(1)] += int(match.group(2))
    return counts


@functools.cache
def element_table() -> np.ndarray:
    """``(MAX_Z + 1, len(PROPERTIES))`` float64, row ``Z`` the properties of element ``Z`` (NaN: unknown)."""
    from pymatgen.core import Element

    table = np.full((MAX_Z + 1, len(PROPERTIES)), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns for each property it has no value of
        for z in range(1, MAX_Z + 1):
            element = Element.from_Z(z)
            valence = valence_counts(element.electronic_structure)
            unfilled = {k: (_CAPACITY[k] - n if n else 0) for k, n in valence.items()}
            volume = element.molar_volume
            row = {
                "Number": z,
                "MendeleevNumber": element.mendeleev_no,
                "AtomicWeight": float(element.atomic_mass),
                "MeltingT": element.melting_point,
                "Column": element.group,
                "Row": element.row,
                "CovalentRadius": element.atomic_radius,
                "Electronegativity": element.X,
                "NsValence": valence["s"],
                "NpValence": valence["p"],
                "NdValence": valence["d"],
                "NfValence": valence["f"],
                "NValence": sum(valence.values()),
                "NsUnfilled": unfilled["s"],
                "NpUnfilled": unfilled["p"],
                "NdUnfilled": unfilled["d"],
                "NfUnfilled": unfilled["f"],
                "NUnfilled": sum(unfilled.values()),
                "VolumePerAtom": float(volume) * 1e24 / _AVOGADRO if volume is not None else None,
            }
            for k, name in enumerate(PROPERTIES):
                value = row[name]
                table[z, k] = float(value) if value is not None else np.nan
    table.setflags(write=False)
    return table


def composition_vector(atomic_numbers: Sequence[int] | np.ndarray) -> np.ndarray:
    """The features of one crystal from its atoms' atomic numbers (the cell's composition).

    Raises:
        ValueError: an atomic number outside 1..:data:`MAX_Z`, or no atoms.
    """
    numbers = np.asarray(atomic_numbers, dtype=np.int64)
    if numbers.size == 0:
        raise ValueError("a crystal without atoms has no composition")
    if numbers.min() < 1 or numbers.max() > MAX_Z:
        raise ValueError(f"atomic numbers must lie in 1..{MAX_Z}")
    elements, counts = np.unique(numbers, return_counts=True)  # sorted by Z: the mode's tie-break is fixed
    fractions = counts / counts.sum()
    values = element_table()[elements]  # (n_elements, n_properties)
    mean = fractions @ values
    stats = np.stack(
        [
            values.min(axis=0),
            values.max(axis=0),
            values.max(axis=0) - values.min(axis=0),
            mean,
            fractions @ np.abs(values - mean),
            _mode(values, fractions),
        ]
    )  # (n_statistics, n_properties); NaN wherever an element lacks the property
    return stats.T.reshape(-1)


def _mode(values: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Per property, the value of the most abundant element (the smallest such value on a tie, as matminer)."""
    top = fractions == fractions.max()
    return np.min(values[top], axis=0)


def composition_features(crystals: Sequence[Sequence[int] | np.ndarray]) -> np.ndarray:
    """``(n_crystals, len(feature_names()))`` float64: :func:`composition_vector` of each crystal."""
    if not len(crystals):
        return np.zeros((0, len(PROPERTIES) * len(STATISTICS)))
    return np.stack([composition_vector(z) for z in crystals])
