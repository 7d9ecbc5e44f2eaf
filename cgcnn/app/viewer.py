"""The crystal viewer's state and computation: what is shown, and the 3D scene, table and numbers of it.

One source of truth. :class:`ViewState` is everything the viewer shows (crystal, model, layer, head, atom, edge
mode, colouring). The page builds it once per run, from the address (``?crystal=...&model=...``: a shared link
reopens the same view) overridden by the widgets the user just changed, validates it here
(:func:`parse_view`; a bad value falls back to its default and is named, never a traceback), writes it back
into the widgets and the address, and draws only from it (:func:`view_of_state`). So the controls, the picture,
the colour bars and the prediction cannot disagree, whatever the order of mode switches.

The prediction is the one ``python -m cgcnn predict`` prints: the same graph parameters and the same
:class:`~cgcnn.nn.predictor.Predictor` / :class:`~cgcnn.nn.predictor.Ensemble` call.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from cgcnn.analysis import crystal_scene, explain, faithfulness
from cgcnn.analysis.attribution import attribute, gradient_attribution
from cgcnn.app import faithfulness_view
from cgcnn.data.graph import CrystalGraph, GraphParams, neighbour_tie, structure_to_graph
from cgcnn.errors import CGCNNError, CrystalInputError
from cgcnn.nn.predictor import CrystalPrediction, Ensemble, Predictor, predict_crystals, tie_note

#: How a view builds a crystal's graph (``structure_to_graph``; an upload's goes through the parse pool).
GraphBuilder = Callable[[Structure, GraphParams], CrystalGraph]
#: Largest crystal coloured by occlusion (one forward pass per edge: ~13 s for 50 atoms on a busy 2-core box,
#: growing with the square of the atoms); larger ones get gradient × input, and the page says so.
OCCLUSION_MAX_ATOMS = 32
#: The model choice that draws the crystal graph alone.
NO_MODEL = "(graph only, no model)"
#: Edge modes: URL value → the radio's label.
EDGE_MODES = {"atom": "One atom's edges", "top": "Every atom's strongest edges", "all": "All edges"}
#: Edge colourings: URL value → the radio's label.
COLOURINGS = {"weights": "the layer's attention or gate", "occlusion": "occlusion attribution"}
#: The viewer opens on the first of these formulas the dataset holds without a neighbour tie (its smallest such
#: cell): rutile SnO2 shows chains of edge-sharing octahedra in 6 atoms; quartz and rutile TiO2 are the fallbacks.
#: Not the cubic perovskite SrTiO3 (``mp-5229``) any more: its 12-neighbour cut splits a shell, so the first view's
#: prediction differed from the CLI's on the same structure written to a CIF (1.749 vs 1.906 eV).
DEFAULT_FORMULAS = ("SnO2", "SiO2", "TiO2", "MgAl2O4")
#: The viewer opens with the first of these models on offer: attention with 4 heads, so the head selector shows.
PREFERRED_MODELS = ("own-attention-4head", "own-attention", "band-gap")
#: Most edges per atom in *Every atom's strongest edges* (the graph has 12 neighbours per atom).
MAX_TOP_K = 12
#: Widget keys of the page, one per field of :class:`ViewState` (the ensemble's extra members have their own).
WIDGET_KEYS = {
    "crystal": "view_crystal",
    "model": "view_model",
    "ensemble": "view_ensemble",
    "layer": "view_layer",
    "head": "view_head",
    "atom": "view_atom",
    "edges": "view_mode",
    "k": "view_topk",
    "colour": "view_colour_by",
    "atoms": "view_contrib",
    "fixed": "view_fixed",
    "remove": "view_remove",
    "removal": "view_removal",
}
#: Query parameters the viewer owns (the page keeps every other one, e.g. ``user``, ``token``, ``present``).
URL_KEYS = ("crystal", "model", "layer", "head", "atom", "edges", "k", "colour", "atoms", "fixed", "remove", "removal")


@dataclass(frozen=True)
class ModelShape:
    """What the controls of a model depend on: its convolutions and attention heads (1 for gated models)."""

    n_conv: int
    n_heads: int = 1


@dataclass(frozen=True)
class ViewState:
    """Everything the viewer shows.

    Attributes:
        crystal: id of a default-dataset crystal (kept while a file is shown, so switching back finds it).
        model: a zoo name, :data:`NO_MODEL`, or several names joined by commas: a seed ensemble (as ``predict
            --model run:A,run:B``); its first member colours the picture.
        layer: convolution shown, counted from 1 as on the slider.
        head: attention head from 1; None: the mean of the heads (and the only choice of a 1-head model).
        atom: the atom whose edges *One atom's edges* draws.
        edges: a key of :data:`EDGE_MODES`.
        top_k: edges per atom in *Every atom's strongest edges*.
        colour: a key of :data:`COLOURINGS`.
        colour_atoms: atoms take a value's colour (contribution or occlusion) instead of their element's.
        fixed_range: one edge colour range over every layer of this model and crystal, so layers compare.
        heads: the model's attention heads (set by :func:`parse_view`; the address names a head only when
            there is a choice).
        remove: *Remove the top N edges*: N edges ranked first by the colouring are removed and marked (0: off).
        removal: how they are removed, ``delete`` or ``zero`` (see :func:`cgcnn.nn.removal.remove_edges`); also
            the mode of this crystal's deletion curve.
    """

    crystal: str
    model: str = NO_MODEL
    layer: int = 1
    head: int | None = None
    atom: int = 0
    edges: str = "top"
    top_k: int = 2
    colour: str = "weights"
    colour_atoms: bool = False
    fixed_range: bool = False
    heads: int = 1
    remove: int = 0
    removal: str = "delete"

    @property
    def members(self) -> list[str]:
        """The model names (one, or an ensemble's several; none without a model)."""
        return [] if self.model == NO_MODEL else [m for m in self.model.split(",") if m]

    def to_params(self) -> dict[str, str]:
        """The query parameters of this view (every key of :data:`URL_KEYS` that applies)."""
        params = {"crystal": self.crystal, "model": self.model}
        if self.model == NO_MODEL:
            return params
        params.update(
            layer=str(self.layer), atom=str(self.atom), edges=self.edges, k=str(self.top_k), colour=self.colour,
            atoms="1" if self.colour_atoms else "0", fixed="1" if self.fixed_range else "0",
            remove=str(self.remove), removal=self.removal,
        )  # fmt: skip
        if self.heads > 1:
            params["head"] = "mean" if self.head is None else str(self.head)
        return params


@dataclass(frozen=True)
class CrystalIndex:
    """The default dataset as the viewer needs it: atoms and formula per crystal id, and the crystal it opens on."""

    n_atoms: dict[str, int]
    formulas: dict[str, str]
    default: str

    @classmethod
    def of(cls, dataset) -> CrystalIndex:
        """Index of a :class:`~cgcnn.data.datasets.CrystalDataset` (``ids``, ``formulas``, ``offsets``)."""
        ids = [str(i) for i in dataset.ids]
        sizes = [int(n) for n in np.diff(dataset.offsets)]
        formulas = [str(f) for f in dataset.formulas]

        def tied(crystal: str) -> bool:
            return neighbour_tie(dataset.structure(crystal), GraphParams()) is not None

        return cls(
            dict(zip(ids, sizes, strict=True)),
            dict(zip(ids, formulas, strict=True)),
            default_crystal(ids, formulas, sizes, tied),
        )


def default_crystal(
    ids: Sequence[str],
    formulas: Sequence[str],
    n_atoms: Sequence[int],
    tied: Callable[[str], bool] = lambda crystal: False,
) -> str:
    """The crystal the viewer opens on: the smallest untied cell of the first of :data:`DEFAULT_FORMULAS` present.

    ``tied`` says whether a crystal has a neighbour tie at the cut (:func:`cgcnn.data.graph.neighbour_tie`); such
    a crystal is skipped, so the first view every class sees predicts what ``predict`` gives for its CIF.
    Deterministic (equal sizes go to the first id in dataset order); a dataset without any of them opens on its
    first untied crystal of 3 atoms or more, else its first.
    """
    formulas = [str(f) for f in formulas]
    for formula in DEFAULT_FORMULAS:
        hits = sorted((k for k, f in enumerate(formulas) if f == formula), key=lambda k: (int(n_atoms[k]), k))
        for k in hits:
            if not tied(str(ids[k])):
                return str(ids[k])
    several = [k for k, n in enumerate(n_atoms) if int(n) >= 3]
    untied = next((k for k in several if not tied(str(ids[k]))), None)
    return str(ids[untied if untied is not None else several[0] if several else 0])


def default_model(models: Sequence[str]) -> str:
    """The first of :data:`PREFERRED_MODELS` on offer, else the first model, else :data:`NO_MODEL`."""
    for name in PREFERRED_MODELS:
        if name in models:
            return name
    real = [m for m in models if m != NO_MODEL]
    return real[0] if real else NO_MODEL


def parse_view(
    params: Mapping[str, Any],
    crystals: Container[str],
    models: Sequence[str],
    shape: Callable[[str], ModelShape],
    default: ViewState,
    ensemble_members: Callable[[str], Container[str]] = lambda first: (),
    n_atoms: Callable[[str], int | None] = lambda crystal: None,
) -> tuple[ViewState, list[str]]:
    """The :class:`ViewState` that ``params`` (query parameters, or widget values as strings) ask for.

    Every value is checked against what can be shown; a bad one (unknown crystal or model, a layer the model
    lacks, text where a number goes) takes its default and is listed, so the page can say what it ignored.

    Args:
        params: values by :data:`URL_KEYS`; missing keys take their defaults.
        crystals: ids that can be shown.
        models: model names on offer (may include :data:`NO_MODEL`).
        shape: a model's convolutions and heads (may raise ``CGCNNError`` for a model it cannot read).
        default: the view shown when nothing is asked; its ``layer`` and ``head`` are replaced by the chosen
            model's defaults (last layer; head 1 of a multi-head model).
        ensemble_members: names that may join a model in an ensemble.
        n_atoms: atoms of a crystal (None: unknown, not checked).

    Returns:
        ``(state, ignored)`` where ``ignored`` names each ``key=value`` that was replaced by its default.
    """
    ignored: list[str] = []

    def text(key: str) -> str | None:
        value = params.get(key)
        return None if value is None else str(value)

    def bad(key: str) -> None:
        ignored.append(f"{key}={text(key)}")

    crystal = text("crystal")
    if crystal is None:
        crystal = default.crystal
    elif crystal not in crystals:
        bad("crystal")
        crystal = default.crystal

    model, model_shape = default.model, None
    wanted = text("model")
    if wanted == NO_MODEL:  # its label has a comma: not an ensemble
        model = NO_MODEL
    elif wanted is not None:
        names = list(dict.fromkeys(p.strip() for p in wanted.split(",") if p.strip()))
        if not names or names[0] not in models:
            bad("model")
        else:
            allowed = ensemble_members(names[0]) if len(names) > 1 else ()
            extra = [n for n in names[1:] if n in allowed]
            if len(extra) < len(names) - 1:
                ignored.append(f"model={wanted} (members {', '.join(n for n in names[1:] if n not in extra)})")
            model = ",".join([names[0], *extra]) if names[0] != NO_MODEL else NO_MODEL
    if model != NO_MODEL:
        try:
            model_shape = shape(model.split(",")[0])
        except CGCNNError:
            bad("model")
            model = default_model([m for m in models if m != model.split(",")[0]])
            model_shape = shape(model) if model != NO_MODEL else None
    n_conv = model_shape.n_conv if model_shape else 1
    n_heads = model_shape.n_heads if model_shape else 1

    def integer(key: str, fallback: int, low: int, high: int | None) -> int:
        value = text(key)
        if value is None:
            return fallback
        try:
            number = int(value)
        except ValueError:
            number = None
        if number is None or number < low or (high is not None and number > high):
            bad(key)
            return fallback
        return number

    def choice(key: str, options: Container[str], fallback: str) -> str:
        value = text(key)
        if value is None:
            return fallback
        if value not in options:
            bad(key)
            return fallback
        return value

    def flag(key: str, fallback: bool) -> bool:
        value = text(key)
        if value is None:
            return fallback
        if value.lower() not in ("0", "1", "true", "false"):
            bad(key)
            return fallback
        return value.lower() in ("1", "true")

    head: int | None = None
    if n_heads > 1:
        head = None if text("head") == "mean" else integer("head", 1, 1, n_heads)
    atoms = n_atoms(crystal)
    state = ViewState(
        crystal=crystal,
        model=model,
        layer=integer("layer", n_conv, 1, n_conv),
        head=head,
        atom=integer("atom", default.atom, 0, None if atoms is None else atoms - 1),
        edges=choice("edges", EDGE_MODES, default.edges),
        top_k=integer("k", default.top_k, 1, MAX_TOP_K),
        colour=choice("colour", COLOURINGS, default.colour),
        colour_atoms=flag("atoms", default.colour_atoms),
        fixed_range=flag("fixed", default.fixed_range),
        heads=n_heads,
        remove=integer("remove", default.remove, 0, faithfulness_view.MAX_REMOVE),
        removal=choice("removal", faithfulness_view.REMOVAL_LABELS, default.removal),
    )
    return state, ignored


def widget_values(state: ViewState) -> dict[str, Any]:
    """The page's widget values (by key of :data:`WIDGET_KEYS`) that show ``state``."""
    members = state.members
    return {
        "view_crystal": state.crystal,
        "view_model": members[0] if members else NO_MODEL,
        "view_ensemble": members[1:],
        "view_layer": state.layer,
        "view_head": 0 if state.head is None else state.head,
        "view_atom": state.atom,
        "view_mode": EDGE_MODES[state.edges],
        "view_topk": state.top_k,
        "view_colour_by": COLOURINGS[state.colour],
        "view_contrib": state.colour_atoms,
        "view_fixed": state.fixed_range,
        "view_remove": state.remove,
        "view_removal": faithfulness_view.REMOVAL_LABELS[state.removal],
    }


def params_from_widgets(values: Mapping[str, Any]) -> dict[str, str]:
    """Query parameters from the page's widget values (the inverse of :func:`widget_values`; absent keys skipped)."""
    out: dict[str, str] = {}
    modes = {label: key for key, label in EDGE_MODES.items()}
    colourings = {label: key for key, label in COLOURINGS.items()}
    if values.get("view_crystal") is not None:
        out["crystal"] = str(values["view_crystal"])
    if values.get("view_model") is not None:
        first = str(values["view_model"])
        extra = [str(m) for m in values.get("view_ensemble") or [] if str(m) != first]
        out["model"] = ",".join([first, *extra]) if first != NO_MODEL else NO_MODEL
    simple = {"view_layer": "layer", "view_atom": "atom", "view_topk": "k", "view_remove": "remove"}
    for key, name in simple.items():
        if values.get(key) is not None:
            out[name] = str(int(values[key]))
    if values.get("view_head") is not None:
        out["head"] = "mean" if int(values["view_head"]) == 0 else str(int(values["view_head"]))
    if values.get("view_mode") in modes:
        out["edges"] = modes[values["view_mode"]]
    if values.get("view_colour_by") in colourings:
        out["colour"] = colourings[values["view_colour_by"]]
    for key, name in (("view_contrib", "atoms"), ("view_fixed", "fixed")):
        if values.get(key) is not None:
            out[name] = "1" if values[key] else "0"
    removals = {label: key for key, label in faithfulness_view.REMOVAL_LABELS.items()}
    if values.get("view_removal") in removals:
        out["removal"] = removals[values["view_removal"]]
    return out


def ensemble_options(first: str, store=None) -> list[str]:
    """Models that can join ``first`` in a seed ensemble: other saved models and finished runs of its target.

    Runs are offered as ``run:ID`` (as ``predict --model run:A,run:B`` takes them), named runs by their name.
    """
    from cgcnn.runs.store import RunStore
    from cgcnn.zoo import list_cards

    if first == NO_MODEL:
        return []
    store = store or RunStore()
    cards = {c.name: c for c in list_cards(store)}
    mine = cards.get(first)
    if mine is None:
        return []
    names = [n for n, c in cards.items() if n != first and c.targets == mine.targets and c.task == mine.task]
    named_runs = {c.details.get("run_id") for c in cards.values() if c.kind == "run"}
    for record in store.list_runs(status="done"):
        if record.checkpoint_path and record.id not in named_runs and [str(record.target)] == mine.targets:
            names.append(f"run:{record.id}")
    return names


@dataclass
class CrystalView:
    """One view of a crystal: the scene's HTML, its edge table and what the page says about it.

    ``info`` holds ``n_atoms``, ``formula``, ``drawn_edges``, ``graph_edges``, ``ghosts``, ``truncated``,
    ``species``, ``edge_label`` and ``atom_label`` (what the two colour bars show, '' when none); with a model
    also ``n_layers``, ``n_heads``, ``kind`` (``attention`` or ``gate``), ``prediction``, ``contrib_mean``,
    ``units``, ``target``, ``value_range`` (the edges' colour range) and, for an ensemble, ``std`` and
    ``members`` (each member's prediction, by name).
    """

    html: str
    table: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)


def predict_result(
    model: Predictor | Ensemble, structure: Structure, graph_of: GraphBuilder = structure_to_graph
) -> CrystalPrediction:
    """One crystal through :func:`cgcnn.nn.predictor.predict_crystals` (the CLI's and the Predict page's path).

    Raises:
        CrystalInputError: a crystal the graph builder refuses.
    """
    build = None if graph_of is structure_to_graph else (lambda name, s, params, options: graph_of(s, params))
    (result,) = predict_crystals(model, [(structure.composition.reduced_formula, structure)], build_graph=build)
    if result.error:
        raise CrystalInputError(result.error)
    return result


def predict_one(
    model: Predictor | Ensemble, structure: Structure, graph_of: GraphBuilder = structure_to_graph
) -> tuple[float, float | None, dict[str, float]]:
    """``(prediction, std or None, {member: prediction})`` of one crystal, first target, as ``predict`` prints it.

    The numbers are :func:`cgcnn.nn.predictor.predict_crystals`' (the CLI's and the Predict page's path); this
    only picks the first target.

    Raises:
        CGCNNError: a crystal the graph builder refuses.
    """
    result = predict_result(model, structure, graph_of)
    if result.std is None or result.members is None:
        return float(result.values[0]), None, {}
    members = dict(zip(model.names, map(float, result.members[:, 0]), strict=True))
    return float(result.values[0]), float(result.std[0]), members


def layer_values(layers: list[np.ndarray], head: int | None) -> list[np.ndarray]:
    """Each layer's edge values for one head (from 0), or the mean of the heads (``head`` None or too large)."""
    return [w[:, head] if head is not None and head < w.shape[1] else w.mean(axis=1) for w in layers]


def crystal_view(
    structure: Structure,
    predictor: Predictor | None,
    layer: int,
    head: int | None = None,
    focus: int | None = None,
    top_k: int | None = None,
    color_atoms: bool = False,
    width: int | str = "100%",
    height: int = 460,
    attribution: bool = False,
    fixed_range: bool = False,
    ensemble: Ensemble | None = None,
    zoom: float = 1.0,
    png_name: str | None = None,
    png_title: str = "",
    legend_px: int = 13,
    legend_first: bool = False,
    graph_of: GraphBuilder = structure_to_graph,
    remove: int = 0,
    removal: str = "delete",
) -> CrystalView:
    """The 3D view of ``structure``, its edges coloured by ``predictor``'s weights in convolution ``layer``.

    Args:
        structure: the crystal.
        predictor: the model whose edge weights colour the edges; None draws the graph alone (built with the
            original CGCNN graph parameters).
        layer: convolution index from 0 (clamped to the model's last).
        head: attention head to show, from 0 (None or beyond the model's heads: their mean).
        focus: draw only this atom's edges.
        top_k: draw each atom's ``top_k`` strongest edges.
        color_atoms: colour atoms by their contribution (see :func:`cgcnn.analysis.explain.atom_contributions`),
            or with ``attribution`` by their occlusion attribution.
        width: width of the scene (pixels or CSS, default: its frame's).
        height: height of the scene in pixels.
        attribution: colour edges (and atoms) by occlusion attribution (:mod:`cgcnn.analysis.attribution`:
            how much removing the edge's message changes the prediction) instead of the layer's weights.
        fixed_range: the edges' colour range spans every layer's values (of this head), not this layer's drawn
            edges: the same colour is the same weight in every layer.
        ensemble: a seed ensemble ``predictor`` belongs to: the prediction is its mean, with ``std`` and
            ``members``; the picture stays ``predictor``'s.
        zoom: extra zoom after fitting the scene to its frame.
        png_name: file name of the *Download PNG* button (None: no button).
        png_title: the PNG's title line (see :func:`png_title`).
        legend_px: text size of the legend and colour bars.
        legend_first: legend and colour bars above the 3D view (presentation mode).
        graph_of: how the graph is built (an upload's: in the parse pool, see
            :func:`cgcnn.app.uploads.graph_builder_for_upload`).
        remove: remove the ``remove`` edges the colouring ranks first and predict again, beside as many random
            edges (``info["removal"]``: :func:`cgcnn.analysis.faithfulness.remove_top`'s report); they are drawn
            dashed red. 0: off.
        removal: ``delete`` or ``zero`` (how those edges are removed).

    With a model, ``info["faithfulness"]`` is the colouring's measured faithfulness from the shipped results
    (:func:`cgcnn.app.faithfulness_view.shipped_evidence`), also written under the edges' colour bar, and
    ``info["colouring_method"]`` the ranking the colouring is (its faithfulness key).

    Occlusion needs one forward pass per edge; past :data:`OCCLUSION_MAX_ATOMS` atoms the colours are
    gradient × input instead (one backward pass) and ``info["attribution_note"]`` says so.

    Raises:
        CGCNNError: a crystal the graph builder refuses.
    """
    params = predictor.graph_params if predictor is not None else GraphParams()
    info: dict[str, Any] = {"n_atoms": len(structure), "formula": structure.composition.reduced_formula}
    info["tie"] = tie_note(structure, params)  # '' without a tie at the cut
    graph = graph_of(structure, params)
    values, atom_values, label, value_range = None, None, "", None
    marked, marked_label, value_note = None, "", ""
    if predictor is not None:
        layers, kind = explain.edge_weight_layers(predictor, graph)
        info.update(n_layers=len(layers), n_heads=layers[0].shape[1], kind=kind)
        layer = min(layer, len(layers) - 1)
        per_layer = layer_values(layers, head)
        values = per_layer[layer]
        which = "" if layers[0].shape[1] == 1 else (f", head {head + 1}" if head is not None else ", mean of heads")
        label = f"{'attention' if kind == 'attention' else 'gate'} (conv {layer + 1}{which})"
        if fixed_range:
            real = np.concatenate([v[graph.edge_mask] for v in per_layer])
            value_range = (float(real.min()), float(real.max())) if real.size else None
        contrib, mean, _ = explain.atom_contributions(predictor, graph)
        result = predict_result(ensemble if ensemble is not None else predictor, structure, graph_of)
        info.update(prediction=float(result.values[0]), contrib_mean=mean, units=predictor.card.units)
        info["target"] = predictor.targets[0]
        if result.std is not None and result.members is not None and ensemble is not None:
            each = dict(zip(ensemble.names, map(float, result.members[:, 0]), strict=True))
            info.update(std=float(result.std[0]), members=each)
        if result.interval is not None:
            info["interval"] = result.interval
        if result.far is not None:
            info.update(distance=result.distance, far=result.far)
        atom_label = f"contribution ({predictor.card.units})" if predictor.card.units else "contribution"
        if color_atoms:
            atom_values = contrib
        if attribution and graph.n_atoms > OCCLUSION_MAX_ATOMS:
            edge_grad, atom_grad = gradient_attribution(predictor, graph)
            values, label, value_range = edge_grad, f"gradient × input ({predictor.card.units})", None
            atom_values = atom_grad if color_atoms else None
            atom_label = f"gradient × input ({predictor.card.units})"
            info["attribution_note"] = (
                f"Occlusion is computed for crystals of up to {OCCLUSION_MAX_ATOMS} atoms (one prediction per edge); "
                f"this one has {graph.n_atoms}, so the colours are gradient × input, its one-pass estimate."
            )
        elif attribution:
            result = attribute(predictor, graph)
            values, label, value_range = result.edge_occlusion, f"occlusion attribution ({predictor.card.units})", None
            atom_values = result.atom_occlusion if color_atoms else None
            atom_label = f"occlusion ({predictor.card.units})"
        method = colouring_method(predictor, graph, layer, head, attribution)
        evidence = faithfulness_view.shipped_evidence(predictor.card.name, method)
        info.update(colouring_method=method, faithfulness=evidence)
        value_note = evidence.short
        if remove > 0:
            report, marked = faithfulness.remove_top_edges(predictor, graph, remove, method, removal)
            info["removal"] = report
            info["removal_text"] = faithfulness_view.removal_text(
                report, method, predictor.card.units, ensemble=ensemble is not None
            )
            marked_label = f"the {report['removed']} edges removed: ranked first by this colouring"
    scene = crystal_scene.scene_from_structure(
        structure,
        graph,
        values,
        focus_atom=focus,
        top_k=top_k,
        atom_values=atom_values,
        value_label=label,
        atom_value_label=atom_label if atom_values is not None else "",
        value_range=value_range,
        marked_edges=marked,
        marked_label=marked_label,
        value_note=value_note,
    )
    info.update(
        drawn_edges=len(scene.edges),
        graph_edges=scene.n_graph_edges,
        ghosts=len(scene.ghosts),
        truncated=scene.truncated,
        species=[a.element for a in scene.atoms],
        edge_label=scene.value_label if scene.value_range is not None else "",
        atom_label=scene.atom_value_label if scene.atom_value_range is not None else "",
        value_range=scene.value_range,
    )
    html = crystal_scene.scene_html(
        scene, width=width, height=height, zoom=zoom, png_name=png_name, png_title=png_title,
        legend_px=legend_px, legend_first=legend_first,
    )  # fmt: skip
    return CrystalView(html, crystal_scene.edge_table(scene), info)


def png_title(formula: str, state: ViewState) -> str:
    """The downloaded picture's title: crystal, model, layer, head and colouring.

    E.g. ``SrTiO3 · own-attention-4head · conv 2 · head 1 · edges: attention or gate``.
    """
    if not state.members:
        return f"{formula} · crystal graph (no model)"
    parts = [formula, state.model.replace(",", " + "), f"conv {state.layer}"]
    if state.heads > 1:
        parts.append("mean of heads" if state.head is None else f"head {state.head}")
    colouring = "occlusion attribution" if state.colour == "occlusion" else "attention or gate"
    parts.append(f"edges: {colouring}" + (", atoms coloured" if state.colour_atoms else ""))
    if state.remove:
        parts.append(f"top {state.remove} removed ({state.removal}, dashed red)")
    return " · ".join(parts)


def view_of_state(
    structure: Structure,
    state: ViewState,
    load: Callable[[str], Predictor | Ensemble],
    height: int = 460,
    zoom: float = 1.0,
    legend_px: int = 13,
    legend_first: bool = False,
    graph_of: GraphBuilder = structure_to_graph,
) -> CrystalView:
    """The :class:`CrystalView` of ``state`` for ``structure`` (a dataset crystal or an uploaded file).

    Args:
        structure: the crystal shown.
        state: what to show (see :class:`ViewState`); nothing else decides the picture or the numbers.
        load: a model by name (the app's cached loader; :func:`cgcnn.zoo.load_model_or_ensemble` works too:
            a shipped ensemble predicts, drawn with its first member's weights).
        height: scene height in pixels.
        zoom: extra zoom after fitting (presentation mode fills the frame).
        legend_px: text size of the legend and colour bars (16 in presentation mode).
        legend_first: legend and colour bars above the 3D view (presentation mode: above the fold).
        graph_of: how the graph is built (see :func:`crystal_view`).

    Raises:
        CGCNNError: the atom index is not in the crystal, ensemble members that do not fit together, or a
            crystal the graph builder refuses.
    """
    loaded = [load(name) for name in state.members]
    shipped = loaded[0] if len(loaded) == 1 and isinstance(loaded[0], Ensemble) else None  # e.g. a zoo ensemble
    members = [p for m in loaded for p in (m.members if isinstance(m, Ensemble) else [m])]
    if state.edges == "atom" and members and not 0 <= state.atom < len(structure):
        raise CGCNNError(f"This crystal has {len(structure)} atoms: choose an atom index from 0 to "
                         f"{len(structure) - 1}.")  # fmt: skip
    name = f"{structure.composition.reduced_formula}_{state.members[0] if members else 'graph'}"
    name = name.replace(":", "-")
    return crystal_view(
        structure,
        members[0] if members else None,
        state.layer - 1,
        None if state.head is None else state.head - 1,
        state.atom if state.edges == "atom" and members else None,
        state.top_k if state.edges == "top" and members else None,
        state.colour_atoms,
        height=height,
        attribution=state.colour == "occlusion",
        fixed_range=state.fixed_range,
        ensemble=shipped or (Ensemble(members) if len(members) > 1 else None),
        zoom=zoom,
        png_name=f"{name}_conv{state.layer}.png" if members else f"{name}.png",
        png_title=png_title(structure.composition.reduced_formula, state),
        legend_px=legend_px,
        legend_first=legend_first,
        graph_of=graph_of,
        remove=state.remove if members else 0,
        removal=state.removal,
    )


def colouring_method(predictor: Predictor, graph: CrystalGraph, layer: int, head: int | None, attribution: bool) -> str:
    """The faithfulness ranking the viewer paints on the edges (its key in the shipped results).

    The layer's attention (a head or the heads' mean) or gate, occlusion (``delete``), or gradient × input where
    occlusion is not computed (past :data:`OCCLUSION_MAX_ATOMS` atoms). ``layer`` and ``head`` count from 0 as
    in :func:`crystal_view`; a head beyond the model's means their mean.
    """
    config = predictor.model.config
    kind = "gate" if config.conv == "gated" else "attention"
    heads = int(config.conv_options.get("heads", 1)) if kind == "attention" else 1
    layer = min(max(layer, 0), int(config.n_conv) - 1)
    head = head if heads > 1 and head is not None and 0 <= head < heads else None
    return faithfulness_view.colouring_method(kind, layer, head, attribution, graph.n_atoms, OCCLUSION_MAX_ATOMS)


def curve_state(state: ViewState) -> ViewState:
    """``state`` without what the deletion curve does not depend on (edge filter, atom colours, N removed).

    So the page keeps one cache entry per crystal, model, layer, head, colouring and removal mode.
    """
    return replace(state, atom=0, edges="top", top_k=2, colour_atoms=False, fixed_range=False, remove=0)


def curve_of_state(
    structure: Structure,
    state: ViewState,
    load: Callable[[str], Predictor | Ensemble],
    graph_of: GraphBuilder = structure_to_graph,
) -> dict[str, Any] | str | None:
    """This crystal's deletion curve for the colouring ``state`` paints, against random (None: no model).

    The first model's (the one whose weights colour the picture), removed in ``state.removal`` mode; a sentence
    instead when the crystal is too large or skipped (see :func:`cgcnn.app.faithfulness_view.crystal_curve`).
    """
    if not state.members:
        return None
    first = load(state.members[0])
    predictor = first.members[0] if isinstance(first, Ensemble) else first
    graph = graph_of(structure, predictor.graph_params)
    head = None if state.head is None else state.head - 1
    method = colouring_method(predictor, graph, state.layer - 1, head, state.colour == "occlusion")
    return faithfulness_view.crystal_curve(predictor, graph, method, state.removal)


def model_shape(name: str, store=None) -> ModelShape:
    """Convolutions and attention heads of a zoo model, read from its checkpoint's config (no weights loaded).

    Raises:
        CGCNNError: a name the zoo does not know, or a run without a model.
    """
    from cgcnn.zoo import ensemble_manifests, model_config

    shipped = ensemble_manifests().get(name)  # a zoo ensemble is drawn with its first member's weights
    config = model_config(shipped["members"][0] if shipped else name, store)
    heads = int(config.conv_options.get("heads", 1)) if config.conv != "gated" else 1
    return ModelShape(n_conv=int(config.n_conv), n_heads=max(heads, 1))
