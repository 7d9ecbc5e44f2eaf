"""Plotly figures of runs, studies, datasets and models, as pure functions of frames.

Nothing here imports Streamlit or runs a model: every function takes a frame and returns a plotly figure, so
the app's pages stay thin and the figures can be tested on their own. Text that users typed (run names, crystal
ids, model labels) goes through :func:`cgcnn.analysis.markup.plotly_text`: Plotly renders a subset of HTML.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from cgcnn.analysis.colors import VALUE_COLORSCALE
from cgcnn.analysis.markup import plotly_text


def _layout(fig: go.Figure, title: str = "", height: int = 380) -> go.Figure:
    margin = {"l": 50, "r": 20, "t": 50 if title else 20, "b": 45}
    fig.update_layout(title=plotly_text(title), height=height, margin=margin)
    return fig


def curves_figure(
    epochs: pd.DataFrame,
    metric: str = "mae",
    labels: dict[str, str] | None = None,
    units: str = "",
    legend_row_px: int = 22,
) -> go.Figure:
    """Train (dashed) and validation (solid) curves per run from ``RunStore.epochs_many`` (or ``epochs``).

    Args:
        epochs: frame with ``epoch``, ``train_<metric>``, ``val_<metric>`` and optionally ``run_id``.
        metric: ``mae`` or ``loss``.
        labels: run id → legend label.
        units: appended to the y axis title.
        legend_row_px: height of one legend entry (larger with presentation mode's larger legend text).
    """
    fig = go.Figure()
    frame = epochs if "run_id" in epochs.columns else epochs.assign(run_id="run")
    n_runs = max(frame["run_id"].nunique(), 1)
    palette = sample_colorscale("Turbo", np.linspace(0.05, 0.95, n_runs).tolist())
    for k, (run_id, part) in enumerate(frame.groupby("run_id", sort=False)):
        name = (labels or {}).get(run_id, str(run_id))
        color = palette[k % len(palette)]
        for split, dash in (("train", "dash"), ("val", "solid")):
            column = f"{split}_{metric}"
            if column in part and part[column].notna().any():
                fig.add_trace(
                    go.Scatter(
                        x=part["epoch"],
                        y=part[column],
                        mode="lines+markers",
                        name=plotly_text(name),
                        line={"color": color, "dash": dash},
                        marker={"size": 4},
                        legendgroup=str(run_id),
                        showlegend=split == "val",  # one entry per run: the line style says train/validation
                        hovertemplate=f"{split} %{{y:.4f}} at epoch %{{x}}<extra>{run_id}</extra>",
                    )
                )
    title = "MAE" if metric == "mae" else "loss (MSE, normalised)"
    plot_px, row_px = 300, legend_row_px
    legend_px = 20 + row_px * n_runs  # one row per run, so no entry is cut and none covers the axis title
    fig.update_layout(legend={"orientation": "v", "yanchor": "top", "y": -70 / plot_px, "x": 0})
    fig.update_xaxes(title="epoch")
    fig.update_yaxes(title=f"{title} {f'({units})' if units and metric == 'mae' else ''}".strip())
    _layout(fig, f"{'MAE' if metric == 'mae' else 'Loss'}: train dashed, validation solid", height=plot_px)
    fig.update_layout(height=plot_px + 50 + 70 + legend_px, margin={"b": 70 + legend_px})
    return fig


#: What a recipe's band spans, by the ``band_over`` of :func:`cgcnn.app.recipes.recipe_curves`, for the legend.
BAND_LEGEND = {"seeds": "model seeds", "splits": "split seeds", "seeds and splits": "model and split seeds"}


def recipe_band_figure(
    points: pd.DataFrame, units: str = "", metric_title: str = "validation MAE", legend_row_px: int = 22
) -> go.Figure:
    """One line per recipe (the mean over its replicates) with its 95% band, instead of one line per run.

    Args:
        points: ``cgcnn.app.recipes.recipe_curves`` (columns ``recipe``, ``label``, ``band_over``, ``epoch``,
            ``n``, ``mean``, ``low``, ``high``).
        units: appended to the y axis title.
        metric_title: what the y axis holds.
        legend_row_px: height of one legend entry (larger in presentation mode).

    The legend says, per recipe, how many replicates and what varied between them (model seeds on one split,
    split seeds, or both), so a band over model seeds is never read as one over splits.
    """
    fig = go.Figure()
    keys = list(dict.fromkeys(points["recipe"])) if len(points) else []
    palette = sample_colorscale("Turbo", np.linspace(0.05, 0.95, max(len(keys), 1)).tolist())
    for k, key in enumerate(keys):
        part = points[points["recipe"] == key].sort_values("epoch")
        color = palette[k % len(palette)]
        n = int(part["n"].max())
        over = BAND_LEGEND.get(str(part["band_over"].iloc[0]))
        spread = f"n={n} · band over {over}" if over else "n=1 · no band"
        banded = part[part["n"] > 1]
        if len(banded):
            fig.add_trace(
                go.Scatter(
                    x=[*banded["epoch"], *banded["epoch"][::-1]],
                    y=[*banded["high"], *banded["low"][::-1]],
                    fill="toself",
                    fillcolor=color,
                    opacity=0.2,
                    line={"width": 0},
                    hoverinfo="skip",
                    legendgroup=key,
                    showlegend=False,
                )
            )
        fig.add_trace(
            go.Scatter(
                x=part["epoch"],
                y=part["mean"],
                mode="lines+markers",
                name=plotly_text(f"{part['label'].iloc[0]} ({spread})"),
                line={"color": color},
                marker={"size": 4},
                legendgroup=key,
                customdata=np.stack([part["n"], part["low"], part["high"]], axis=1),
                hovertemplate="mean %{y:.4f} at epoch %{x}<br>95% band %{customdata[1]:.4f} to %{customdata[2]:.4f}"
                "<br>n=%{customdata[0]}<extra></extra>",
            )
        )
    plot_px = 300
    legend_px = 20 + legend_row_px * max(len(keys), 1)
    fig.update_layout(legend={"orientation": "v", "yanchor": "top", "y": -70 / plot_px, "x": 0})
    fig.update_xaxes(title="epoch")
    fig.update_yaxes(title=f"{metric_title}{f' ({units})' if units else ''}")
    _layout(fig, f"Mean {metric_title} per recipe, 95% t-interval band", height=plot_px)
    fig.update_layout(height=plot_px + 50 + 70 + legend_px, margin={"b": 70 + legend_px})
    return fig


def parity_figure(predictions: pd.DataFrame, units: str = "", title: str = "Test set: predicted vs true") -> go.Figure:
    """Parity plot of ``RunStore.predictions`` (``crystal_id``, ``y_true``, ``y_pred``) with the MAE.

    An optional ``y_std`` column (a seed ensemble's spread) is drawn as error bars.
    """
    frame = predictions.dropna(subset=["y_true", "y_pred"])
    fig = go.Figure()
    if len(frame):
        lo = float(min(frame["y_true"].min(), frame["y_pred"].min()))
        hi = float(max(frame["y_true"].max(), frame["y_pred"].max()))
        mae = float((frame["y_true"] - frame["y_pred"]).abs().mean())
        fig.add_trace(
            go.Scatter(
                x=frame["y_true"],
                y=frame["y_pred"],
                mode="markers",
                marker={"size": 5, "opacity": 0.6},
                error_y={"array": frame["y_std"], "thickness": 1} if "y_std" in frame else None,
                text=[plotly_text(c) for c in frame["crystal_id"]],
                hovertemplate="%{text}<br>true %{x:.3f}<br>pred %{y:.3f}<extra></extra>",
                name=f"MAE {mae:.3f}",
            )
        )
        fig.add_trace(
            go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line={"color": "gray", "dash": "dot"}, name="y = x")
        )
        title = f"{title} (MAE {mae:.3f}{' ' + units if units else ''})"
    suffix = f" ({units})" if units else ""
    fig.update_xaxes(title=f"true{suffix}")
    fig.update_yaxes(title=f"predicted{suffix}", scaleanchor="x")
    return _layout(fig, title, height=420)


#: Light colours from low (good) to high test MAE, so black cell text stays readable on a projector.
HEATMAP_COLORSCALE = [[0.0, "#c7e9c0"], [0.5, "#fff7bc"], [1.0, "#fdae6b"]]


def table2_heatmap(
    cells: pd.DataFrame,
    study: pd.DataFrame | None = None,
    source: str = "this server's runs",
    font_size: int = 14,
    zrange: tuple[float, float] | None = None,
    stacked: bool = False,
) -> go.Figure:
    """Heatmap of test MAE (pretrained model × freeze depth): mean ± std over seeds, study numbers beside.

    Args:
        cells: columns ``row`` (model label), ``freeze``, ``mean``, ``std``, ``n``; an optional ``text`` replaces
            the cell's "mean ± std, n" (a lesson writes its mean with a 95% band).
        study: columns ``row``, ``freeze``, ``mae`` (the study's numbers), drawn as a second panel.
        source: title of the left panel: where ``cells`` come from (shipped results or this server's runs).
        font_size: cell text size (at least 14 px so a projector shows it; larger in presentation mode).
        zrange: fixed (min, max) of the colour scale (presentation mode: colours compare across sources);
            default: the range of the values shown.
        stacked: panels above each other, each at full width (presentation mode: large cell text fits).
    """
    panels = [(source, cells, "mean")] + ([("the study (one seed)", study, "mae")] if study is not None else [])
    grid = {"rows": len(panels), "cols": 1, "shared_xaxes": True, "vertical_spacing": 0.12} if stacked else {
        "rows": 1, "cols": len(panels), "shared_yaxes": True}  # fmt: skip
    fig = make_subplots(**grid, subplot_titles=[p[0] for p in panels])
    rows = list(dict.fromkeys(([*study["row"]] if study is not None else []) + [*cells["row"]]))
    freezes = sorted(set(cells["freeze"]).union(study["freeze"] if study is not None else []))
    all_values = pd.concat([p[1][p[2]] for p in panels if len(p[1])]) if any(len(p[1]) for p in panels) else None
    zmin = float(all_values.min()) if all_values is not None and len(all_values) else 0.0
    zmax = float(all_values.max()) if all_values is not None and len(all_values) else 1.0
    if zrange is not None:
        zmin, zmax = float(zrange[0]), float(zrange[1])
    for col, (_, frame, column) in enumerate(panels, start=1):
        z, text = [], []
        for row in rows:
            zr, tr = [], []
            for f in freezes:
                hit = frame[(frame["row"] == row) & (frame["freeze"] == f)] if len(frame) else frame
                if len(hit):
                    value = float(hit[column].iloc[0])
                    zr.append(value)
                    if column == "mean" and "text" in hit:  # the caller's own cell text (a lesson's 95% band)
                        tr.append(str(hit["text"].iloc[0]))
                    else:
                        tr.append(cell_text(value, hit["std"].iloc[0], int(hit["n"].iloc[0])) if column == "mean"
                                  else f"{value:.3f}")  # fmt: skip
                else:
                    zr.append(None)
                    tr.append("")
            z.append(zr)
            text.append(tr)
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=[f"freeze {f}" for f in freezes],
                y=[plotly_text(r) for r in rows],
                text=text,
                texttemplate="%{text}",
                textfont={"size": font_size, "color": "black"},
                colorscale=HEATMAP_COLORSCALE,
                zmin=zmin,
                zmax=zmax,
                showscale=col == len(panels),
                colorbar={"title": "test MAE"},
                hoverongaps=False,
            ),
            row=col if stacked else 1,
            col=1 if stacked else col,
        )
    fig.update_annotations(font={"size": font_size})  # the panel titles
    fig.update_xaxes(tickfont={"size": font_size})
    fig.update_yaxes(tickfont={"size": font_size})
    row_px = max(70, 3 * font_size + 16)  # two lines of cell text
    height = 120 + row_px * len(rows) * (len(panels) if stacked else 1)
    return _layout(fig, "Band gap test MAE (eV) by pretrained model and freeze depth", height=height)


def cell_text(mean: float, std: float | None, n: int) -> str:
    """``0.529 ± 0.011<br>n=5``; one seed has no spread to show, so ``0.588<br>n=1 seed``."""
    if n <= 1 or std is None or pd.isna(std):
        return f"{mean:.3f}<br>n=1 seed"
    return f"{mean:.3f} ± {std:.3f}<br>n={n}"


def histograms_figure(labels: pd.DataFrame, units: dict[str, str] | None = None, cols: int = 4) -> go.Figure:
    """One histogram per label column (missing values skipped), in a grid."""
    names = list(labels.columns)
    rows = max(1, -(-len(names) // cols))
    titles = [f"{n} ({(units or {}).get(n, '')})".replace(" ()", "") for n in names]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles)
    for k, name in enumerate(names):
        values = labels[name].dropna().to_numpy(dtype=float)
        # Binned here, not by the browser: 40 bars instead of thousands of raw values in every session's page
        # (the figure is serialised for each student who opens the home page).
        counts, edges = np.histogram(values, bins=40) if len(values) else (np.zeros(0), np.zeros(1))
        fig.add_trace(
            go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), name=name, showlegend=False),
            row=k // cols + 1,
            col=k % cols + 1,
        )
    fig.update_annotations(font_size=11)
    fig.update_layout(bargap=0)
    return _layout(fig, "", height=230 * rows)


LAYER_STATE_COLORS = {"frozen": "#4c78a8", "kept": "#54a24b", "re-initialised": "#f58518"}


def layer_display_name(name: str) -> str:
    """A layer's module name as a student reads it: convolutions count from 1, like the freeze slider.

    ``embedding`` → ``embedding``, ``convs.0`` → ``conv 1``, ``conv_to_fc`` → ``pool → dense``,
    ``fcs.0`` → ``dense 2``, ``fc_out`` → ``output``.
    """
    if name.startswith("convs."):
        return f"conv {int(name.split('.')[1]) + 1}"
    if name.startswith("fcs."):
        return f"dense {int(name.split('.')[1]) + 2}"
    return {"conv_to_fc": "pool → dense", "fc_out": "output"}.get(name, name)


def _short_count(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 1000 else str(n)


def layer_diagram(layers: pd.DataFrame, title: str = "", font_size: int = 13) -> go.Figure:
    """Layer diagram: one box per layer, input at the top, output at the bottom, coloured by state.

    The boxes are stacked, not side by side: side by side, eight boxes shared about 530 px at 1280 px, and
    "embedding" and "pool → dense" did not fit in theirs on a screen or a projector; stacked, each box has the
    figure's whole width whatever the width of the page. Box text is the layer's name (convolutions counted
    from 1, like the freeze slider) and a rounded parameter count; the state is the colour, named in the legend,
    and the exact counts are in the hover text.

    Args:
        layers: columns ``layer``, ``params``, ``state`` (``frozen``, ``kept`` = pretrained and trainable,
            ``re-initialised``), in network order.
        title: figure title.
        font_size: box text size (larger in presentation mode).
    """
    fig = go.Figure()
    n = len(layers)
    top = n - 1  # the first layer at the top
    for k, row in enumerate(layers.itertuples(index=False)):
        color = LAYER_STATE_COLORS.get(row.state, "#999999")
        y = top - k
        # fmt: off
        fig.add_shape(
            type="rect", x0=0, x1=1, y0=y, y1=y + 0.8, fillcolor=color, line={"color": "#333", "width": 1},
            opacity=0.9,
        )
        fig.add_annotation(
            x=0.5,
            y=y + 0.4,
            text=f"<b>{layer_display_name(row.layer)}</b><br>{_short_count(int(row.params))}",
            showarrow=False,
            font={"color": "white", "size": font_size},
        )
        if k < n - 1:
            fig.add_annotation(
                x=0.5, y=y - 0.2, ax=0.5, ay=y, xref="x", yref="y", axref="x", ayref="y", showarrow=True,
                arrowhead=2, text="",
            )
        # fmt: on
    fig.add_trace(  # invisible points carrying the hover text of every box
        go.Scatter(
            x=[0.5] * n,
            y=[top - k + 0.4 for k in range(n)],
            mode="markers",
            marker={"size": 40, "opacity": 0},
            hovertext=[
                f"{layer_display_name(r.layer)}: {int(r.params):,} parameters, {r.state}"
                for r in layers.itertuples(index=False)
            ],
            hoverinfo="text",
            showlegend=False,
        )
    )
    for state, color in LAYER_STATE_COLORS.items():  # legend entries
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", marker={"size": 12, "color": color}, name=state))
    fig.update_xaxes(visible=False, range=[-0.02, 1.02])
    fig.update_yaxes(visible=False, range=[-0.3, n])
    fig.update_layout(legend={"orientation": "h", "y": -0.02, "yanchor": "top"}, plot_bgcolor="white")
    box_px = round(2.6 * font_size + 12)  # two lines of box text, and the arrow's gap
    return _layout(fig, title, height=90 + box_px * n + 2 * font_size)


def probe_figure(frame: pd.DataFrame, units: str = "") -> go.Figure:
    """Probe MAE per depth, one line per model (columns ``model``, ``depth``, ``mae``)."""
    fig = go.Figure()
    for model, part in frame.groupby("model", sort=False):
        fig.add_trace(go.Scatter(x=part["depth"], y=part["mae"], mode="lines+markers", name=plotly_text(model)))
    fig.update_xaxes(title="depth (0 = embedding, k = after convolution k)", dtick=1)
    fig.update_yaxes(title=f"linear probe MAE{f' ({units})' if units else ''}")
    return _layout(fig, "How much of the label a linear probe reads from each depth")


def pca_figure(
    frame: pd.DataFrame, color: str, title: str = "", color_range: tuple[float, float] | None = None
) -> go.Figure:
    """2-D map of crystal features (columns ``x``, ``y``, ``id``, ``formula`` and ``color``); hover shows them.

    ``color_range`` fixes the colour scale (presentation mode: the label's range over the whole dataset, so a
    colour means the same value whatever sample or model is shown); default: the sample's range.
    """
    fixed = {"cmin": color_range[0], "cmax": color_range[1]} if color_range is not None else {}
    fig = go.Figure(
        go.Scattergl(
            x=frame["x"],
            y=frame["y"],
            mode="markers",
            marker={"size": 6, "color": frame[color], "colorscale": VALUE_COLORSCALE, "showscale": True,
                    "colorbar": {"title": color}, **fixed},
            customdata=np.stack([frame["id"], frame["formula"]], axis=1),
            hovertemplate="%{customdata[1]} (%{customdata[0]})<br>" + color + " %{marker.color:.3f}<extra></extra>",
        )
    )  # fmt: skip
    fig.update_xaxes(title="PC 1")
    fig.update_yaxes(title="PC 2")
    return _layout(fig, title, height=520)
