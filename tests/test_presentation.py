"""Presentation mode (``?present=1`` or the sidebar toggle): projector-sized text and fixed colour ranges.

The sizes come from one place (:func:`cgcnn.analysis.style.display_style`); these tests read what the pages
actually send to the browser (plotly specs, table styles), and that the mode follows the user across pages.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import plotly.graph_objects as go
import pytest
from streamlit.testing.v1 import AppTest

from cgcnn.analysis import style
from devtools.sign_in import token_of

ROOT = Path(__file__).resolve().parent.parent

MIN_PX = 16


@pytest.fixture(autouse=True)
def _cwd(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("CGCNN_WORKERS", "0")


def open_page(path: str, present: bool = True) -> AppTest:
    at = AppTest.from_file(str(ROOT / path), default_timeout=180)
    at.query_params["user"] = "erin"
    at.query_params["token"] = token_of("erin")
    if present:
        at.query_params["present"] = "1"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def specs(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def table_font_px(at: AppTest) -> list[int]:
    """Font sizes (px) set by every static table's style sheet."""
    sizes = []
    for table in at.get("table"):
        found = re.findall(r"font-size:\s*(\d+)px", table.proto.arrow_data.styler.styles)
        assert found, "a table without a font size"
        sizes += [int(s) for s in found]
    return sizes


def test_every_presentation_size_is_projector_sized():
    on, off = style.display_style(True), style.display_style(False)
    for name in (
        "text_px",
        "table_px",
        "heatmap_px",
        "diagram_px",
        "axis_title_px",
        "tick_px",
        "legend_px",
        "title_px",
    ):
        assert getattr(on, name) >= MIN_PX, name
        assert getattr(on, name) >= getattr(off, name), name
    assert on.fixed_ranges and not off.fixed_ranges


def test_style_figure_copies_so_a_cached_figure_is_not_changed():
    fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4], name="a"))
    assert style.style_figure(fig, style.display_style(False)) is fig  # screens: nothing to do
    big = style.style_figure(fig, style.display_style(True))
    assert big is not fig and fig.layout.font.size is None
    assert big.layout.legend.font.size >= MIN_PX and big.layout.xaxis.tickfont.size >= MIN_PX
    assert big.layout.yaxis.title.font.size >= MIN_PX


def test_compare_heatmap_and_tables_are_large_with_a_fixed_range():
    at = open_page("app_pages/3_Compare_runs.py")
    (heatmap,) = [s for s in specs(at) if any(d.get("type") == "heatmap" for d in s["data"])]
    for trace in (d for d in heatmap["data"] if d["type"] == "heatmap"):
        assert trace["textfont"]["size"] >= MIN_PX
        assert (trace["zmin"], trace["zmax"]) == style.TABLE2_MAE_RANGE_EV  # not the range of what is shown
    assert all(a["font"]["size"] >= MIN_PX for a in heatmap["layout"]["annotations"])  # panel titles
    assert heatmap["layout"]["yaxis"]["tickfont"]["size"] >= MIN_PX
    assert at.get("table") and not at.dataframe  # static tables that wrap, not a 14 px grid
    assert min(table_font_px(at)) >= MIN_PX

    # the shipped results and this server's runs share one colour scale
    at.radio(key="cmp_source").set_value("this server's run store").run()
    (other,) = [s for s in specs(at) if any(d.get("type") == "heatmap" for d in s["data"])]
    assert (other["data"][0]["zmin"], other["data"][0]["zmax"]) == style.TABLE2_MAE_RANGE_EV


def test_compare_on_a_screen_keeps_the_grid_and_the_data_range():
    at = open_page("app_pages/3_Compare_runs.py", present=False)
    (heatmap,) = [s for s in specs(at) if any(d.get("type") == "heatmap" for d in s["data"])]
    trace = heatmap["data"][0]
    assert trace["textfont"]["size"] < MIN_PX and (trace["zmin"], trace["zmax"]) != style.TABLE2_MAE_RANGE_EV
    assert at.dataframe and not at.get("table")


def test_zoo_diagram_labels_and_axes_are_large():
    at = open_page("app_pages/1_Model_zoo.py")
    (diagram,) = [s for s in specs(at) if s["layout"].get("shapes")]
    labels = [a for a in diagram["layout"]["annotations"] if a.get("text")]
    assert labels and all(a["font"]["size"] >= MIN_PX for a in labels)
    assert diagram["layout"]["legend"]["font"]["size"] >= MIN_PX
    assert min(table_font_px(at)) >= MIN_PX


def test_plot_axes_and_legends_are_large_on_the_home_page():
    at = open_page("app.py")
    for spec in specs(at):
        assert spec["layout"]["font"]["size"] >= MIN_PX
        assert spec["layout"]["xaxis"]["tickfont"]["size"] >= MIN_PX


def test_presentation_mode_follows_page_links():
    at = open_page("app.py")
    links = at.get("page_link")
    assert links and all("present=1" in link.proto.query_string for link in links)

    plain = open_page("app.py", present=False)  # switched on with the sidebar toggle instead of the URL
    assert all("present=1" not in link.proto.query_string for link in plain.get("page_link"))
    plain.sidebar.toggle(key="present_toggle").set_value(True).run()
    assert plain.query_params.get("present") in ("1", ["1"])
    assert all("present=1" in link.proto.query_string for link in plain.get("page_link"))


def test_pca_map_colours_use_the_labels_range_over_the_dataset():
    from cgcnn.data.datasets import load_default_dataset

    at = open_page("app_pages/5_Representations.py")
    at.number_input(key="rep_map_n").set_value(50).run()
    color = at.selectbox(key="rep_map_color").value
    (pca,) = [s for s in specs(at) if s["data"] and s["data"][0].get("type") == "scattergl"]
    marker = pca["data"][0]["marker"]
    expected = style.fixed_range(load_default_dataset().labels[color])
    assert (marker["cmin"], marker["cmax"]) == pytest.approx(expected)


def test_static_tables_show_user_text_literally():
    """A static table's cells render as Markdown: a run name must not become a link (see cgcnn.app.plain)."""
    import pandas as pd

    from cgcnn.app import plain

    frame = pd.DataFrame({"name": ["[EVIL](http://evil.example)"], "mae_by_x": [0.123456], "note": [None]})
    html = style.styled_table(frame, style.display_style(True), text=plain.markdown).to_html()
    assert "\\[EVIL\\]" in html and "](http" not in html
    assert "0.1235" in html and "font-size: 16px" in html and "None" not in html


def test_fine_tune_run_list_is_projector_sized_with_progress_as_text():
    from cgcnn.runs.store import RunStore

    spec = {"pretrained": "band-gap", "freeze": 1, "target": "band_gap", "n_train": 40, "n_val": 20, "n_test": 20,
            "seed": 123, "hyperparams": {"epochs": 2}}  # fmt: skip
    RunStore().create_run(spec, owner="erin")  # queued; CGCNN_WORKERS=0, so it stays queued
    at = open_page("app_pages/2_Fine_tune.py")
    assert at.get("table") and not at.dataframe, "presentation mode shows the run list as a static table"
    assert min(table_font_px(at)) >= MIN_PX
    screen = open_page("app_pages/2_Fine_tune.py", present=False)
    assert screen.get("table") and not screen.dataframe  # on a screen too: a grid cannot wrap (issue 24)
    assert max(table_font_px(screen)) < MIN_PX  # screen-sized text


def test_progress_reads_as_a_percentage_where_no_bar_can_be_drawn():
    import pandas as pd

    from cgcnn.app.tables import progress_as_percent

    frame = pd.DataFrame({"id": ["a", "b", "c"], "progress": [0.0, 0.456, None]})
    assert progress_as_percent(frame)["progress"].tolist() == ["0%", "46%", ""]
    assert progress_as_percent(frame.drop(columns="progress")).equals(frame.drop(columns="progress"))
