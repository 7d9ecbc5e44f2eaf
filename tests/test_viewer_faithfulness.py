"""Issue 20, item 7: the viewer shows how faithful its edge colouring is, and lets a student test it.

The measured faithfulness comes from the shipped results (never computed in the server); this crystal's deletion
curve and *Remove the top N edges* are computed on demand, the latter by ``explain --remove-top``'s code path:
the numbers must be the CLI's to 1e-6.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import plotly.graph_objects
import pytest
from conftest import CIF_DIR
from streamlit.testing.v1 import AppTest

from cgcnn.analysis import crystal_scene, faithfulness
from cgcnn.app import faithfulness_view
from cgcnn.data.datasets import load_default_dataset
from cgcnn.data.graph import GraphParams, structure_to_graph
from cgcnn.zoo import load_model
from devtools.sign_in import token_of

ROOT = Path(__file__).resolve().parent.parent
VIEWER = "app_pages/4_Crystal_viewer.py"
SHIPPED = ROOT / "docs" / "results" / "faithfulness"


@pytest.fixture(autouse=True)
def _cwd_and_workers(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("CGCNN_WORKERS", "1")


def viewer_at(**params: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / VIEWER), default_timeout=180)
    at.query_params.update({"user": "alice", "token": token_of("alice"), **params})
    return at.run()


def no_problems(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def notes(at: AppTest) -> str:
    return " ".join(c.value for c in at.caption).replace("\\", "")


def explain_remove_top(capsys, model: str, cif: Path, n: int, ranking: str, mode: str) -> dict:
    """What ``python -m cgcnn explain --remove-top N --ranking R --occlusion MODE --json`` prints."""
    from cgcnn.cli.main import main

    argv = ["explain", "--model", model, "--remove-top", str(n), "--ranking", ranking, "--occlusion", mode, "--json"]
    assert main([*argv, str(cif)]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_colour_bar_states_the_shipped_faithfulness_of_the_colouring():
    at = viewer_at(crystal="mp-22862", model="own-attention-4head", layer="1", head="2", colour="weights")
    no_problems(at)
    info, html = at.session_state["viewer_info"], at.session_state["viewer_html"]
    assert info["colouring_method"] == "attention_layer1_head2"
    shipped = json.loads((SHIPPED / "own-attention-4head.json").read_text())["methods"]
    numbers = info["faithfulness"].numbers
    assert numbers["deletion_auc"] == shipped["attention_layer1_head2"]["deletion_auc"]
    assert numbers["random_deletion_auc"] == shipped["random"]["deletion_auc"]
    assert numbers["occlusion_deletion_auc"] == shipped["occlusion_delete"]["deletion_auc"]
    line = html.split('class="cgcnn-faithfulness"', 1)[1].split("</div>", 1)[0]  # under the edges' colour bar
    assert (
        f"this colouring {numbers['deletion_auc']:.2f}" in line
        and f"random {numbers['random_deletion_auc']:.2f}" in line
    )
    text = notes(at)
    assert "How faithful is this colouring?" in text and "more faithful than random order" in text

    at.radio(key="view_colour_by").set_value("occlusion attribution").run()  # 8 atoms: occlusion, delete mode
    no_problems(at)
    assert at.session_state["viewer_info"]["colouring_method"] == "occlusion_delete"
    assert "occlusion (delete)" in notes(at)


def test_a_model_without_shipped_results_says_not_measured_and_computes_nothing_of_it():
    at = viewer_at(crystal="mp-22862", model="own-formation-energy-matched-s1", layer="2")
    no_problems(at)
    info = at.session_state["viewer_info"]
    assert not info["faithfulness"].measured and info["faithfulness"].numbers is None
    assert "faithfulness of this colouring: not measured for this model" in at.session_state["viewer_html"]
    assert "Faithfulness of this colouring: not measured" in notes(at)
    assert at.get("plotly_chart"), "this crystal's own deletion curve is still drawn (computed on demand)"


def test_shipped_evidence_reads_the_paired_comparisons(tmp_path):
    found = faithfulness.shipped_faithfulness("own-attention", "attention_layer1")
    assert found["vs_random"]["ci"][0] > 0  # the README: every attention ranking is far above random
    assert faithfulness.shipped_faithfulness("own-attention", "occlusion_delete").get("vs_occlusion") is None
    per_crystal = json.loads((SHIPPED / "own-attention.json").read_text())["deletion_auc_per_crystal"]
    paired = faithfulness._paired_difference(per_crystal["attention_layer1"], per_crystal["gradient_input"])
    assert (round(paired["mean"], 3), [round(v, 3) for v in paired["ci"]]) == (0.017, [-0.006, 0.04])  # README
    assert not faithfulness_view.shipped_evidence("own-attention", "attention_layer1", folder=tmp_path).measured
    (tmp_path / "own-attention.json").write_text("{not json")
    assert not faithfulness_view.shipped_evidence("own-attention", "attention_layer1", folder=tmp_path).measured


def test_remove_top_n_equals_explain_cli_and_marks_the_removed_edges(capsys):
    cif = CIF_DIR / "mp-2184.cif"
    at = viewer_at(model="own-attention", layer="2", colour="weights", edges="top", k="1")
    at.radio(key="view_source").set_value("Upload a file").run()
    at.file_uploader(key="view_upload").set_value([(cif.name, cif.read_bytes(), "chemical/x-cif")]).run()
    at.number_input(key="view_remove").set_value(5).run()
    no_problems(at)
    assert at.query_params["remove"] == "5" and at.query_params["removal"] == "delete"
    info, html = at.session_state["viewer_info"], at.session_state["viewer_html"]
    expected = explain_remove_top(capsys, "own-attention", cif, 5, "attention_layer2", "delete")
    for key in ("prediction", "prediction_without_top", "prediction_without_random"):
        assert info["removal"][key] == pytest.approx(expected[key], abs=1e-6), key
    assert info["removal"]["removed"] == expected["removed"] == 5
    assert crystal_scene.count_drawn(html)["dashed"] == 5  # drawn although k=1 keeps one edge per atom
    assert "the 5 edges removed" in html and "dashed red" in notes(at)
    (top, rand) = at.metric[1:3]
    assert top.label == "Without the top 5 edges" and rand.label == "Without 5 random edges"
    assert float(top.value.split()[0]) == pytest.approx(expected["prediction_without_top"], abs=5.01e-4)
    table = at.dataframe[-1].value
    assert table["removed"].sum() == 5

    at.radio(key="view_removal").set_value(faithfulness_view.REMOVAL_LABELS["zero"]).run()
    no_problems(at)
    assert at.query_params["removal"] == "zero"
    zeroed = at.session_state["viewer_info"]["removal"]
    expected = explain_remove_top(capsys, "own-attention", cif, 5, "attention_layer2", "zero")
    assert zeroed["occlusion"] == "zero"
    assert zeroed["prediction_without_top"] == pytest.approx(expected["prediction_without_top"], abs=1e-6)
    assert zeroed["prediction_without_top"] != pytest.approx(info["removal"]["prediction_without_top"], abs=1e-4)

    at.number_input(key="view_remove").set_value(faithfulness_view.MAX_REMOVE).run()  # more than the real edges
    no_problems(at)
    capped = at.session_state["viewer_info"]["removal"]
    assert capped["removed"] == capped["real_edges"] and "only" in capped["note"] and "Note: only" in notes(at)


def test_remove_top_lives_in_the_address_and_bad_values_fall_back():
    at = viewer_at(crystal="mp-22862", model="band-gap", remove="3", removal="zero", edges="atom", atom="0")
    no_problems(at)
    state = at.session_state["viewer_state"]
    assert (state.remove, state.removal) == (3, "zero")
    assert at.number_input(key="view_remove").value == 3
    info = at.session_state["viewer_info"]
    assert info["colouring_method"] == "gate_layer4" and info["removal"]["removed"] == 3
    dashed = crystal_scene.count_drawn(at.session_state["viewer_html"])["dashed"]
    assert dashed <= 3  # only atom 0's removed edges are drawn in the one-atom view
    at = viewer_at(crystal="mp-22862", model="band-gap", remove="-1", removal="melt")
    no_problems(at)
    assert (at.session_state["viewer_state"].remove, at.session_state["viewer_state"].removal) == (0, "delete")
    assert "remove=-1" in notes(at) and "removal=melt" in notes(at)
    assert "removal" not in at.session_state["viewer_info"]


def test_this_crystals_deletion_curve_is_the_librarys_and_sized_for_a_projector():
    at = viewer_at(crystal="mp-22862", model="own-attention", layer="4", colour="weights", present="1")
    no_problems(at)
    (chart,) = at.get("plotly_chart")
    figure = plotly.graph_objects.Figure(json.loads(chart.proto.spec))
    predictor = load_model("own-attention")
    graph = structure_to_graph(load_default_dataset().structure("mp-22862"), GraphParams())
    expected = faithfulness.crystal_deletion_curve(predictor, graph, "attention_layer4")
    solid, dashed = figure.data
    assert np.allclose(solid.y, expected["attention_layer4"], atol=1e-9)
    assert np.allclose(dashed.y, expected["random"], atol=1e-9)
    assert f"AUC {faithfulness.auc(expected['attention_layer4']):.2f}" in solid.name
    layout = figure.layout
    assert layout.xaxis.tickfont.size >= 16 and layout.legend.font.size >= 16  # projector sizes


def test_a_large_crystal_gets_a_sentence_instead_of_a_curve():
    data = load_default_dataset()
    sizes = dict(zip(map(str, data.ids), np.diff(data.offsets), strict=True))
    large = next(i for i, n in sizes.items() if faithfulness_view.CURVE_MAX_ATOMS < n <= 48)
    at = viewer_at(crystal=large, model="own-attention")
    no_problems(at)
    assert not at.get("plotly_chart")
    assert f"up to {faithfulness_view.CURVE_MAX_ATOMS} atoms" in notes(at)


def test_marked_edges_are_drawn_dashed_whatever_the_filter():
    graph = structure_to_graph(load_default_dataset().structure("mp-22862"), GraphParams())
    values = np.arange(len(graph.edge_src), dtype=float)
    weakest = np.array([0, 1, 2])  # the smallest values: top_k=1 would not draw them
    scene = crystal_scene.scene_from_structure(
        load_default_dataset().structure("mp-22862"), graph, values, top_k=1, marked_edges=weakest,
        marked_label="removed",
    )  # fmt: skip
    marked = [e for e in scene.edges if e.marked]
    assert sorted(e.edge for e in marked) == [0, 1, 2] and all(e.color == crystal_scene.MARKED_COLOR for e in marked)
    assert len(scene.edges) == 8 + 3
    html = crystal_scene.scene_html(scene)
    assert crystal_scene.count_drawn(html)["dashed"] == 3 and 'class="cgcnn-marked"' in html
    assert "removed" in crystal_scene.edge_table(scene).columns
    plain = crystal_scene.scene_from_structure(load_default_dataset().structure("mp-22862"), graph, values, top_k=1)
    assert "removed" not in crystal_scene.edge_table(plain).columns and "cgcnn-marked" not in crystal_scene.scene_html(
        plain
    )
