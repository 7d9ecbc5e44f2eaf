"""Text sizes and colour ranges of tables and figures, for a screen or for a projector (presentation mode).

A projector at the back of a classroom needs cell text of at least 16 px and colour scales that do not
rescale between views (the same colour must mean the same number when a teacher switches a choice). Every
size lives here, in :func:`display_style`, so the pages only pass ``presenting`` and nothing else knows a
pixel count. No Streamlit: pages get the style from ``app_ui.style()``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go

#: Band-gap test MAE (eV) mapped onto the Table 2 heatmap's colour scale in presentation mode: the shipped
#: 5-seed cells (about 0.53-0.68 eV) and the study's numbers (0.77-1.44 eV) both fall inside.
TABLE2_MAE_RANGE_EV = (0.5, 1.5)
#: Percentiles of a label over the whole default dataset that bound a fixed colour range (outliers saturate).
LABEL_RANGE_PERCENTILES = (2.0, 98.0)


@dataclass(frozen=True)
class DisplayStyle:
    """How large text is drawn and whether colour ranges are fixed.

    Attributes:
        presenting: presentation mode (projector) is on.
        text_px: base text of figures (hover, annotations).
        table_px: cell and header text of static tables (presentation mode; 16 px lets the zoo's 9 columns
            fit at 1280 px).
        heatmap_px: cell text, panel titles and tick labels of heatmaps.
        diagram_px: box labels of diagrams (the Model zoo's layer diagram).
        axis_title_px: axis titles of plots.
        tick_px: tick labels of plots.
        legend_px: legend entries.
        title_px: figure titles.
        fixed_ranges: colour scales use fixed ranges (:data:`TABLE2_MAE_RANGE_EV`, a label's range over the
            default data) instead of the range of what is shown, so colours compare across views.
        max_styled_rows: tables longer than this stay interactive (scrolling) even when presenting.
    """

    presenting: bool
    text_px: int
    table_px: int
    heatmap_px: int
    diagram_px: int
    axis_title_px: int
    tick_px: int
    legend_px: int
    title_px: int
    fixed_ranges: bool
    max_styled_rows: int = 60

    @property
    def legend_row_px(self) -> int:
        """Height of one vertical legend entry (plotly draws about 1.6 lines per entry)."""
        return round(self.legend_px * 1.8)


def display_style(presenting: bool) -> DisplayStyle:
    """The sizes for a screen (``presenting=False``) or a projector (``True``: every text at least 16 px)."""
    # The two styles side by side, one field list each:
    # fmt: off
    if presenting:
        return DisplayStyle(True, text_px=18, table_px=16, heatmap_px=18, diagram_px=18, axis_title_px=18, tick_px=16,
                            legend_px=16, title_px=20, fixed_ranges=True)
    return DisplayStyle(False, text_px=14, table_px=14, heatmap_px=14, diagram_px=13, axis_title_px=14, tick_px=12,
                        legend_px=12, title_px=16, fixed_ranges=False)
    # fmt: on


def style_figure(fig: go.Figure, style: DisplayStyle) -> go.Figure:
    """``fig`` with the style's font sizes on axes, legend and title (a copy; the screen style returns ``fig``).

    A copy, because pages cache figures and share them between sessions: one teacher's projector must not
    change a student's screen. Heatmap cell text and diagram labels are sized by their own builders
    (``font_size`` of :func:`~cgcnn.analysis.figures.table2_heatmap` and :func:`~cgcnn.analysis.figures.layer_diagram`).
    """
    if not style.presenting:
        return fig
    fig = copy.deepcopy(fig)
    fig.update_layout(
        font={"size": style.text_px},
        legend={"font": {"size": style.legend_px}},
        title={"font": {"size": style.title_px}},
        hoverlabel={"font": {"size": style.text_px}},
    )
    fig.update_xaxes(title_font={"size": style.axis_title_px}, tickfont={"size": style.tick_px})
    fig.update_yaxes(title_font={"size": style.axis_title_px}, tickfont={"size": style.tick_px})
    for trace in fig.data:  # colour bars of heatmaps and scatter markers
        if getattr(trace, "colorbar", None) is not None:
            trace.update(colorbar={"tickfont": {"size": style.tick_px}, "title": {"font": {"size": style.tick_px}}})
        marker = getattr(trace, "marker", None)
        if marker is not None and getattr(marker, "colorbar", None) is not None and marker.showscale:
            trace.update(marker={"colorbar": {"tickfont": {"size": style.tick_px},
                                              "title": {"font": {"size": style.tick_px}}}})  # fmt: skip
    return fig


#: Cell text wraps at spaces and hyphens (and after underscores, see :func:`styled_table`).
WRAPPING = {"white-space": "normal", "overflow-wrap": "break-word"}
#: Zero-width space: lets ``formation_energy_per_atom`` wrap after each underscore in a static table.
_BREAK = "\u200b"


def styled_table(frame: pd.DataFrame, style: DisplayStyle, text: Callable[[str], str] | None = None, digits: int = 4):
    """A pandas ``Styler`` of ``frame`` for a static table, every cell and header at ``style.table_px``.

    No index; floats to ``digits`` significant digits; text wraps at spaces, hyphens and underscores
    (``formation_energy_per_atom``), so the table fits its column instead of pushing columns off-screen.

    Args:
        frame: the table.
        style: sizes (see :func:`display_style`).
        text: how strings (cells and headers) are made safe to show: Streamlit renders a static table's cells
            as Markdown, so pages pass :func:`cgcnn.app.plain.markdown` (user text must stay inert).
        digits: significant digits of floats.
    """
    safe = text or str

    def cell(value: object) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return "" if math.isnan(value) else f"{value:.{digits}g}"
        return safe(str(value)).replace("_", "_" + _BREAK)

    size = f"{style.table_px}px"
    props = [*WRAPPING.items(), ("font-size", size)]
    return (
        frame.style.hide(axis="index")
        .format(cell)
        .format_index(lambda v: safe(str(v)).replace("_", "_" + _BREAK), axis=1)
        .set_properties(**WRAPPING, **{"font-size": size})
        .set_table_styles(
            [
                {"selector": "th", "props": props},
                {"selector": "td *", "props": props},  # the cells' Markdown paragraphs set their own
                {"selector": "th *", "props": props},
            ]
        )
    )


def fixed_range(values: pd.Series | None, percentiles: tuple[float, float] = LABEL_RANGE_PERCENTILES):
    """``(low, high)`` percentiles of ``values`` (NaN skipped): a colour range that does not follow a sample.

    Returns None when there are no finite values.
    """
    if values is None:
        return None
    finite = pd.to_numeric(values, errors="coerce").dropna()
    if finite.empty:
        return None
    low, high = (float(finite.quantile(p / 100.0)) for p in percentiles)
    return (low, high) if high > low else (low, low + 1.0)
