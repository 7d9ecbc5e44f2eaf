"""The Compare page's learning-curve view in AppTest: shipped results (a fixture folder) and this server's runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from cgcnn.app import learning_curves
from cgcnn.experiments import results_folder
from cgcnn.runs.store import RunStore
from devtools.curve_runs import add_curve_runs, curve_mae
from devtools.sign_in import token_of

ROOT = Path(__file__).resolve().parent.parent
PAGE = "app_pages/3_Compare_runs.py"


@pytest.fixture(autouse=True, scope="module")
def _own_home(tmp_path_factory):
    """A store of this module's own: finished runs at three sizes on three splits (no training)."""
    import os

    import app_ui

    old = os.environ["CGCNN_HOME"]
    os.environ["CGCNN_HOME"] = str(tmp_path_factory.mktemp("learning_curve_home"))
    app_ui.store.clear()
    add_curve_runs(RunStore())
    yield
    os.environ["CGCNN_HOME"] = old
    app_ui.store.clear()


@pytest.fixture(autouse=True)
def _cwd(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("CGCNN_WORKERS", "0")


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A shipped-results folder as `sweep` and `sweep-summary` write it, where the page looks for it."""
    from cgcnn.experiments.sweep import runs_frame

    store = RunStore()
    runs = runs_frame([r for r in store.list_runs() if r.owner == "lc"])
    runs.to_csv(tmp_path / "runs.csv", index=False)
    scored = results_folder.score_results(runs, lambda run_id: None, results_folder.SCORINGS["all"])
    results_folder.write_results(tmp_path, scored)
    monkeypatch.setattr(learning_curves, "shipped_folder", lambda: tmp_path)
    return tmp_path


def open_page(present: bool = False) -> AppTest:
    at = AppTest.from_file(str(ROOT / PAGE), default_timeout=120)
    at.query_params["user"] = "lena"
    at.query_params["token"] = token_of("lena")
    if present:
        at.query_params["present"] = "1"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def curve_spec(at: AppTest) -> dict:
    (spec,) = [s for s in (json.loads(c.proto.spec) for c in at.get("plotly_chart"))
               if s["layout"].get("xaxis", {}).get("type") == "log"]  # fmt: skip
    return spec


def lines(spec: dict) -> dict[str, dict]:
    return {d["name"]: d for d in spec["data"] if d.get("mode") == "lines+markers"}


def test_shipped_results_draw_one_line_per_recipe_with_references(shipped):
    at = open_page()
    assert at.radio(key="lc_source").value == "shipped with the project"
    spec = curve_spec(at)
    drawn = lines(spec)
    assert set(drawn) == {"scratch", "formation-energy-per-atom k=1"}
    assert drawn["scratch"]["x"] == [50, 200, 1000]
    stars = [d for d in spec["data"] if d.get("mode") == "markers+text"]
    assert {(d["x"][0], d["y"][0]) for d in stars} == {(85000, 0.297), (85000, 0.156), (1000, 0.812)}
    table = next(t.value for t in at.dataframe if "recipe" in t.value.columns and "95% band" in t.value.columns)
    assert len(table) == 6 and set(table["splits"]) == {3} and set(table["band over"]) == {"splits"}
    crossover = next(t.value for t in at.dataframe if "crossover n" in t.value.columns)
    (row,) = crossover.to_dict("records")
    assert row["recipe"] == "formation-energy-per-atom k=1" and 200 < float(row["crossover n"].replace(",", "")) < 1000
    text = " ".join(m.value for m in at.markdown)
    assert "Source: shipped results (sensitivity analysis 2 (twins kept)" in text


def test_this_servers_runs_grouped_over_split_seeds(tmp_path, monkeypatch):
    monkeypatch.setattr(learning_curves, "shipped_folder", lambda: tmp_path / "none shipped")
    at = open_page()
    assert at.radio(key="lc_source").value == "this server's run store"  # the store is the only source
    assert at.selectbox(key="lc_protocol").options == ["band_gap, validation/test 100/100, 3 epochs: 18 run(s)"]
    spec = curve_spec(at)
    scratch = lines(spec)["scratch"]
    expected = [np.mean([curve_mae("none", n, s) for s in range(3)]) for n in (50, 200, 1000)]
    assert scratch["y"] == pytest.approx(expected)


def test_presentation_mode_draws_the_curve_and_its_tables_large(shipped):
    at = open_page(present=True)
    spec = curve_spec(at)
    assert spec["layout"]["legend"]["font"]["size"] >= 16 and spec["layout"]["xaxis"]["tickfont"]["size"] >= 16
    columns = [set(t.value.columns) for t in at.get("table")]
    tables = [t for t, c in zip(at.get("table"), columns, strict=True) if "95% band" in c or "crossover n" in c]
    assert len(tables) == 2  # the points and the crossovers, static tables that wrap
    styles = " ".join(t.proto.arrow_data.styler.styles for t in tables)
    sizes = [int(s) for s in re.findall(r"font-size:\s*(\d+)px", styles)]
    assert sizes and min(sizes) >= 16


def test_a_damaged_shipped_folder_is_one_message_not_a_traceback(tmp_path, monkeypatch):
    (tmp_path / "learning_curve.csv").write_text("recipe\n\x00\x00garbage", encoding="utf-8")
    (tmp_path / "runs.csv").write_text("not,a\nruns file", encoding="utf-8")
    monkeypatch.setattr(learning_curves, "shipped_folder", lambda: tmp_path)
    at = AppTest.from_file(str(ROOT / PAGE), default_timeout=120)
    at.query_params["user"] = "lena"
    at.query_params["token"] = token_of("lena")
    at.run()
    assert not at.exception
    assert any("learning curves" in e.value for e in at.error)
    assert at.get("plotly_chart")  # the rest of the page still renders (Table 2)


def test_points_table_and_view_without_a_folder(tmp_path):
    assert learning_curves.shipped_view(tmp_path) is None
    assert learning_curves.points_table(pd.DataFrame()).empty
