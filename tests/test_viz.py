"""The crystal scene (cgcnn.analysis.crystal_scene) and the figures (cgcnn.analysis.figures), without Streamlit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import read
from pymatgen.core import Lattice, Structure

from cgcnn.analysis import colors, crystal_scene, figures
from cgcnn.data.graph import GraphParams, structure_to_graph


@pytest.fixture(scope="module")
def nacl():
    """Rock-salt NaCl, primitive cell: 2 atoms, each with 6 unlike neighbours at a/2 and like ones at a/√2."""
    a = 5.64
    lattice = Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]])
    structure = Structure(lattice, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return structure, structure_to_graph(structure, GraphParams())


def test_nacl_scene_counts_and_ghost_positions(nacl):
    structure, graph = nacl
    assert graph.edge_mask.all() and len(graph.edge_src) == 24
    scene = crystal_scene.scene_from_structure(structure, graph, dedupe=False)
    assert len(scene.atoms) == 2 and len(scene.edges) == 24 and len(scene.cell_lines) == 12
    lattice = structure.lattice.matrix
    for edge in scene.edges:
        j, image = edge.neighbour, np.array(edge.image)
        expected = (structure.frac_coords[j] + image) @ lattice
        assert np.allclose(edge.end, expected, atol=1e-3)
        assert np.allclose(edge.start, structure.cart_coords[edge.centre], atol=1e-3)
        assert np.linalg.norm(np.subtract(edge.end, edge.start)) == pytest.approx(edge.distance, abs=1e-3)
    # every edge that leaves the cell ends on a ghost sphere at the image position, drawn once
    ghosts = {(g.index, g.image): g for g in scene.ghosts}
    crossing = {(e.neighbour, e.image) for e in scene.edges if any(e.image)}
    assert set(ghosts) == crossing and len(scene.ghosts) == len(crossing) > 0
    for (j, image), ghost in ghosts.items():
        assert np.allclose(ghost.position, (structure.frac_coords[j] + np.array(image)) @ lattice, atol=1e-3)
        assert ghost.ghost and ghost.element == structure[j].specie.symbol
    # nearest neighbours of Na are the six Cl at a/2
    na_edges = sorted((e for e in scene.edges if e.centre == 0), key=lambda e: e.distance)[:6]
    assert {structure[e.neighbour].specie.symbol for e in na_edges} == {"Cl"}
    assert all(e.distance == pytest.approx(2.82, abs=1e-3) for e in na_edges)


def test_reverse_twins_are_drawn_once(nacl):
    _, graph = nacl
    keep = crystal_scene.select_edges(graph)
    pairs = {(int(graph.edge_dst[e]), int(graph.edge_src[e]), *map(int, graph.images[e])) for e in keep}
    for i, j, *img in pairs:
        assert (j, i, *(-x for x in img)) not in pairs or (i, j, *img) == (j, i, *(-x for x in img))
    # Na-Cl bonds (6 per atom, each the twin of one of the other atom's) appear 6 times, not 12
    unlike = [p for p in pairs if p[0] != p[1]]
    assert len(unlike) == 6


def test_html_draws_one_cylinder_per_edge_and_loads_3dmol_locally(nacl):
    structure, graph = nacl
    html = crystal_scene.crystal_scene_html(structure, graph, dedupe=False)
    counts = crystal_scene.count_drawn(html)
    scene = crystal_scene.scene_from_structure(structure, graph, dedupe=False)
    assert counts == {"cylinders": 24, "dashed": 0, "spheres": 2 + len(scene.ghosts), "lines": 12}
    assert crystal_scene.LOCAL_3DMOL_URL in html
    assert "cdn" not in html.lower() and "https://" not in html
    assert html.count('"opacity": 0.35') == len(scene.ghosts)
    assert colors.element_color("Na") in html and colors.element_color("Cl") in html  # legend and atoms


def test_colours_and_radii_follow_the_values(nacl):
    structure, graph = nacl
    values = np.linspace(0.0, 1.0, len(graph.edge_src))
    scene = crystal_scene.scene_from_structure(structure, graph, values, focus_atom=0, value_label="gate")
    assert len(scene.edges) == 12 and all(e.centre == 0 for e in scene.edges)
    assert scene.value_range == (pytest.approx(values[:12].min()), pytest.approx(values[:12].max()))
    low = min(scene.edges, key=lambda e: e.value)
    high = max(scene.edges, key=lambda e: e.value)
    assert low.color == colors.value_colors(np.array([0.0]), 0, 1)[0]  # bottom of Viridis (dark purple)
    assert high.color == colors.value_colors(np.array([1.0]), 0, 1)[0]  # top of Viridis (yellow)
    assert high.radius > low.radius
    radii = [e.radius for e in sorted(scene.edges, key=lambda e: e.value)]
    assert radii == sorted(radii)
    html = crystal_scene.scene_html(scene)
    assert high.color in html and low.color in html and "cgcnn-colorbar" in html and "gate" in html
    table = crystal_scene.edge_table(scene)
    assert list(table["coefficient"]) == sorted(table["coefficient"], reverse=True)
    assert set(table.columns) >= {"neighbour", "element", "distance (Å)", "image", "coefficient"}


def test_top_k_keeps_each_atoms_strongest(nacl):
    structure, graph = nacl
    values = np.random.default_rng(0).random(len(graph.edge_src))
    scene = crystal_scene.scene_from_structure(structure, graph, values, top_k=3)
    assert len(scene.edges) == 6
    for centre in (0, 1):
        mine = values[centre * 12 : centre * 12 + 12]
        drawn = sorted(e.value for e in scene.edges if e.centre == centre)
        assert drawn == pytest.approx(sorted(mine)[-3:])


def test_atom_values_colour_atoms_and_ghosts(nacl):
    structure, graph = nacl
    scene = crystal_scene.scene_from_structure(structure, graph, atom_values=np.array([-1.0, 2.0]))
    assert scene.atom_value_range == (-1.0, 2.0)
    assert scene.atoms[0].color != scene.atoms[1].color
    assert all(g.color == scene.atoms[g.index].color for g in scene.ghosts)


def test_real_cif_scene(cif_dir):
    mp_id = sorted(p.stem for p in cif_dir.glob("*.cif"))[0]
    structure = read(mp_id)
    graph = structure_to_graph(structure, GraphParams())
    scene = crystal_scene.scene_from_structure(structure, graph, dedupe=False)
    assert len(scene.edges) == int(graph.edge_mask.sum())
    assert scene.n_graph_edges == int(graph.edge_mask.sum())
    frac = structure.frac_coords
    for e in scene.edges[:50]:
        assert np.allclose(e.end, (frac[e.neighbour] + np.array(e.image)) @ structure.lattice.matrix, atol=1e-3)
    small = crystal_scene.scene_from_structure(structure, graph, dedupe=False, max_edges=5)
    assert len(small.edges) == 5 and small.truncated


def test_mismatched_values_are_refused(nacl):
    structure, graph = nacl
    with pytest.raises(ValueError, match="one value per edge"):
        crystal_scene.scene_from_structure(structure, graph, np.zeros(5))


# Data frames written as tables:
# fmt: off
def test_figures_build():
    epochs = pd.DataFrame(
        {"run_id": ["a"] * 3 + ["b"] * 3, "epoch": [1, 2, 3] * 2, "train_loss": np.arange(6.0), "val_loss": 1.0,
         "train_mae": 0.5, "val_mae": 0.4, "seconds": 1.0, "lr": 0.003}
    )
    assert len(figures.curves_figure(epochs, "mae").data) == 4
    preds = pd.DataFrame({"crystal_id": ["x", "y"], "split": "test", "y_true": [1.0, 2.0], "y_pred": [1.5, 2.0]})
    assert "MAE 0.250" in figures.parity_figure(preds, "eV").layout.title.text
    cells = pd.DataFrame({"row": ["combined"], "pretrained": ["own-combined"], "freeze": [1], "mean": [0.8],
                          "std": [0.01], "n": [3]})
    study = pd.DataFrame({"row": ["combined", "scratch"], "freeze": [1, 0], "mae": [0.82, 0.812]})
    fig = figures.table2_heatmap(cells, study)
    assert len(fig.data) == 2 and "0.800 ± 0.010" in str(fig.data[0].text)
    layers = pd.DataFrame({"layer": ["embedding", "convs.0"], "params": [10, 20], "state": ["frozen", "kept"]})
    assert len(figures.layer_diagram(layers).layout.shapes) == 2
    assert len(figures.histograms_figure(pd.DataFrame({"a": [1.0, 2.0], "b": [np.nan, 1.0]})).data) == 2


def test_layer_diagram_counts_convolutions_from_one_like_the_slider():
    layers = pd.DataFrame(
        {"layer": ["embedding", "convs.0", "convs.1", "conv_to_fc", "fcs.0", "fc_out"],
         "params": [5952, 22144, 22144, 8320, 16512, 129], "state": ["frozen", "frozen", "kept", "re-initialised",
                                                                      "re-initialised", "re-initialised"]}
    )
    fig = figures.layer_diagram(layers)
    texts = [a.text for a in fig.layout.annotations if a.text]
    assert [t.split("<br>")[0] for t in texts] == [
        "<b>embedding</b>", "<b>conv 1</b>", "<b>conv 2</b>", "<b>pool → dense</b>", "<b>dense 2</b>", "<b>output</b>"
    ]
    assert "22.1k" in texts[1] and "convs.0" not in "".join(texts)
    hover = fig.data[0].hovertext
    assert hover[1] == "conv 1: 22,144 parameters, frozen"  # one numbering everywhere (issue 24)
    assert max(len(t.split("<br>")[0]) for t in texts) <= len("<b>pool → dense</b>")  # short enough for 1280 px


def test_heatmap_is_readable_and_names_its_source():
    cells = pd.DataFrame({"row": ["scratch", "combined"], "pretrained": ["none", "own-combined"], "freeze": [0, 1],
                          "mean": [0.588, 0.553], "std": [np.nan, 0.012], "n": [1, 5]})
    fig = figures.table2_heatmap(cells, source="shipped results (5 seeds per cell)")
    assert fig.layout.annotations[0].text == "shipped results (5 seeds per cell)"
    assert fig.data[0].textfont.size >= 14 and fig.data[0].textfont.color == "black"
    text = str(fig.data[0].text)
    assert "0.588<br>n=1 seed" in text and "± 0.000" not in text and "0.553 ± 0.012<br>n=5" in text


def test_curves_have_one_legend_entry_per_run_and_room_for_all():
    epochs = pd.DataFrame({"run_id": np.repeat([f"r{i}" for i in range(12)], 2), "epoch": [1, 2] * 12,
                           "train_mae": 1.0, "val_mae": 0.5, "train_loss": 1.0, "val_loss": 1.0})
    fig = figures.curves_figure(epochs, "mae")
    assert sum(1 for trace in fig.data if trace.showlegend is not False) == 12
    assert fig.layout.margin.b >= 22 * 12  # the legend has a row per run below the axis title


PACKAGE_DIR = Path(crystal_scene.__file__).resolve().parent.parent


def test_user_text_is_escaped_by_one_implementation():
    """The figures, the scene and the app's pages share one escaping module; no picture module keeps a copy."""
    import inspect

    from cgcnn.analysis import markup
    from cgcnn.app import plain

    assert plain.plotly is markup.plotly_text
    assert not (PACKAGE_DIR / "analysis" / "viz.py").exists()  # the old module and its private _plain copy are gone
    for module in (crystal_scene, figures, colors, plain):
        assert "html.escape" not in inspect.getsource(module) and "html_lib" not in inspect.getsource(module)
    run_name = '<a href="http://x">run</a>'
    fig = figures.probe_figure(pd.DataFrame({"model": [run_name], "depth": [0], "mae": [0.1]}))
    assert fig.data[0].name == '&lt;a href="http://x"&gt;run&lt;/a&gt;'
    assert markup.js_file_name("a'); alert(1); ('.png") == "a____alert_1_____.png"
