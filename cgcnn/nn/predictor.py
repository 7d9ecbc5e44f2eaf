"""A loaded model ready to predict: network, normaliser, graph parameters and card together."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Structure

from cgcnn.data.crystal_io import read_structure, sentence
from cgcnn.data.graph import DEFAULT_MAX_ATOMS, BuildOptions, CrystalGraph, GraphParams, collate, structure_to_graph
from cgcnn.errors import CGCNNError
from cgcnn.nn.cards import ModelCard
from cgcnn.nn.conformal import CONFIDENCES, Calibration
from cgcnn.nn.model import CrystalGraphConvNet, mean_pool
from cgcnn.nn.normalizer import Normalizer
from cgcnn.nn.uncertainty import Uncertainty

#: Targets that cannot be negative; ``clamp=True`` sets their negative predictions to 0.
NON_NEGATIVE_TARGETS = frozenset({"band_gap", "e_above_hull"})


def clamp_nonnegative(values: np.ndarray, targets: list[str]) -> np.ndarray:
    """``values`` ``(n, n_targets)`` with the columns of :data:`NON_NEGATIVE_TARGETS` clamped at 0.

    The one place predictions are clamped (``predict --clamp``, ``evaluate --clamp``, the pages). Off by
    default, so the original models' numbers still match the reference implementation: a regression head
    does not know a band gap is never negative, and 4-12% of its test predictions are.

    Raises:
        CGCNNError: none of ``targets`` is known to be non-negative (clamping would silently do nothing).
    """
    columns = [k for k, name in enumerate(targets) if name in NON_NEGATIVE_TARGETS]
    if not columns:
        known = ", ".join(sorted(NON_NEGATIVE_TARGETS))
        raise CGCNNError(f"--clamp applies to targets that cannot be negative ({known}); this model predicts "
                         f"{', '.join(targets)}")  # fmt: skip
    values = np.array(values, dtype=np.float64, copy=True)
    values[:, columns] = np.maximum(values[:, columns], 0.0)
    return values


@dataclass
class Predictor:
    """Everything needed to turn crystals into predictions in physical units.

    Attributes:
        model: the network (kept in eval mode by :meth:`predict_graphs`).
        normalizer: maps normalised outputs back to physical units.
        graph_params: the definition of this model's graphs (radius, neighbours, Gaussians); the limits of
            where graphs are built (:class:`~cgcnn.data.graph.BuildOptions`) are the caller's.
        card: the model card.
        uncertainty: its calibration and applicability domain (None: it has none, see ``uncertainty_note``).
        uncertainty_note: why there is none, one line naming the model ('' when it simply has none).
    """

    model: CrystalGraphConvNet
    normalizer: Normalizer
    graph_params: GraphParams
    card: ModelCard
    uncertainty: Uncertainty | None = None
    uncertainty_note: str = ""

    @property
    def targets(self) -> list[str]:
        """Output names in order (a classifier has one: its positive class probability)."""
        return list(self.model.config.targets)

    @property
    def classification(self) -> bool:
        """Whether it is a classifier (its value is a probability), as the baselines also say."""
        return bool(self.model.config.classification)

    def to_units(self, raw: torch.Tensor) -> torch.Tensor:
        """Network outputs ``(n, n_out)`` → values in the model's units ``(n, n_targets)``, float64.

        A classifier's outputs are log-probabilities: its value is the probability of the positive class. A
        regressor's are normalised: they are denormalised.
        """
        if self.model.config.classification:
            return raw.exp()[:, 1:2].double()
        return self.normalizer.denorm(raw.double())

    def graph(self, structure: Structure, options: BuildOptions | None = None) -> CrystalGraph:
        """Build the graph of ``structure`` with this model's graph parameters (and the caller's ``options``)."""
        return structure_to_graph(structure, self.graph_params, options=options)

    @torch.no_grad()
    def predict_graphs(self, graphs: list[CrystalGraph], batch_size: int = 256, clamp: bool = False) -> np.ndarray:
        """Predict ``(n_crystals, n_targets)`` values in the model's units.

        A classifier gives the probability of its positive class; a regressor its denormalised targets.
        ``clamp`` sets negative predictions of non-negative targets to 0 (:func:`clamp_nonnegative`).
        """
        self.model.eval()
        device = next(self.model.parameters()).device
        out = []
        for start in range(0, len(graphs), batch_size):
            batch = collate(graphs[start : start + batch_size], self.graph_params).to(device)
            out.append(self.to_units(self.model(batch)))
        values = torch.cat(out).double().cpu().numpy() if out else np.zeros((0, len(self.targets)))
        return clamp_nonnegative(values, self.targets) if clamp else values

    @torch.no_grad()
    def pooled_features(self, graphs: list[CrystalGraph], batch_size: int = 256) -> np.ndarray:
        """Each crystal's pooled features ``(n_crystals, atom_fea_len)`` (the applicability domain's space).

        The mean atom features after the last convolution: the model's last representation shared by every target.
        """
        self.model.eval()
        device = next(self.model.parameters()).device
        out = []
        for start in range(0, len(graphs), batch_size):
            batch = collate(graphs[start : start + batch_size], self.graph_params).to(device)
            out.append(mean_pool(self.model.atom_features(batch), batch).double().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.model.config.atom_fea_len))

    def predict_structures(self, structures: list[Structure], batch_size: int = 256, clamp: bool = False) -> np.ndarray:
        """Build graphs and predict (see :meth:`predict_graphs`)."""
        return self.predict_graphs([self.graph(s) for s in structures], batch_size, clamp=clamp)


@dataclass
class Ensemble:
    """Several models of one target (typically one fine-tune recipe with different seeds), predicting together.

    The mean is the prediction; the standard deviation over members (ddof 1) is a measure of how much the
    seeds disagree, not an error bar (every member saw the same training crystals): a calibrated interval
    scales it by conformal scores measured on a validation block (:mod:`cgcnn.nn.conformal`).

    Attributes:
        members: the models.
        name: the zoo name of a shipped ensemble ('' for one put together from names joined by commas).
        uncertainty: the ensemble's own calibration (normalised by its std); distances come from the members.
        uncertainty_note: why it has none, one line naming it ('' when it simply has none).
    """

    members: list[Predictor]
    name: str = ""
    uncertainty: Uncertainty | None = None
    uncertainty_note: str = ""

    def __post_init__(self) -> None:
        if len(self.members) < 2:
            raise CGCNNError("an ensemble needs at least two models")
        first = self.members[0]
        label = f"{self.name}: " if self.name else ""
        for other in self.members[1:]:
            pair = f"{first.card.name} and {other.card.name}"
            if other.targets != first.targets:
                raise CGCNNError(
                    f"{label}ensemble members {pair} predict different targets ({first.targets} vs {other.targets})"
                )
            if other.graph_params != first.graph_params:  # the definition only: limits are never saved with a model
                raise CGCNNError(
                    f"{label}ensemble members {pair} build their graphs differently (radius, neighbours or Gaussians)"
                )
            if other.model.config.classification != first.model.config.classification:
                raise CGCNNError(f"{label}an ensemble cannot mix classifiers and regressors ({pair})")

    @property
    def targets(self) -> list[str]:
        """Output names, shared by every member."""
        return self.members[0].targets

    @property
    def graph_params(self) -> GraphParams:
        """Graph parameters, shared by every member."""
        return self.members[0].graph_params

    @property
    def names(self) -> list[str]:
        """Each member's card name (``run:ID`` for stored runs), numbered ``#k`` when two share a name."""
        names = [m.card.name for m in self.members]
        return names if len(set(names)) == len(names) else [f"{n}#{k}" for k, n in enumerate(names)]

    def predict_members(self, graphs: list[CrystalGraph], clamp: bool = False) -> np.ndarray:
        """Every member's predictions, ``(n_members, n_crystals, n_targets)``."""
        return np.stack([m.predict_graphs(graphs, clamp=clamp) for m in self.members])

    def predict_spread(
        self, graphs: list[CrystalGraph], clamp: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(mean, std, members)``: the members' mean and spread ``(n_crystals, n_targets)``, and each member.

        The spread is the standard deviation with ddof 1: the members are a sample of seeds, and two of them
        already give a finite, unbiased variance. The one place an ensemble's spread is computed.
        """
        members = self.predict_members(graphs, clamp=clamp)
        return members.mean(axis=0), members.std(axis=0, ddof=1), members

    def predict_graphs(self, graphs: list[CrystalGraph], batch_size: int = 256, clamp: bool = False) -> np.ndarray:
        """The members' mean, ``(n_crystals, n_targets)`` (as :meth:`Predictor.predict_graphs`)."""
        return self.predict_members(graphs, clamp=clamp).mean(axis=0)


@dataclass
class CrystalPrediction:
    """One crystal's prediction, or why it has none: what ``predict``, the Predict page and the viewer format.

    Attributes:
        name: the file, zip member or crystal id (the first word of ``error`` and ``note``).
        values: ``(n_targets,)`` in the model's units; an ensemble's mean. None when ``error`` is set.
        std: an ensemble's spread per target, ``(n_targets,)``, ddof 1 (the members are a sample of seeds, so
            two members give a finite spread); None for one model.
        members: an ensemble's members' values ``(n_members, n_targets)``, in the order of ``Ensemble.names``.
        formula: the crystal's reduced formula ('' when it could not be read).
        atoms: atoms in its cell (0 when it could not be read).
        error: why it was not predicted, ``"<name>: <reason>"``.
        note: what the user should know about a good prediction (a widened cutoff).
        tie: :func:`tie_note` of the crystal ('' without a neighbour tie at the cut).
        interval: the calibrated 90% interval ``(lower, upper)`` of the first target; None without a calibration.
        distance: how far the crystal is from the training crystals, in units of the validation block's 95th
            percentile (:mod:`cgcnn.nn.domain`); None without an applicability domain.
    """

    name: str
    values: np.ndarray | None = None
    std: np.ndarray | None = None
    members: np.ndarray | None = None
    formula: str = ""
    atoms: int = 0
    error: str = ""
    note: str = ""
    tie: str = ""
    interval: tuple[float, float] | None = None
    distance: float | None = None

    @property
    def far(self) -> bool | None:
        """Far from the training data (``distance > 1``: 5% of crystals drawn like them); None: unknown."""
        return None if self.distance is None else bool(self.distance > 1.0)


@dataclass
class Assessment:
    """What a model knows about its own error on predicted crystals (the first target).

    Attributes:
        lower, upper: the calibrated bounds at each of :data:`~cgcnn.nn.conformal.CONFIDENCES` (None: no
            calibration).
        distance: each crystal's distance from the training crystals (None: no applicability domain).
        note: one line naming the model when a calibration exists but cannot be used ('' otherwise).
    """

    lower: dict[float, np.ndarray] | None
    upper: dict[float, np.ndarray] | None
    distance: np.ndarray | None
    note: str = ""


def assess(
    model: Predictor | Ensemble,
    graphs: list[CrystalGraph],
    predictions: np.ndarray,
    std: np.ndarray | None = None,
    clamp: bool = False,
) -> Assessment:
    """Calibrated intervals and distances of predicted crystals: the one place they are computed.

    Args:
        model: the model or ensemble that predicted ``predictions``.
        graphs: the crystals' graphs.
        predictions: the first target's predictions ``(n,)`` (an ensemble's mean).
        std: an ensemble's spread of the first target ``(n,)``.
        clamp: clamp the bounds of a non-negative target at 0, as the predictions.
    """
    members = model.members if isinstance(model, Ensemble) else [model]
    note = uncertainty_note(model)
    lower = upper = distance = None
    calibration: Calibration | None = model.uncertainty.calibration if model.uncertainty else None
    if calibration is not None and len(graphs):
        lower, upper = {}, {}
        for confidence in CONFIDENCES:
            low, high = calibration.intervals(predictions, std if calibration.normalised else None, confidence)
            if clamp and model.targets[0] in NON_NEGATIVE_TARGETS:
                low, high = np.maximum(low, 0.0), np.maximum(high, 0.0)
            lower[confidence], upper[confidence] = low, high
    domains = [m.uncertainty.domain if m.uncertainty else None for m in members]
    if len(graphs) and all(d is not None for d in domains):
        ratios = [d.distance(m.pooled_features(graphs)) for d, m in zip(domains, members, strict=True)]
        distance = np.mean(ratios, axis=0)  # an ensemble averages its members' ratios
    return Assessment(lower, upper, distance, note)


#: What is said wherever a crystal with a neighbour tie at the cut is predicted (CLI ``predict`` and ``explain``,
#: the viewer): the same structure written down another way can get another graph and another prediction.
TIE_NOTE = (
    "this crystal has tied neighbours at the cutoff: its prediction depends on atom order and coordinate rounding"
)


def tie_note(structure: Structure, params: GraphParams) -> str:
    """:data:`TIE_NOTE` and where the tie is, when the ``M``-neighbour cut splits a shell; '' otherwise.

    See :func:`cgcnn.data.graph.neighbour_tie`.
    """
    from cgcnn.data.graph import neighbour_tie

    tie = neighbour_tie(structure, params)
    return "" if tie is None else f"{TIE_NOTE} ({tie.describe(params.max_neighbors)})"


def crystal_files(paths: list[str | Path]) -> list[Path]:
    """Expand the command line: a file stays, a folder gives its ``*.cif`` (directly inside, sorted)."""
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted(p.glob("*.cif")) if p.is_dir() else [p])
    return files


def predict_crystals(
    predictor: Predictor | Ensemble,
    crystals: Sequence[tuple[str, Structure]],
    widen_radius: bool = False,
    max_atoms: int | None = None,
    clamp: bool = False,
    build_graph: Callable[[str, Structure, GraphParams, BuildOptions], CrystalGraph] | None = None,
) -> list[CrystalPrediction]:
    """Predict named crystals: the one prediction path of the CLI, the Predict page and the viewer.

    Each crystal's graph is built on its own (a crystal the graph builder refuses gets its ``error`` and the
    others go on), then all are predicted in one batch. An :class:`Ensemble` gives the members' mean as
    ``values``, their spread (std, ddof 1) and each member's values; the surfaces only format these numbers, so
    they cannot disagree.

    Args:
        predictor: the model, or an :class:`Ensemble`.
        crystals: ``(name, structure)`` in the order the results come back.
        widen_radius: search past the cutoff for atoms without a neighbour (``note`` says so).
        max_atoms: refuse crystals with more atoms (default: :data:`~cgcnn.data.graph.DEFAULT_MAX_ATOMS`).
        clamp: clamp negative predictions of non-negative targets at 0 (:func:`clamp_nonnegative`).
        build_graph: ``(name, structure, params, options) -> graph`` instead of ``structure_to_graph`` (the
            app builds uploads' graphs in its capped parse pool).
    """
    params = predictor.graph_params
    options = BuildOptions(
        max_atoms=DEFAULT_MAX_ATOMS if max_atoms is None else int(max_atoms), widen_radius=widen_radius
    )
    results, graphs, good = [], [], []
    for name, structure in crystals:
        result = CrystalPrediction(name=name)
        try:
            if build_graph is None:
                graph = structure_to_graph(structure, params, options=options)
            else:
                graph = build_graph(name, structure, params, options)
        except CGCNNError as exc:
            result.error = sentence(name, str(exc))
        else:
            result.formula, result.atoms = structure.composition.reduced_formula, len(structure)
            result.tie = tie_note(structure, params)
            if graph.radius > params.radius:
                result.note = f"{name}: cutoff widened from {params.radius:g} to {graph.radius:g} Å"
            graphs.append(graph)
            good.append(result)
        results.append(result)
    if graphs and isinstance(predictor, Ensemble):
        means, stds, members = predictor.predict_spread(graphs, clamp=clamp)
        for k, result in enumerate(good):
            result.values, result.std, result.members = means[k], stds[k], members[:, k]
    elif graphs:
        for result, values in zip(good, predictor.predict_graphs(graphs, clamp=clamp), strict=True):
            result.values = values
    if graphs:
        first = np.array([r.values[0] for r in good])
        spread = np.array([r.std[0] for r in good]) if isinstance(predictor, Ensemble) else None
        found = assess(predictor, graphs, first, spread, clamp=clamp)
        for k, result in enumerate(good):
            if found.lower is not None and found.upper is not None:
                result.interval = (float(found.lower[0.90][k]), float(found.upper[0.90][k]))
            if found.distance is not None:
                result.distance = float(found.distance[k])
    return results


def uncertainty_note(predictor: Predictor | Ensemble) -> str:
    """The one line to show when a model's calibration exists but cannot be used ('' otherwise)."""
    members = predictor.members if isinstance(predictor, Ensemble) else [predictor]
    return next((n for n in [predictor.uncertainty_note] + [m.uncertainty_note for m in members] if n), "")


def predict_files(
    predictor: Predictor | Ensemble,
    paths: list[Path],
    widen_radius: bool = False,
    max_atoms: int | None = None,
    read: Callable[[Path], Structure] = read_structure,
    clamp: bool = False,
) -> list[CrystalPrediction]:
    """Read every file and predict it (:func:`predict_crystals`); a bad file gets its error, the others go on.

    Args:
        predictor: the model, or an :class:`Ensemble`.
        paths: crystal files; each result is named by its file name.
        widen_radius: search past the cutoff for atoms without a neighbour.
        max_atoms: refuse crystals with more atoms (default: :data:`~cgcnn.data.graph.DEFAULT_MAX_ATOMS`).
        read: how a file becomes a structure (the CLI passes one that parses in a capped worker process).
        clamp: clamp negative predictions of non-negative targets at 0 (:func:`clamp_nonnegative`).
    """
    read_errors: dict[int, str] = {}
    crystals = []
    for k, path in enumerate(paths):
        try:
            crystals.append((path.name, read(path)))
        except CGCNNError as exc:
            read_errors[k] = sentence(path.name, str(exc))
    predicted = iter(predict_crystals(predictor, crystals, widen_radius, max_atoms, clamp))
    return [
        CrystalPrediction(name=path.name, error=read_errors[k]) if k in read_errors else next(predicted)
        for k, path in enumerate(paths)
    ]
