"""Invariance checks for models: a crystal's prediction must not depend on how the crystal is written down.

The same crystal can be written with its atoms in another order, as a supercell, with another origin or turned
in space. A CGCNN sees none of that (its graph holds only neighbour distances), so every layer must give the
same prediction for all of these, up to rounding. A new convolution that uses positions, directions or atom
indices can break this silently; these checks catch it.

How someone adding a layer uses it::

    from cgcnn.nn.conv import register_conv
    from cgcnn.testing import assert_invariant

    @register_conv("my-layer")
    class MyConv(torch.nn.Module): ...

    model = CrystalGraphConvNet(ModelConfig(conv="my-layer")).double().eval()  # float64: a sharp check
    predictor = Predictor(model, Normalizer.fit(np.zeros(1)), GraphParams(), card)
    for structure in crystals:  # e.g. the CIFs of tests/data
        assert_invariant(predictor, structure)

:func:`check_invariant` returns one :class:`InvarianceResult` per transform instead of raising, for a report.
The tolerance follows the model's floating-point type (:data:`TOLERANCES`); a float64 model is fed float64
edge features, so its check is about a million times sharper than a float32 one.

Ties: when the cut at ``M`` neighbours falls inside a shell of equidistant neighbours (rock salt, perovskites),
which of them the graph keeps depends on the order the neighbour search lists them in, so writing the crystal
another way may legitimately change the prediction. Such a crystal is reported with status ``"tie"``, not as a
failure (see :func:`cgcnn.data.graph.neighbour_tie`); check layers on crystals without one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pymatgen.core import Lattice, Structure

from cgcnn.data.graph import DEFAULT_MAX_ATOMS, BuildOptions, GraphParams, collate, neighbour_tie
from cgcnn.nn.predictor import Predictor

#: The transforms, in the order they are checked.
TRANSFORMS = ("permutation", "supercell", "translation", "rotation")
#: Default ``(rtol, atol)`` of a prediction by the model's floating-point type. float32 sums atoms and edges in
#: another order after a transform, so it differs in the 7th digit (3e-7 eV at most on tests/data); float64 in the
#: 15th.
TOLERANCES = {torch.float32: (1e-5, 1e-5), torch.float64: (1e-9, 1e-10)}
#: How a supercell is made (twice along the first lattice vector) and how far the origin moves (fractional).
SUPERCELL, SHIFT = (2, 1, 1), (0.13, 0.27, 0.41)

PredictFn = Callable[[Structure], np.ndarray]


@dataclass(frozen=True)
class InvarianceResult:
    """The outcome of one transform.

    Attributes:
        transform: one of :data:`TRANSFORMS`.
        status: ``"ok"``, ``"failed"`` (outside the tolerance, or a non-finite prediction) or ``"tie"`` (the
            crystal has a neighbour tie at the cut, so a difference is allowed; never a failure).
        max_abs_diff: largest absolute difference from the original crystal's prediction.
        rtol: relative tolerance used.
        atol: absolute tolerance used.
        detail: what was compared, or why the status is not ``"ok"``.
    """

    transform: str
    status: str
    max_abs_diff: float
    rtol: float
    atol: float
    detail: str = ""

    @property
    def passed(self) -> bool:
        """True unless the status is ``"failed"`` (a tie passes: it is flagged, not failed)."""
        return self.status != "failed"


def check_invariant(
    predictor: Predictor | PredictFn,
    structure: Structure,
    transforms: Sequence[str] = TRANSFORMS,
    rtol: float | None = None,
    atol: float | None = None,
    *,
    params: GraphParams | None = None,
    seed: int = 0,
) -> list[InvarianceResult]:
    """Predict ``structure`` and each transformed copy, and compare.

    Args:
        predictor: a :class:`~cgcnn.nn.predictor.Predictor` (its model's dtype sets the tolerance), or any
            function ``structure -> (n_targets,) or (1, n_targets) array`` (float32 tolerances).
        structure: an ordered crystal the model accepts.
        transforms: a subset of :data:`TRANSFORMS`.
        rtol: relative tolerance (default: :data:`TOLERANCES` for the model's dtype).
        atol: absolute tolerance (default: as ``rtol``).
        params: graph definition for the tie check of a plain function (default: the predictor's, or the
            original CGCNN's).
        seed: seed of the random permutation and rotation.

    Returns:
        one :class:`InvarianceResult` per transform, in the order given.

    Raises:
        ValueError: an unknown transform.
    """
    unknown = [t for t in transforms if t not in TRANSFORMS]
    if unknown:
        raise ValueError(f"unknown transform(s) {unknown}; known: {', '.join(TRANSFORMS)}")
    predict, dtype = _predict_function(predictor)
    default_rtol, default_atol = TOLERANCES.get(dtype, TOLERANCES[torch.float32])
    rtol = default_rtol if rtol is None else float(rtol)
    atol = default_atol if atol is None else float(atol)
    graph_params = params or (predictor.graph_params if isinstance(predictor, Predictor) else GraphParams())
    tie = neighbour_tie(structure, graph_params)
    reference = predict(structure)
    results = []
    for name in transforms:
        other = predict(_TRANSFORMS[name](structure, seed))
        finite = bool(np.isfinite(reference).all() and np.isfinite(other).all())
        diff = float(np.max(np.abs(other - reference))) if finite and reference.size else 0.0
        close = finite and bool(np.allclose(other, reference, rtol=rtol, atol=atol))
        if tie is not None:
            status, detail = "tie", tie.describe(graph_params.max_neighbors)
        elif not finite:
            status, detail = "failed", "a prediction is NaN or infinite"
        elif not close:
            status, detail = "failed", f"predictions differ by up to {diff:.3g} (rtol {rtol:g}, atol {atol:g})"
        else:
            status, detail = "ok", f"within rtol {rtol:g}, atol {atol:g}"
        results.append(InvarianceResult(name, status, diff, rtol, atol, detail))
    return results


def assert_invariant(
    predictor: Predictor | PredictFn,
    structure: Structure,
    transforms: Sequence[str] = TRANSFORMS,
    rtol: float | None = None,
    atol: float | None = None,
    *,
    params: GraphParams | None = None,
    seed: int = 0,
) -> list[InvarianceResult]:
    """:func:`check_invariant`, raising if any transform failed (a tie is reported, not raised).

    Returns:
        the results (so a test can also look at the ties).

    Raises:
        AssertionError: naming the crystal and every failed transform with its difference and tolerance.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this helper's
    results = check_invariant(predictor, structure, transforms, rtol, atol, params=params, seed=seed)
    failed = [r for r in results if not r.passed]
    if failed:
        lines = "\n".join(f"  {r.transform}: {r.detail}" for r in failed)
        raise AssertionError(f"{structure.composition.reduced_formula}: the prediction is not invariant\n{lines}")
    return results


# --------------------------------------------------------------------------------------------------- transforms


def permuted(structure: Structure, seed: int = 0) -> Structure:
    """The same crystal with its atoms in a random order."""
    order = np.random.default_rng(seed).permutation(len(structure))
    return Structure.from_sites([structure[int(i)] for i in order])


def supercell(structure: Structure, seed: int = 0) -> Structure:
    """The same crystal in a :data:`SUPERCELL` cell (``seed`` is unused: one supercell is enough)."""
    return structure * SUPERCELL


def translated(structure: Structure, seed: int = 0) -> Structure:
    """The same crystal with its origin moved by :data:`SHIFT` (atoms wrapped back into the cell)."""
    moved = structure.copy()
    moved.translate_sites(list(range(len(moved))), SHIFT, frac_coords=True, to_unit_cell=True)
    return moved


def rotated(structure: Structure, seed: int = 0) -> Structure:
    """The same crystal turned by a random proper rotation (lattice vectors and atoms together)."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    rotation = q * np.sign(np.diag(r))  # a uniformly random orthogonal matrix
    if np.linalg.det(rotation) < 0:
        rotation[:, 0] = -rotation[:, 0]  # proper: no mirror
    lattice = Lattice(structure.lattice.matrix @ rotation.T)
    return Structure(lattice, structure.species, structure.frac_coords)


_TRANSFORMS: dict[str, Callable[[Structure, int], Structure]] = {
    "permutation": permuted,
    "supercell": supercell,
    "translation": translated,
    "rotation": rotated,
}


def _predict_function(predictor: Predictor | PredictFn) -> tuple[PredictFn, torch.dtype]:
    """A function ``structure -> (n_targets,) float64`` and the dtype whose tolerance applies."""
    if not isinstance(predictor, Predictor):
        return (lambda s: np.asarray(predictor(s), dtype=np.float64).reshape(-1)), torch.float32
    model = predictor.model
    parameter = next(model.parameters())
    dtype, device = parameter.dtype, parameter.device

    @torch.no_grad()
    def predict(structure: Structure) -> np.ndarray:
        # The caller chose this crystal: its supercell may pass the default atom limit.
        options = BuildOptions(max_atoms=max(DEFAULT_MAX_ATOMS, len(structure)))
        graph = predictor.graph(structure, options)
        batch = collate([graph], predictor.graph_params)
        batch.node_features = batch.node_features.to(dtype)
        batch.edge_features = _edge_features(graph.distances, predictor.graph_params, dtype)
        model.eval()
        return predictor.to_units(model(batch.to(device))).double().cpu().numpy().reshape(-1)

    return predict, dtype


def _edge_features(distances: np.ndarray, params: GraphParams, dtype: torch.dtype) -> torch.Tensor:
    """Gaussian edge features computed in ``dtype`` (float32 ones would cap a float64 check at float32)."""
    centers = params.gaussian_centers()
    d = np.asarray(distances, dtype=np.float64)[:, None]
    return torch.from_numpy(np.exp(-((d - centers) ** 2) / params.step**2)).to(dtype)
