"""How many neighbour pairs a graph build will search, known before the search allocates them.

The neighbour search of :mod:`cgcnn.data.graph` returns every pair of atoms within the cutoff (periodic images
included) before keeping 12 per atom, so its memory and time grow with the number of pairs, not the number of
atoms: a 20,000-atom cell at 2 Å³ per atom passes the atom limit and yet makes ~21 M pairs (2.4 GB, 50 s).
The count is predictable from the cell alone: each atom sees the cell's number density times the volume of
the cutoff sphere, so ``pairs ≈ atoms × (atoms / volume) × 4/3 π r³``. Measured on a 2-core box, a build
costs ~110 bytes and ~0.6 µs per pair, so the default ``CGCNN_MAX_PAIRS`` of 4 M keeps one build under
~500 MB and a few seconds.
"""

from __future__ import annotations

import math

from cgcnn.errors import CrystalInputError


class TooManyPairs(CrystalInputError):
    """A crystal whose neighbour search would exceed ``CGCNN_MAX_PAIRS`` (the message names the estimate)."""


def estimate_pairs(n_atoms: int, volume: float, radius: float) -> float:
    """Neighbour pairs within ``radius`` Å of a periodic cell of ``n_atoms`` atoms in ``volume`` Å³."""
    if volume <= 0:
        return math.inf
    return n_atoms * (n_atoms / volume) * (4.0 / 3.0) * math.pi * radius**3


def check_pair_budget(n_atoms: int, volume: float, radius: float, max_pairs: int | None = None) -> float:
    """The estimate, if it is within the limit (``max_pairs``, default ``CGCNN_MAX_PAIRS``; 0: no limit).

    Raises:
        TooManyPairs: the estimate is over the limit; the caller prefixes the file name.
    """
    if max_pairs is None:
        from cgcnn.settings import current_limits

        max_pairs = current_limits().max_pairs
    pairs = estimate_pairs(n_atoms, volume, radius)
    if max_pairs and pairs > max_pairs:
        raise TooManyPairs(
            f"{n_atoms} atoms at {volume / n_atoms:.3g} Å³ per atom make about {_count(pairs)} neighbour "
            f"pairs within {radius:g} Å, over this server's limit of {_count(max_pairs)} (set by CGCNN_MAX_PAIRS)"
        )
    return pairs


def _count(pairs: float) -> str:
    return f"{pairs / 1e6:.1f} M" if pairs >= 1e5 else f"{pairs:,.0f}"
