"""Structures per second of the featuriser: this project vs the reference (cgcnn2), same crystals, one run.

Paths compared on the same real crystals of the default dataset (written as CIF files first):
- reference, original algorithm: cgcnn2's ``CIFData._load_item`` (pymatgen ``get_all_neighbors``), from CIF;
- reference, default fast path: ``CIFData._load_item_fast`` (``get_neighbor_list``), from CIF;
- ours from CIF: parse + ``structure_to_graph``;
- ours from parsed structures: ``structure_to_graph`` on pymatgen Structures already in memory;
- ours from compact arrays: ``graph_from_arrays`` (lattice, Z, fractional coordinates, as the dataset stores them).
Every graph is checked equal to the reference's (neighbour indices and features) before timing is reported.
Usage: python bench/featurize.py [--n 300]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as `python bench/NAME.py`: import from the repository root, as `python -m bench.NAME` does
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench.common import timed  # noqa: F401  (silences warnings)
from cgcnn.data.crystal_io import read_structure
from cgcnn.data.datasets import load_default_dataset
from cgcnn.data.folders import export_cgcnn_folder
from cgcnn.data.graph import GraphParams, gaussian_expand, graph_from_arrays, structure_to_graph


def per_second(n: int, fn) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def main() -> None:
    from cgcnn2.data import CIFData

    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    n = parser.parse_args().n
    ds = load_default_dataset()
    ids = list(ds.with_target("band_gap"))[:n]
    folder = Path(tempfile.mkdtemp()) / "data"
    export_cgcnn_folder(ds, ids, "band_gap", folder)
    ref = CIFData(str(folder), cache_size=0)
    files = [folder / f"{i}.cif" for i in ids]
    structures = [read_structure(f) for f in files]
    arrays = [ds.arrays(i) for i in ids]

    # identical graphs first
    params = GraphParams()
    for k, s in enumerate(structures):
        (atom_fea, nbr_fea, nbr_idx), _, cif_id = ref._load_item_fast(k)
        g = structure_to_graph(s, GraphParams())
        assert cif_id == ids[k]
        np.testing.assert_array_equal(g.edge_src.reshape(nbr_idx.shape), nbr_idx.numpy())
        np.testing.assert_allclose(gaussian_expand(g.distances, params).reshape(nbr_fea.shape), nbr_fea, atol=1e-6)
        np.testing.assert_array_equal(g.node_features, atom_fea.numpy())

    rates = {
        "reference, original algorithm (from CIF)": per_second(n, lambda: [ref._load_item(k) for k in range(n)]),
        "reference, fast path (from CIF)": per_second(n, lambda: [ref._load_item_fast(k) for k in range(n)]),
        "ours, from CIF": per_second(n, lambda: [structure_to_graph(read_structure(f), GraphParams()) for f in files]),
        "ours, from parsed structures": per_second(
            n, lambda: [structure_to_graph(s, GraphParams()) for s in structures]
        ),
        "ours, from compact arrays": per_second(
            n, lambda: [graph_from_arrays(a[0], a[2], a[1], GraphParams()) for a in arrays]
        ),
        "(pymatgen CIF parsing alone)": per_second(n, lambda: [read_structure(f) for f in files]),
    }
    original = rates["reference, original algorithm (from CIF)"]
    fast = rates["reference, fast path (from CIF)"]
    print(f"{n} real crystals (default dataset, band-gap set); graphs identical to the reference's")
    print(f"{'path':44} {'structures/s':>12}  {'vs original':>11}  {'vs fast path':>12}")
    for name, rate in rates.items():
        print(f"{name:44} {rate:12.0f}  {rate / original:10.1f}x  {rate / fast:11.1f}x")


if __name__ == "__main__":
    main()
