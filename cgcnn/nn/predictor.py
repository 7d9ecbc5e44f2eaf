"""A loaded model ready to predict: network, normaliser, graph parameters and card together."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Structure

from cgcnn.data.crystal_io import read_structure
from cgcnn.data.graph import CrystalGraph, GraphParams, collate, structure_to_graph
from cgcnn.errors import CGCNNError
from cgcnn.nn.cards import ModelCard
from cgcnn.nn.model import CrystalGraphConvNet
from cgcnn.nn.normalizer import Normalizer


@dataclass
class Predictor:
    """Everything needed to turn crystals into predictions in physical units.

    Attributes:
        model: the network (kept in eval mode by :meth:`predict_graphs`).
        normalizer: maps normalised outputs back to physical units.
        graph_params: how this model's graphs must be built (radius, neighbours, Gaussians).
        card: the model card.
    """

    model: CrystalGraphConvNet
    normalizer: Normalizer
    graph_params: GraphParams
    card: ModelCard

    @property
    def targets(self) -> list[str]:
        """Output names in order (a classifier has one: its positive class probability)."""
        return list(self.model.config.targets)

    def graph(self, structure: Structure) -> CrystalGraph:
        """Build the graph of ``structure`` with this model's graph parameters."""
        return structure_to_graph(structure, self.graph_params)

    @torch.no_grad()
    def predict_graphs(self, graphs: list[CrystalGraph], batch_size: int = 256) -> np.ndarray:
        """Predict ``(n_crystals, n_targets)`` values in the model's units.

        A classifier gives the probability of its positive class; a regressor its denormalised targets.
        """
        self.model.eval()
        device = next(self.model.parameters()).device
        out = []
        for start in range(0, len(graphs), batch_size):
            batch = collate(graphs[start : start + batch_size], self.graph_params).to(device)
            raw = self.model(batch)
            if self.model.config.classification:
                out.append(raw.exp()[:, 1:2])
            else:
                out.append(self.normalizer.denorm(raw.double()))
        if not out:
            return np.zeros((0, len(self.targets)))
        return torch.cat(out).double().cpu().numpy()

    def predict_structures(self, structures: list[Structure], batch_size: int = 256) -> np.ndarray:
        """Build graphs and predict (see :meth:`predict_graphs`)."""
        return self.predict_graphs([self.graph(s) for s in structures], batch_size)


@dataclass
class FilePrediction:
    """Prediction for one crystal file (``values`` is None and ``error`` set when it failed)."""

    path: Path
    values: np.ndarray | None = None
    formula: str = ""
    error: str = ""
    note: str = ""


def crystal_files(paths: list[str | Path]) -> list[Path]:
    """Expand the command line: a file stays, a folder gives its ``*.cif`` (directly inside, sorted)."""
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted(p.glob("*.cif")) if p.is_dir() else [p])
    return files


def predict_files(
    predictor: Predictor,
    paths: list[Path],
    widen_radius: bool = False,
    max_atoms: int | None = None,
    read: Callable[[Path], Structure] = read_structure,
) -> list[FilePrediction]:
    """Predict every file; a bad file gets its error message and the others are still predicted.

    Args:
        predictor: the model.
        paths: crystal files.
        widen_radius: search past the cutoff for atoms without a neighbour.
        max_atoms: refuse crystals with more atoms (default: the model's graph parameters).
        read: how a file becomes a structure (the CLI passes one that parses in a capped worker process).
    """
    params = dataclasses.replace(predictor.graph_params, widen_radius=widen_radius)
    if max_atoms is not None:
        params = dataclasses.replace(params, max_atoms=int(max_atoms))
    results, graphs, good = [], [], []
    for path in paths:
        result = FilePrediction(path=path)
        try:
            structure = read(path)
            graph = structure_to_graph(structure, params)
        except CGCNNError as exc:
            msg = str(exc)
            result.error = msg if msg.startswith(path.name) else f"{path.name}: {msg}"
        else:
            result.formula = structure.composition.reduced_formula
            if graph.radius > params.radius:
                result.note = f"{path.name}: cutoff widened from {params.radius:g} to {graph.radius:g} Å"
            graphs.append(graph)
            good.append(result)
        results.append(result)
    if graphs:
        for result, values in zip(good, predictor.predict_graphs(graphs), strict=True):
            result.values = values
    return results
