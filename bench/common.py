"""Shared set-up of the benchmarks: the study's band-gap split, its graphs, and the reference implementation."""

from __future__ import annotations

import os
import time
import warnings

import numpy as np
import torch

from cgcnn.data.datasets import load_default_dataset
from cgcnn.data.graph import GraphParams
from cgcnn.data.splits import protocol_split
from cgcnn.training.finetune import labelled_split
from cgcnn.training.train import LabelledGraphs

warnings.filterwarnings("ignore")  # pymatgen and torch warnings would drown the timings

THREADS = int(os.environ.get("BENCH_THREADS", "2"))


def protocol_sets(split_seed: int = 0) -> tuple[LabelledGraphs, LabelledGraphs, LabelledGraphs]:
    """The study's 1000/1000/1000 band-gap crystals with their (cached) graphs."""
    ds = load_default_dataset()
    split = protocol_split(ds, split_seed)
    sets, failures = labelled_split(ds, split, ["band_gap"], GraphParams())
    for crystal_id, reason in failures:
        print(f"skipped {crystal_id}: {reason}")
    return sets


def reference_items(data: LabelledGraphs) -> list:
    """The same crystals as cgcnn2's CIFData items: ((atom_fea, nbr_fea, nbr_idx), target, id)."""
    items = []
    full = data.graphs.full
    m = full.max_neighbors
    for k, crystal_id in enumerate(data.ids):
        atoms = data.graphs.atom_index(np.array([k]))
        n = len(atoms)
        edges = (atoms[:, None] * m + np.arange(m)).ravel()
        src = full.edge_src[torch.from_numpy(edges)].view(n, m) - int(atoms[0])
        feats = full.edge_features[torch.from_numpy(edges)].view(n, m, -1)
        items.append(
            (
                (full.node_features[torch.from_numpy(atoms)], feats, src),
                torch.tensor([float(data.targets[k, 0])]),
                crystal_id,
            )
        )
    return items


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


__all__ = ["THREADS", "protocol_sets", "reference_items", "timed"]
