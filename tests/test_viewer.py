"""The viewer's state and scene (cgcnn.app.viewer): address round trip, defaults, colour ranges, colour maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cgcnn.analysis import colors, crystal_scene
from cgcnn.app import viewer
from cgcnn.data.datasets import load_default_dataset
from cgcnn.zoo import load_model

MODELS = [viewer.NO_MODEL, "band-gap", "own-attention", "own-attention-4head"]
# fmt: off
SHAPES = {"band-gap": viewer.ModelShape(4, 1), "own-attention": viewer.ModelShape(4, 1),
          "own-attention-4head": viewer.ModelShape(4, 4)}


@pytest.fixture(scope="module")
def dataset():
    return load_default_dataset()


def parse(params, default=None):
    default = default or viewer.ViewState(crystal="mp-5229", model="own-attention-4head")
    return viewer.parse_view(
        params, {"mp-5229", "mp-22862"}, MODELS, SHAPES.__getitem__, default,
        ensemble_members=lambda first: {"own-attention", "own-attention-4head"} - {first} if "own" in first else (),
        n_atoms={"mp-5229": 5, "mp-22862": 8}.get,
    )
# fmt: on


def test_default_view_is_a_crystal_without_a_neighbour_tie(dataset):
    """Issue 24: the viewer opened on SrTiO3 (mp-5229), whose 12-neighbour cut splits a shell."""
    from cgcnn.data.graph import GraphParams, neighbour_tie

    index = viewer.CrystalIndex.of(dataset)
    assert index.default == "mp-856" and index.formulas["mp-856"] == "SnO2" and index.n_atoms["mp-856"] == 6
    assert neighbour_tie(dataset.structure(index.default), GraphParams()) is None
    assert neighbour_tie(dataset.structure("mp-5229"), GraphParams()) is not None
    # the smallest cell of the first formula present, skipping tied ones; then any untied crystal of 3+ atoms
    ids, formulas, sizes = ["t", "u", "v", "w"], ["SnO2", "SnO2", "SiO2", "GaAs2"], [6, 12, 9, 3]
    assert viewer.default_crystal(ids, formulas, sizes, lambda c: c == "t") == "u"
    assert viewer.default_crystal(ids, formulas, sizes, lambda c: c in "tu") == "v"
    assert viewer.default_crystal(["a", "b", "c"], ["Pd", "NaCl", "GaAs2"], [1, 3, 3], lambda c: c == "b") == "c"
    assert viewer.CrystalIndex.of(dataset).default == index.default  # deterministic
    assert viewer.default_model(MODELS) == "own-attention-4head"
    assert viewer.default_model([viewer.NO_MODEL, "band-gap"]) == "band-gap"
    assert viewer.default_model([viewer.NO_MODEL]) == viewer.NO_MODEL
    # a dataset without any of the default formulas opens on its first crystal of 3 atoms or more
    assert viewer.default_crystal(["a", "b", "c"], ["Pd", "NaCl", "GaAs2"], [1, 2, 3]) == "c"


@pytest.mark.parametrize(
    "state",
    [
        viewer.ViewState("mp-22862", "own-attention-4head", layer=2, head=3, atom=4, edges="atom", heads=4),
        viewer.ViewState(
            "mp-5229",
            "own-attention-4head",
            head=None,
            edges="all",
            colour="occlusion",
            heads=4,
            layer=4,
            colour_atoms=True,
            fixed_range=True,
        ),
        viewer.ViewState("mp-5229", "own-attention,own-attention-4head", layer=1, edges="top", top_k=5),
        viewer.ViewState("mp-22862", viewer.NO_MODEL),
    ],
)
def test_address_round_trip(state):
    again, ignored = parse(state.to_params())
    assert ignored == [] and again == state
    widgets = viewer.widget_values(state)
    assert parse(viewer.params_from_widgets(widgets))[0] == state


def test_bad_values_fall_back_and_are_named():
    state, ignored = parse({"crystal": "x", "model": "nope", "layer": "5", "head": "9", "atom": "5", "edges": "e",
                            "k": "13", "colour": "c", "atoms": "yes", "fixed": "?"})  # fmt: skip
    assert state == viewer.ViewState("mp-5229", "own-attention-4head", layer=4, head=1, heads=4)
    assert len(ignored) == 10 and "atom=5" in ignored  # SrTiO3 has atoms 0-4
    state, ignored = parse({"model": "band-gap,own-attention"})  # members must share the first one's target
    assert state.model == "band-gap" and ignored
    state, _ = parse({"model": "own-attention,own-attention-4head,own-attention"})
    assert state.members == ["own-attention", "own-attention-4head"]
    state, ignored = parse({"model": viewer.NO_MODEL, "layer": "banana"})
    assert state.model == viewer.NO_MODEL and ignored == ["layer=banana"]


def test_fixed_colour_range_spans_every_layer(dataset):
    structure = dataset.structure("mp-5229")
    predictor = load_model("own-attention-4head")
    graph = predictor.graph(structure)
    from cgcnn.analysis import explain

    layers, _ = explain.edge_weight_layers(predictor, graph)
    head_1 = np.concatenate([w[graph.edge_mask, 0] for w in layers])
    fixed = {
        viewer.crystal_view(structure, predictor, k, head=0, fixed_range=True).info["value_range"] for k in range(4)
    }
    (only,) = fixed
    assert only == (pytest.approx(head_1.min()), pytest.approx(head_1.max()))
    own = {viewer.crystal_view(structure, predictor, k, head=0).info["value_range"] for k in range(4)}
    assert len(own) == 4  # each layer stretched over its own range
    html = viewer.crystal_view(structure, predictor, 0, head=0, fixed_range=True).html
    assert "(fixed over all layers)" in html


def test_edges_and_atoms_have_their_own_colour_maps(dataset):
    structure = dataset.structure("mp-22862")
    predictor = load_model("own-attention")
    view = viewer.crystal_view(structure, predictor, 3, top_k=2, color_atoms=True)
    assert view.info["edge_label"].startswith("attention (conv 4") and view.info["atom_label"].startswith("contrib")
    html = view.html
    edge_bar = html[html.index('data-for="edges"') :].split("</div>")[0]
    atom_bar = html[html.index('data-for="atoms"') :].split("</div>")[0]
    assert "<b>Edges</b>" in edge_bar and "<b>Atoms</b>" in atom_bar
    assert colors.gradient_css(colorscale=colors.VALUE_COLORSCALE) in edge_bar
    assert colors.gradient_css(colorscale=colors.ATOM_COLORSCALE) in atom_bar
    assert colors.ATOM_COLORSCALE != colors.VALUE_COLORSCALE
    assert 'class="cgcnn-element"' not in html  # no element chips once atoms show a value
    plain = viewer.crystal_view(structure, predictor, 3, top_k=2)
    assert plain.html.count('class="cgcnn-element"') == 2 and 'data-for="atoms"' not in plain.html


def test_png_button_saves_the_canvas():
    structure = load_default_dataset().structure("mp-22862")
    html = viewer.crystal_view(structure, None, 0, png_name="NaCl graph.png").html
    assert 'class="cgcnn-png"' in html and "getCanvas()" in html and "cgcnnSavePng('NaCl_graph.png')" in html
    assert "window.cgcnnViewer = viewer_" in html and "link.download = name" in html
    assert crystal_scene.LOCAL_3DMOL_URL in html and "https://" not in html


def test_ensemble_prediction_is_the_clis(dataset):
    from cgcnn.nn.predictor import Ensemble, predict_files

    structure = dataset.structure("mp-22862")
    ensemble = Ensemble([load_model("own-attention"), load_model("own-attention-4head")])
    mean, std, members = viewer.predict_one(ensemble, structure)
    (result,) = predict_files(ensemble, [Path("mp-22862")], read=lambda path: structure)
    assert mean == pytest.approx(result.values[0], abs=1e-12) and std == pytest.approx(result.std[0], abs=1e-12)
    assert list(members.values()) == pytest.approx(result.members[:, 0].tolist(), abs=1e-12)
    view = viewer.view_of_state(structure, viewer.ViewState("mp-22862", "own-attention,own-attention-4head"),
                                load_model)  # fmt: skip
    assert view.info["prediction"] == pytest.approx(mean) and view.info["std"] == pytest.approx(std)


def test_png_carries_a_title_the_element_legend_and_the_colour_bars(dataset):
    """Issue 24: the downloaded PNG had no colour bar, legend or title; its spec says what the browser adds."""
    import json
    import re

    structure = dataset.structure("mp-5229")  # SrTiO3
    state = viewer.ViewState(crystal="x", model="own-attention-4head", layer=2, head=1, heads=4, colour_atoms=True)
    view = viewer.view_of_state(structure, state, load_model)
    spec = json.loads(re.search(r"window.cgcnnPngSpec = (\{.*?\});</script>", view.html).group(1))
    assert spec["title"] == (
        f"{structure.composition.reduced_formula} · own-attention-4head · conv 2 · head 1 · "
        "edges: attention or gate, atoms coloured"
    )
    assert [b["what"] for b in spec["bars"]] == ["Edges", "Atoms"] and spec["elements"] == []  # atoms by value
    assert all(len(b["stops"]) == 9 and b["low"] and b["high"] for b in spec["bars"])
    plain = viewer.view_of_state(structure, viewer.ViewState(crystal="x"), load_model)
    spec = json.loads(re.search(r"window.cgcnnPngSpec = (\{.*?\});</script>", plain.html).group(1))
    assert spec["bars"] == [] and len(spec["elements"]) == len(structure.composition.elements)
    hostile = crystal_scene.png_button_html("x.png", {"title": "</script><b>", "elements": [], "bars": []})
    assert "</script><b>" not in hostile and "\\u003c/script>" in hostile
