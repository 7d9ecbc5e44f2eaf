"""The crystal viewer's computation: a crystal's graph, one layer's edge weights and the 3D scene to draw.

The viewer page picks a crystal, a model, a layer, a head and how many edges to show; :func:`crystal_view`
turns those choices into the HTML of the 3D scene, the table of drawn edges and the facts the page prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pymatgen.core import Structure

from cgcnn.analysis import explain, viz
from cgcnn.analysis.attribution import attribute
from cgcnn.data.graph import GraphParams, structure_to_graph
from cgcnn.nn.predictor import Predictor


@dataclass
class CrystalView:
    """One view of a crystal: the scene's HTML, its edge table and what the page says about it.

    ``info`` holds ``n_atoms``, ``formula``, ``drawn_edges``, ``graph_edges``, ``ghosts``, ``truncated`` and
    ``species``; with a model also ``n_layers``, ``n_heads``, ``kind`` (``attention`` or ``gate``),
    ``prediction``, ``contrib_mean``, ``units`` and ``target``.
    """

    html: str
    table: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)


def crystal_view(
    structure: Structure,
    predictor: Predictor | None,
    layer: int,
    head: int | None = None,
    focus: int | None = None,
    top_k: int | None = None,
    color_atoms: bool = False,
    width: int = 720,
    height: int = 460,
    attribution: bool = False,
) -> CrystalView:
    """The 3D view of ``structure``, its edges coloured by ``predictor``'s weights in convolution ``layer``.

    Args:
        structure: the crystal.
        predictor: the model whose edge weights colour the edges; None draws the graph alone (built with the
            original CGCNN graph parameters).
        layer: convolution index from 0 (clamped to the model's last).
        head: attention head to show (None or beyond the model's heads: their mean).
        focus: draw only this atom's edges.
        top_k: draw each atom's ``top_k`` strongest edges.
        color_atoms: colour atoms by their contribution (see :func:`cgcnn.analysis.explain.atom_contributions`),
            or with ``attribution`` by their occlusion attribution.
        width: width of the scene in pixels.
        height: height of the scene in pixels.
        attribution: colour edges (and atoms) by occlusion attribution (:mod:`cgcnn.analysis.attribution`:
            how much removing the edge's message changes the prediction) instead of the layer's weights.

    Raises:
        CGCNNError: a crystal the graph builder refuses.
    """
    info: dict[str, Any] = {"n_atoms": len(structure), "formula": structure.composition.reduced_formula}
    graph = structure_to_graph(structure, predictor.graph_params if predictor is not None else GraphParams())
    values, atom_values, label = None, None, ""
    if predictor is not None:
        layers, kind = explain.edge_weight_layers(predictor, graph)
        info.update(n_layers=len(layers), n_heads=layers[0].shape[1], kind=kind)
        layer = min(layer, len(layers) - 1)
        chosen = layers[layer]
        values = chosen[:, head] if head is not None and head < chosen.shape[1] else chosen.mean(axis=1)
        label = f"{'attention' if kind == 'attention' else 'gate'} (conv {layer + 1})"
        contrib, mean, prediction = explain.atom_contributions(predictor, graph)
        info.update(prediction=prediction, contrib_mean=mean, units=predictor.card.units, target=predictor.targets[0])
        if color_atoms:
            atom_values = contrib
        if attribution:
            result = attribute(predictor, graph)
            values, label = result.edge_occlusion, f"occlusion attribution ({predictor.card.units})"
            atom_values = result.atom_occlusion if color_atoms else None
    scene = viz.scene_from_structure(
        structure,
        graph,
        values,
        focus_atom=focus,
        top_k=top_k,
        atom_values=atom_values,
        value_label=label,
        atom_value_label="atom occlusion" if attribution else "atom contribution",
    )
    info.update(
        drawn_edges=len(scene.edges),
        graph_edges=scene.n_graph_edges,
        ghosts=len(scene.ghosts),
        truncated=scene.truncated,
        species=[a.element for a in scene.atoms],
    )
    return CrystalView(viz.scene_html(scene, width=width, height=height), viz.edge_table(scene), info)
