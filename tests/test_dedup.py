"""Structure-level duplicates: the same crystal under two ids is found, different ones are not."""

from __future__ import annotations

import pandas as pd
from pymatgen.core import Lattice, Structure

from cgcnn.data.datasets import dataset_from_structures
from cgcnn.data.dedup import duplicate_groups, twins


def _rock_salt(a: float) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_equivalent_cells_under_other_ids_are_one_group():
    conventional = _rock_salt(5.64)
    primitive = conventional.get_primitive_structure()  # 2 atoms instead of 8: same crystal
    shifted = conventional.copy()
    shifted.translate_sites(list(range(len(shifted))), [0.1, 0.2, 0.3])  # another origin: same crystal
    cesium_chloride = Structure(Lattice.cubic(3.3), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])  # same formula
    iron = Structure(Lattice.cubic(2.87), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    entries = [("a", conventional), ("b", cesium_chloride), ("c", primitive), ("d", iron), ("e", shifted)]
    labels = pd.DataFrame({"target": [1.0] * 5}, index=[e[0] for e in entries])
    ds = dataset_from_structures(entries, labels, "test", "test", "tiny")
    groups = duplicate_groups(ds)
    assert groups == [["a", "c", "e"]]
    assert duplicate_groups(ds, ids=["a", "b", "d"]) == []
    assert twins(groups, ["c"]) == {"a", "e"} and twins(groups, ["d"]) == set()
