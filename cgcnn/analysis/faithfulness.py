r"""Faithfulness: does an edge ranking (attention, gates, gradients, occlusion) pick the edges that move the prediction?

A ranking is faithful when removing its top edges changes the prediction most. The field's tests, applied here
to crystal graphs:

- **deletion curve** (Petsiuk et al. 2018, RISE): remove the top fraction :math:`f = 0, 0.05, \dots, 1` of the
  crystal's *real* edges (fill-in edges never) in every convolution, and measure
  :math:`y(f) = |p(x) - p(x \setminus \mathrm{top}\,f)| \,/\, |p(x) - p(x \setminus \mathrm{all})|`, clipped to
  [0, 1]; the **deletion AUC** is its area by the trapezoid rule (1: the first edges removed carry the whole
  change; a random ranking gives about the area under the random curve). The top fraction is
  ``floor(f * n + 0.5)`` of the ``n`` real edges.
- **insertion curve**: the same from :math:`x \setminus \mathrm{all}` upward, adding the top edges back:
  :math:`y(f) = |p(x \setminus \mathrm{all}) - p(\mathrm{top}\,f\ \mathrm{only})| / |p(x) - p(x \setminus
  \mathrm{all})|`; the **insertion AUC** likewise (higher: the top edges recover more of the prediction).
- **fidelity+** :math:`= y_\mathrm{del}(0.1)` and **fidelity−** :math:`= 1 - y_\mathrm{ins}(0.1)` (GraphFramEx,
  arXiv 2206.09677): how much removing the top 10 % changes, and how much keeping only them fails to recover.

"Remove" is :func:`cgcnn.nn.removal.remove_edges`'s mode (``delete`` by default: attention renormalises over the
remaining neighbours). A crystal whose denominator is below ``1e-6`` (its edges do not matter to the model) or
that has fewer than 2 real edges is skipped and counted. All removed copies of a crystal go through the model as
one batch (split only when it would exceed :data:`MAX_BATCH_EDGES` edges).

Rankings (the JSON keys of :func:`method_names`; layers and heads count from 1, as in the viewer):
``attention_mean``, ``attention_layer{L}``, ``attention_layer{L}_head{h}`` (multi-head), ``gate_mean``,
``gate_layer{L}`` (the gated layer's mean filter gate), ``gradient_input`` (derivative of the prediction by a
factor on each message, :func:`~cgcnn.analysis.attribution.edge_gradient`), ``integrated_gradients`` (Captum's
``IntegratedGradients`` on the same factor from 0 on every real edge, fill-ins kept at 1, so its completeness
gap, the convergence delta, is measured against the same full-removal change as the curves),
``occlusion_delete`` and ``occlusion_zero`` (one edge removed at a time), and ``random`` (10 orderings from
``default_rng(0)`` per crystal, curves averaged: the floor). Attributions are ranked by absolute value.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cgcnn.analysis.attribution import edge_gradient, edge_occlusion
from cgcnn.analysis.explain import edge_weight_layers
from cgcnn.data.graph import CrystalGraph, collate
from cgcnn.errors import CGCNNError
from cgcnn.nn.predictor import Predictor
from cgcnn.nn.removal import REMOVAL_MODES, remove_edges

#: The fractions of real edges removed (deletion) or kept (insertion): 0, 0.05, ..., 1.
FRACTIONS = np.round(np.arange(21) * 0.05, 2)
#: Index of f = 0.1 in :data:`FRACTIONS` (fidelity+ and fidelity−).
FIDELITY_INDEX = 2
#: Below this full-removal change (model units) a crystal's curves are undefined: skipped and counted.
MIN_DENOMINATOR = 1e-6
#: Random orderings per crystal (their curves are averaged).
RANDOM_ORDERINGS = 10
#: Bootstrap resamples of the crystals for the confidence intervals (seed 0).
BOOTSTRAP_RESAMPLES = 2000
#: Integrated-gradients steps (Gauss-Legendre, Captum's default method).
IG_STEPS = 64
#: The copies of one crystal are split into forward passes of at most this many edges (memory bound).
MAX_BATCH_EDGES = 1 << 19
#: Methods every model gets.
COMMON_METHODS = ("gradient_input", "integrated_gradients", "occlusion_delete", "occlusion_zero", "random")


def _layer_shape(predictor: Predictor) -> tuple[str, int, int]:
    """``(family, convolutions, heads)``: family ``attention`` or ``gate``."""
    config = predictor.model.config
    family = "gate" if config.conv == "gated" else "attention"
    heads = int(config.conv_options.get("heads", 1)) if family == "attention" else 1
    return family, config.n_conv, heads


def _family_methods(family: str, n_conv: int, heads: int) -> list[str]:
    names = [f"{family}_mean", *(f"{family}_layer{layer}" for layer in range(1, n_conv + 1))]
    if heads > 1:
        names += [f"{family}_layer{layer}_head{h}" for layer in range(1, n_conv + 1) for h in range(1, heads + 1)]
    return names


def method_names(predictor: Predictor) -> tuple[list[str], list[str]]:
    """The rankings this model has, and the ones it lacks (``not_applicable``: attention or gates)."""
    family, n_conv, heads = _layer_shape(predictor)
    other = "gate" if family == "attention" else "attention"
    return [*_family_methods(family, n_conv, heads), *COMMON_METHODS], _family_methods(other, n_conv, 1)


def select_methods(predictor: Predictor, requested: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """Resolve ``--methods``: each entry is a method name or a prefix (``attention`` selects every attention key).

    ``random`` is always measured: it is the floor every other curve is read against.

    Raises:
        CGCNNError: an entry that names no method of any model.
    """
    available, lacking = method_names(predictor)
    if not requested:
        return available, lacking
    every = [*available, *lacking]
    chosen, missing = [], []
    for entry in requested:
        matches = [m for m in every if m == entry or m.startswith(f"{entry}_")]
        if not matches and entry in ("attention", "gate"):
            matches = [f"{entry}_mean"]
        if not matches:
            known = ", ".join(["attention", "gate", *COMMON_METHODS, "attention_mean", "gate_layer1", "..."])
            raise CGCNNError(f"unknown method {entry!r}: use {known}")
        chosen += [m for m in matches if m in available and m not in chosen]
        missing += [m for m in matches if m in lacking and m not in missing]
    if "random" not in chosen:
        chosen.append("random")
    return chosen, missing


# ------------------------------------------------------------------------------------------------- scores


def integrated_gradients(predictor: Predictor, graph: CrystalGraph, steps: int = IG_STEPS) -> tuple[np.ndarray, float]:
    r"""Captum's integrated gradients on the edges' message factors, from 0 on real edges to 1.

    Fill-in edges stay at 1 (they are never removed), so the attributions sum to :math:`p(x) - p(x \setminus
    \mathrm{all})` up to the returned convergence delta. Call in eval mode. The prediction can bend sharply
    along the path (a softplus network), so the delta is reported, not assumed small.

    Returns:
        ``((E,) attributions, convergence delta in model units)``.
    """
    from captum.attr import IntegratedGradients

    real = torch.as_tensor(np.asarray(graph.edge_mask), dtype=torch.float32).unsqueeze(0)
    batches: dict[int, object] = {}

    def forward(scale: torch.Tensor) -> torch.Tensor:
        if scale.shape[0] not in batches:
            batches[scale.shape[0]] = collate([graph] * scale.shape[0], predictor.graph_params)
        batch = dataclasses.replace(batches[scale.shape[0]], edge_scale=scale.reshape(-1))
        return predictor.to_units(predictor.model(batch))[:, 0]

    attributions, delta = IntegratedGradients(forward).attribute(
        torch.ones_like(real), baselines=1.0 - real, n_steps=steps, return_convergence_delta=True
    )
    return attributions[0].detach().double().numpy(), float(delta.detach().abs().max())


def edge_scores(
    predictor: Predictor, graph: CrystalGraph, methods: Sequence[str]
) -> tuple[dict[str, np.ndarray], dict]:
    """Each method's score per edge ``(E,)``, larger = ranked first (``random`` excluded); eval mode.

    Returns:
        ``({method: scores}, extras)``; extras holds ``integrated_gradients_delta`` when it was computed.
    """
    scores: dict[str, np.ndarray] = {}
    extras: dict = {}
    wanted = set(methods)
    if any(m.startswith(("attention_", "gate_")) for m in wanted):
        layers, _ = edge_weight_layers(predictor, graph)
        family = _layer_shape(predictor)[0]
        for name in wanted:
            if not name.startswith(f"{family}_"):
                continue
            parts = name[len(family) + 1 :]
            if parts == "mean":
                scores[name] = np.mean([w.mean(axis=1) for w in layers], axis=0)
            elif "_head" in parts:
                layer, head = parts.removeprefix("layer").split("_head")
                scores[name] = layers[int(layer) - 1][:, int(head) - 1]
            else:
                scores[name] = layers[int(parts.removeprefix("layer")) - 1].mean(axis=1)
    with torch.enable_grad():
        if "gradient_input" in wanted:
            scores["gradient_input"] = np.abs(edge_gradient(predictor, graph))
        if "integrated_gradients" in wanted:
            attributions, extras["integrated_gradients_delta"] = integrated_gradients(predictor, graph)
            scores["integrated_gradients"] = np.abs(attributions)
    real = np.flatnonzero(graph.edge_mask)
    for mode in REMOVAL_MODES:
        if f"occlusion_{mode}" in wanted:
            values = np.zeros(len(graph.edge_src))
            values[real] = np.abs(edge_occlusion(predictor, graph, mode, edges=real))
            scores[f"occlusion_{mode}"] = values
    return scores, extras


def ranking_order(scores: np.ndarray, real: np.ndarray) -> np.ndarray:
    """The real edges (indices) by descending score; ties keep the edge order."""
    real = np.flatnonzero(real)
    return real[np.argsort(-np.asarray(scores)[real], kind="stable")]


def random_orders(real: np.ndarray, orderings: int = RANDOM_ORDERINGS) -> list[np.ndarray]:
    """``orderings`` random orders of the real edges from ``default_rng(0)`` (the same for every call)."""
    rng = np.random.default_rng(0)
    real = np.flatnonzero(real)
    return [rng.permutation(real) for _ in range(orderings)]


def top_count(fraction: float, n_real: int) -> int:
    """How many edges the top ``fraction`` of ``n_real`` is (rounded half up)."""
    return int(np.floor(fraction * n_real + 0.5))


def _curve_masks(order: np.ndarray, n_edges: int) -> tuple[np.ndarray, np.ndarray]:
    """Removal masks ``(len(FRACTIONS), E)`` of the deletion and the insertion curve for one order."""
    counts = [top_count(f, len(order)) for f in FRACTIONS]
    deletion = np.zeros((len(FRACTIONS), n_edges), dtype=bool)
    insertion = np.zeros_like(deletion)
    for row, k in enumerate(counts):
        deletion[row, order[:k]] = True
        insertion[row, order[k:]] = True
    return deletion, insertion


def _predict_masks(predictor: Predictor, graph: CrystalGraph, masks: np.ndarray, mode: str) -> np.ndarray:
    """Predictions of the copies of ``graph`` without each row's edges: one batch (split only past the bound)."""
    n_edges = len(graph.edge_src)
    chunk = max(1, MAX_BATCH_EDGES // max(n_edges, 1))
    removed = torch.from_numpy(masks)
    out = []
    with torch.no_grad():
        for start in range(0, len(removed), chunk):
            part = removed[start : start + chunk]
            batch = remove_edges(collate([graph] * len(part), predictor.graph_params), part.reshape(-1), mode)
            out.append(predictor.to_units(predictor.model(batch))[:, 0].double())
    return torch.cat(out).numpy()


# ------------------------------------------------------------------------------------------------- curves


@dataclass
class CrystalCurves:
    """One crystal's deletion and insertion curves (``len(FRACTIONS)`` values each) per method."""

    crystal_id: str
    n_real: int
    deletion: dict[str, np.ndarray]
    insertion: dict[str, np.ndarray]
    extras: dict = field(default_factory=dict)


def auc(curve: np.ndarray) -> float:
    """Area under a curve sampled at :data:`FRACTIONS` (trapezoid rule)."""
    return float(np.trapezoid(curve, FRACTIONS))


def curves_for_orders(
    predictor: Predictor,
    graph: CrystalGraph,
    orders: dict[str, list[np.ndarray]],
    mode: str = "delete",
    insertion_curves: bool = True,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], float] | str:
    """Deletion and insertion curves of given edge orders (several per name: their curves are averaged).

    Every removed copy goes through the model in one batch; eval mode. ``insertion_curves=False`` skips the
    insertion copies (half the work: the viewer draws only the deletion curve) and returns no insertion curves.

    Returns:
        ``({name: deletion curve}, {name: insertion curve}, full-removal change)``, or why the crystal is skipped.
    """
    real = np.asarray(graph.edge_mask, dtype=bool)
    n_edges = len(graph.edge_src)
    blocks = [np.zeros((1, n_edges), dtype=bool), real[None, :]]
    for name_orders in orders.values():
        for order in name_orders:
            masks = _curve_masks(order, n_edges)
            blocks.extend(masks if insertion_curves else masks[:1])
    predictions = _predict_masks(predictor, graph, np.concatenate(blocks), mode)
    full, none = predictions[0], predictions[1]
    denominator = abs(full - none)
    if denominator < MIN_DENOMINATOR:
        return "no change when every edge is removed"
    size = len(FRACTIONS)
    deletion, insertion = {}, {}
    start = 2
    for name, name_orders in orders.items():
        dels, inss = [], []
        for _ in name_orders:
            dels.append(np.clip(np.abs(full - predictions[start : start + size]) / denominator, 0.0, 1.0))
            start += size
            if insertion_curves:
                inss.append(np.clip(np.abs(none - predictions[start : start + size]) / denominator, 0.0, 1.0))
                start += size
        deletion[name] = np.mean(dels, axis=0)
        if insertion_curves:
            insertion[name] = np.mean(inss, axis=0)
    return deletion, insertion, float(denominator)


def crystal_curves(
    predictor: Predictor, graph: CrystalGraph, methods: Sequence[str], mode: str = "delete", crystal_id: str = ""
) -> CrystalCurves | str:
    """Deletion and insertion curves of one crystal for every method, or the reason it is skipped.

    The model must be in eval mode. Every removed copy (all methods, both curves, the random orderings) goes
    through the model in one batch.
    """
    real = np.asarray(graph.edge_mask, dtype=bool)
    n_real = int(real.sum())
    if n_real < 2:
        return "fewer than 2 real edges"
    scores, extras = edge_scores(predictor, graph, [m for m in methods if m != "random"])
    orders = {name: [ranking_order(scores[name], real)] for name in methods if name != "random"}
    if "random" in methods:
        orders["random"] = random_orders(real)
    curves = curves_for_orders(predictor, graph, orders, mode)
    if isinstance(curves, str):
        return curves
    deletion, insertion, denominator = curves
    if "integrated_gradients_delta" in extras:
        extras["integrated_gradients_relative_delta"] = extras["integrated_gradients_delta"] / denominator
    return CrystalCurves(crystal_id, n_real, deletion, insertion, extras)


def bootstrap_ci(values: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> list[float]:
    """95 % percentile interval of the mean of ``values`` over ``resamples`` bootstrap resamples."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return [float(low), float(high)]


@dataclass
class FaithfulnessResult:
    """Faithfulness of every method on a set of crystals (:func:`measure_faithfulness`)."""

    model: str
    occlusion: str
    methods: list[str]
    not_applicable: list[str]
    curves: list[CrystalCurves]
    skipped: dict[str, int]
    stability: dict[str, float] | None = None

    @property
    def n(self) -> int:
        """Crystals measured (not skipped)."""
        return len(self.curves)

    def mean_curve(self, method: str, which: str = "deletion") -> np.ndarray:
        """The mean curve of one method over the crystals."""
        return np.mean([getattr(c, which)[method] for c in self.curves], axis=0)

    def summary(self, method: str) -> dict:
        """Deletion AUC (mean over crystals) and its bootstrap CI, insertion AUC, fidelity+ and fidelity−."""
        deletion = np.array([auc(c.deletion[method]) for c in self.curves])
        out = {
            "deletion_auc": float(deletion.mean()),
            "deletion_auc_ci": bootstrap_ci(deletion),
            "insertion_auc": float(np.mean([auc(c.insertion[method]) for c in self.curves])),
            "fidelity_plus": float(np.mean([c.deletion[method][FIDELITY_INDEX] for c in self.curves])),
            "fidelity_minus": float(np.mean([1.0 - c.insertion[method][FIDELITY_INDEX] for c in self.curves])),
        }
        if method == "integrated_gradients":
            relative = [c.extras["integrated_gradients_relative_delta"] for c in self.curves]
            out["convergence_delta_relative_max"] = float(np.max(relative))
            out["convergence_delta_relative_median"] = float(np.median(relative))
        return out

    def to_json(self) -> dict:
        """The issue's JSON object: model, n, skipped, occlusion, methods, not_applicable, stability."""
        if not self.curves:
            raise CGCNNError(f"no crystal could be measured ({self.skipped_text()})")
        return {
            "model": self.model,
            "n": self.n,
            "skipped": sum(self.skipped.values()),
            "skipped_reasons": dict(self.skipped),
            "occlusion": self.occlusion,
            "methods": {name: self.summary(name) for name in self.methods},
            "not_applicable": list(self.not_applicable),
            "stability": self.stability,
        }

    def skipped_text(self) -> str:
        """The skipped crystals in words."""
        if not self.skipped:
            return "none skipped"
        return "; ".join(f"{count} skipped: {reason}" for reason, count in self.skipped.items())


def measure_faithfulness(
    predictor: Predictor,
    graphs: dict[str, CrystalGraph],
    methods: Sequence[str] | None = None,
    mode: str = "delete",
    progress: Callable[[int, int], None] | None = None,
) -> FaithfulnessResult:
    """Deletion and insertion curves of every method on ``graphs`` (id → graph), and what was skipped.

    Raises:
        CGCNNError: an unknown removal mode or method.
    """
    if mode not in REMOVAL_MODES:
        raise CGCNNError(f"unknown occlusion {mode!r}: use one of {', '.join(REMOVAL_MODES)}")
    chosen, lacking = select_methods(predictor, methods)
    model = predictor.model
    was_training = model.training
    model.eval()
    curves: list[CrystalCurves] = []
    skipped: dict[str, int] = {}
    try:
        for done, (crystal_id, graph) in enumerate(graphs.items()):
            result = crystal_curves(predictor, graph, chosen, mode, crystal_id)
            if isinstance(result, str):
                skipped[result] = skipped.get(result, 0) + 1
            else:
                curves.append(result)
            if progress is not None:
                progress(done + 1, len(graphs))
    finally:
        model.train(was_training)
    return FaithfulnessResult(predictor.card.name, mode, chosen, lacking, curves, skipped)


# ------------------------------------------------------------------------------------- crystals and top-N


def test_crystal_ids(card, dataset, split_seed: int = 0) -> tuple[list[str], str]:
    """The crystals a model is scored on, and where they come from in words.

    This project's own models: their card's test ids. A fine-tune (a card with a ``spec``): its split's test
    block. Other models (the originals): the band-gap test block of ``split_seed``, which the originals were
    trained on (their training data is not published as a split), so their numbers describe crystals they saw.
    """
    from cgcnn.data.splits import canonical_blocks, make_split

    details = card.details or {}
    split = details.get("split")
    if isinstance(split, dict) and split.get("test_ids"):
        return [i for i in split["test_ids"] if i in dataset], f"the test crystals of {card.name}'s card"
    spec = details.get("spec")
    if isinstance(spec, dict) and "n_test" in spec and "target" in spec:
        sizes = (spec["target"], spec["n_train"], spec["n_val"], spec["n_test"])
        try:
            test = make_split(dataset, *sizes, split_seed=spec.get("split_seed", 0)).test
        except ValueError as exc:
            raise CGCNNError(f"cannot rebuild the test block of {card.name}: {exc}") from None
        return list(test), f"the test block of {card.name}"
    if "band_gap" not in dataset.targets:
        return sorted(str(i) for i in dataset.ids), "every crystal of the data"
    blocks = canonical_blocks(dataset, "band_gap", split_seed)
    return list(blocks.test), f"the band-gap test block of split seed {split_seed} (which {card.name} trained on)"


def remove_top(
    predictor: Predictor, graph: CrystalGraph, n: int, ranking: str, mode: str = "delete"
) -> dict[str, float | int | str]:
    """The prediction without the ``n`` top edges of ``ranking``, and without ``n`` random real edges.

    The random side is the mean over the :data:`RANDOM_ORDERINGS` orderings of :func:`random_orders` (the same
    floor as the curves). ``n`` above the crystal's real edges is capped (``note`` says so).

    Raises:
        CGCNNError: an unknown or inapplicable ranking, a bad mode, or ``n`` below 1.
    """
    return remove_top_edges(predictor, graph, n, ranking, mode)[0]


def remove_top_edges(
    predictor: Predictor, graph: CrystalGraph, n: int, ranking: str, mode: str = "delete"
) -> tuple[dict[str, float | int | str], np.ndarray]:
    """:func:`remove_top`'s report and the indices of the top edges it removed (the viewer marks them).

    One code path for ``explain --remove-top`` and the viewer, so their numbers cannot differ.

    Raises:
        CGCNNError: as :func:`remove_top`.
    """
    if mode not in REMOVAL_MODES:
        raise CGCNNError(f"unknown occlusion {mode!r}: use one of {', '.join(REMOVAL_MODES)}")
    available, lacking = method_names(predictor)
    if ranking in lacking:
        kind = predictor.model.config.conv
        raise CGCNNError(f"{predictor.card.name} has no {ranking} ranking (its convolutions are {kind})")
    if ranking not in available or ranking == "random":
        names = ", ".join(m for m in available if m != "random")
        raise CGCNNError(f"unknown ranking {ranking!r}: use one of {names}")
    if n < 1:
        raise CGCNNError(f"--remove-top must be 1 or more, got {n}")
    real = np.asarray(graph.edge_mask, dtype=bool)
    n_real = int(real.sum())
    note = ""
    if n > n_real:
        note = f"only {n_real} real edges: removing all of them, not {n}"
        n = n_real
    model = predictor.model
    was_training = model.training
    model.eval()
    try:
        scores, _ = edge_scores(predictor, graph, [ranking])
        orders = [ranking_order(scores[ranking], real), *random_orders(real)]
        masks = np.zeros((1 + len(orders), len(graph.edge_src)), dtype=bool)
        for row, order in enumerate(orders, start=1):
            masks[row, order[:n]] = True
        predictions = _predict_masks(predictor, graph, masks, mode)
    finally:
        model.train(was_training)
    report = {
        "ranking": ranking,
        "occlusion": mode,
        "removed": n,
        "real_edges": n_real,
        "prediction": float(predictions[0]),
        "prediction_without_top": float(predictions[1]),
        "prediction_without_random": float(predictions[2:].mean()),
        "note": note,
    }
    return report, np.sort(orders[0][:n])


# ------------------------------------------------------------------------------- for the viewer's colour bar


def method_for_colouring(kind: str, layer: int, head: int | None = None) -> str:
    """The method key of a viewer colouring: ``kind`` ``attention`` or ``gate``, 0-based ``layer`` and ``head``."""
    family = "gate" if kind == "gate" else "attention"
    return f"{family}_layer{layer + 1}" + (f"_head{head + 1}" if head is not None else "")


def shipped_results_dir() -> Path:
    """Where the shipped faithfulness results live (``docs/results/faithfulness``, one JSON per model)."""
    from cgcnn.paths import project_path

    return project_path("docs", "results", "faithfulness")


def shipped_faithfulness(model: str, method: str, folder: Path | None = None) -> dict | None:
    """The measured faithfulness of one ranking of one model, read from the shipped results; None: not measured.

    Read, never computed: a server must not spend minutes on it. Returns the method's deletion AUC and CI, the
    AUCs of ``random`` and ``occlusion_delete`` (the floor and the reference), the number of crystals and, where
    the per-crystal AUCs are stored, ``vs_random`` and ``vs_occlusion``: the mean per-crystal difference with its
    bootstrap CI (2,000 resamples, seed 0; the paired comparison of the shipped README).
    """
    path = (folder or shipped_results_dir()) / f"{model}.json"
    try:
        report = json.loads(path.read_text())
        methods = report["methods"]
        row, floor, occlusion = methods[method], methods["random"], methods["occlusion_delete"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    found = {
        "model": model,
        "method": method,
        "n": report.get("n"),
        "occlusion": report.get("occlusion"),
        "deletion_auc": row["deletion_auc"],
        "deletion_auc_ci": row["deletion_auc_ci"],
        "random_deletion_auc": floor["deletion_auc"],
        "occlusion_deletion_auc": occlusion["deletion_auc"],
    }
    per_crystal = report.get("deletion_auc_per_crystal") or {}
    for other, key in (("random", "vs_random"), ("occlusion_delete", "vs_occlusion")):
        paired = _paired_difference(per_crystal.get(method), per_crystal.get(other))
        if paired is not None and other != method:
            found[key] = paired
    return found


def _paired_difference(mine, other) -> dict[str, float | list[float]] | None:
    """Mean per-crystal difference of two rankings' deletion AUCs with its bootstrap CI (None: not stored)."""
    try:
        difference = np.asarray(mine, dtype=np.float64) - np.asarray(other, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if difference.ndim != 1 or len(difference) < 2 or not np.isfinite(difference).all():
        return None
    return {"mean": float(difference.mean()), "ci": bootstrap_ci(difference)}


def crystal_deletion_curve(
    predictor: Predictor, graph: CrystalGraph, method: str, mode: str = "delete"
) -> dict[str, np.ndarray] | str:
    """One crystal's deletion curve of ``method`` beside the random floor (``{"fractions", method, "random"}``).

    Computed on demand (one batch of deletion copies only, no insertion curve), or the reason the crystal is
    skipped. The same curves as :func:`crystal_curves` gives for ``method`` and ``random``.

    Raises:
        CGCNNError: a method this model lacks.
    """
    available, lacking = method_names(predictor)
    if method not in available or method == "random":
        why = "it has no such ranking" if method in lacking else "unknown ranking"
        raise CGCNNError(f"cannot draw the deletion curve of {method!r} for {predictor.card.name}: {why}")
    real = np.asarray(graph.edge_mask, dtype=bool)
    if int(real.sum()) < 2:
        return "fewer than 2 real edges"
    model = predictor.model
    was_training = model.training
    model.eval()
    try:
        scores, _ = edge_scores(predictor, graph, [method])
        orders = {method: [ranking_order(scores[method], real)], "random": random_orders(real)}
        result = curves_for_orders(predictor, graph, orders, mode, insertion_curves=False)
    finally:
        model.train(was_training)
    if isinstance(result, str):
        return result
    deletion = result[0]
    return {"fractions": FRACTIONS.copy(), method: deletion[method], "random": deletion["random"]}


# ------------------------------------------------------------------------------------------------- figure

#: Curves drawn in the figure (per-head curves are left out: the layer's mean stands for its heads).
_DRAWN = ("_mean", "_layer", "gradient_input", "integrated_gradients", "occlusion_delete", "occlusion_zero")


def mean_deletion_curves(result: FaithfulnessResult) -> dict[str, list[float]]:
    """Each method's mean deletion curve over the measured crystals (what the figure draws)."""
    return {m: [round(float(v), 5) for v in result.mean_curve(m)] for m in result.methods}


def curves_png(panels: Sequence[tuple[str, dict[str, Sequence[float]]]], path: Path | str) -> None:
    """Draw mean deletion curves, one panel per model (``(title, {method: curve})``), random dashed: a PNG.

    Per-head curves are left out (their layer's mean stands for them), so a 4-head model's panel stays legible.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), dpi=110, squeeze=False)
    try:
        for ax, (title, curves) in zip(axes.flat, panels, strict=False):
            for name, curve in curves.items():
                if name == "random":
                    ax.plot(FRACTIONS, curve, color="black", ls="--", lw=1.5, label="random")
                elif "_head" not in name and any(key in name for key in _DRAWN):
                    ax.plot(FRACTIONS, curve, lw=1.2, label=name.replace("_", " "))
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("fraction of real edges removed")
            ax.set_ylabel("|change| / full-removal change")
            ax.set_ylim(0, 1.02)
            ax.legend(fontsize=6, loc="lower right")
        for ax in list(axes.flat)[len(panels) :]:
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
