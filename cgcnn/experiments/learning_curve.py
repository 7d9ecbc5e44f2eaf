"""Learning curves: test MAE against training-set size, one line per recipe, with a band over splits.

A learning curve asks "when does pretraining pay?" along the size axis instead of at one point. Its unit of
replication is the split (docs/learning-curves.md): the model seeds of one split share their test crystals, so
they are averaged into one split-level MAE first, and the 95% band is a t-interval over those split-level
MAEs. With a single split there is nothing to replicate over but model seeds; that band is drawn too, but
flagged (``band_over = "seeds"``), since it ignores the choice of test set.

:func:`curve_points` turns a runs.csv-shaped frame into the points; :func:`learning_curve_figure` (plotly, for
the app) and :func:`save_learning_curve_png` (matplotlib, written by ``sweep``) draw them beside reference
points from the literature, each placed at its own training-set size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from scipy import stats

from cgcnn.analysis.markup import plotly_text
from cgcnn.experiments.study import STUDY_BASELINE
from cgcnn.training.transfer import SCRATCH

#: Recipes without a network (branch ``base``: ``cgcnn.training.baselines.BASELINES``): yardsticks, drawn dashed.
BASELINE_NAMES = ("mean", "composition")
#: The strategy recorded for recipes that fine-tune nothing (scratch and the baselines).
NO_STRATEGY = "none"
#: The strategy of a fine-tune whose spec predates strategies: freezing the first ``k`` convolutions.
DEFAULT_STRATEGY = "freeze"
#: A recipe: (pretrained, freeze, strategy).
RECIPE = ["pretrained", "freeze", "strategy"]
#: One point of a curve: a recipe at one training-set size.
POINT = [*RECIPE, "n_train"]
#: Columns of :func:`curve_points`.
POINT_COLUMNS = [*POINT, "recipe", "kind", "n_splits", "n_runs", "mae_mean", "mae_low", "mae_high", "band_over"]
#: Confidence level of the band.
BAND_LEVEL = 0.95

#: Per-crystal test errors of a run (prediction − label, indexed by crystal id), or None when it has none.
RunErrors = Callable[[str], "pd.Series | None"]


@dataclass(frozen=True)
class ReferencePoint:
    """A published test MAE at its own training-set size, so the curve can be read against it.

    Attributes:
        label: what it is, shown beside the marker.
        n_train: training crystals the number was obtained with.
        mae: its test MAE (eV, band gap).
        source: where the number comes from.
    """

    label: str
    n_train: int
    mae: float
    source: str


#: Band-gap reference points. Matbench v0.1 ``matbench_mp_gap``: 106,113 crystals in 5 folds, so about 85,000
#: training crystals per fold; CGCNN's MAE and the leaderboard's best. The study's scratch model: 1,000 crystals.
REFERENCES = (
    ReferencePoint("Matbench CGCNN", 85_000, 0.297, "Matbench v0.1 matbench_mp_gap, CGCNN (5-fold mean)"),
    ReferencePoint("Matbench leader", 85_000, 0.156, "Matbench v0.1 matbench_mp_gap, leaderboard best"),
    ReferencePoint("study scratch", 1_000, STUDY_BASELINE, "the study's scratch model, 1,000 training crystals"),
)


def with_recipe_columns(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with ``pretrained``, ``freeze`` and ``strategy`` filled as runs.csv writes them (no empty cells).

    Older runs.csv files have no ``strategy`` (every fine-tune then froze layers) and may write scratch as an
    empty ``pretrained``; scratch and the baselines get ``strategy = none`` and ``freeze = 0``.
    """
    frame = runs.copy()
    frame["pretrained"] = frame["pretrained"].fillna(SCRATCH).replace("", SCRATCH).astype(str)
    no_network = frame["pretrained"].isin([SCRATCH, *BASELINE_NAMES])
    if "strategy" not in frame:
        frame["strategy"] = DEFAULT_STRATEGY
    frame["strategy"] = frame["strategy"].fillna(DEFAULT_STRATEGY).replace("", DEFAULT_STRATEGY).astype(str)
    frame.loc[no_network, "strategy"] = NO_STRATEGY
    frame["freeze"] = frame["freeze"].fillna(0).astype(int)
    frame.loc[no_network, "freeze"] = 0
    if "split_seed" not in frame:
        frame["split_seed"] = 0  # results written before split seeds were recorded: all on split 0
    frame["split_seed"] = frame["split_seed"].fillna(0).astype(int)
    return frame


def recipe_kind(pretrained: str) -> str:
    """``scratch``, ``baseline`` (no network: a yardstick) or ``network`` (a fine-tune of a pretrained model)."""
    if pretrained == SCRATCH:
        return "scratch"
    return "baseline" if pretrained in BASELINE_NAMES else "network"


def recipe_label(pretrained: str, freeze: int, strategy: str) -> str:
    """A short legend label: ``scratch``, ``mean (baseline)``, ``formation-energy-per-atom k=1 lp-ft``."""
    kind = recipe_kind(pretrained)
    if kind == "scratch":
        return "scratch"
    if kind == "baseline":
        return f"{pretrained} (baseline)"
    extra = "" if strategy in (DEFAULT_STRATEGY, NO_STRATEGY) else f" {strategy}"
    return f"{pretrained} k={int(freeze)}{extra}"


def curve_points(runs: pd.DataFrame, errors: RunErrors | None = None) -> pd.DataFrame:
    """One row per (pretrained, freeze, strategy, n_train): the mean test MAE and its 95% band.

    Args:
        runs: a runs.csv-shaped frame (``run_id``, ``pretrained``, ``freeze``, ``n_train``, ``split_seed``,
            ``seed``, ``test_mae``; ``strategy`` optional, see :func:`with_recipe_columns`).
        errors: per-crystal test errors by run id (e.g. a rescoring's). When given, each run's MAE is
            recomputed from them and runs without errors are left out, so every point is scored the same way.

    Returns:
        :data:`POINT_COLUMNS`: the recipe's label and kind (scratch, baseline, network), ``n_splits`` and
        ``n_runs``, ``mae_mean`` (mean over splits of each split's mean over model seeds) and the band
        ``mae_low``..``mae_high``: mean ± t-quantile × standard error over split-level MAEs
        (``band_over = "splits"``); with one split and several seeds, the same over seeds (``"seeds"``); with
        one run, no band (``"none"``, low = high = mean). Sorted by recipe, then size.
    """
    if runs.empty:
        return pd.DataFrame(columns=POINT_COLUMNS)
    frame = with_recipe_columns(runs)
    if errors is not None:
        maes = [_mae_of(errors, str(run_id)) for run_id in frame["run_id"]]
        frame = frame.assign(test_mae=maes)
    frame = frame.dropna(subset=["test_mae", "n_train"])
    frame["n_train"] = frame["n_train"].astype(int)
    rows = []
    for (pretrained, freeze, strategy, n_train), cell in frame.groupby(POINT, sort=True):
        split_mae = cell.groupby("split_seed")["test_mae"].mean().to_numpy(float)
        if len(split_mae) > 1:
            spread, band_over = split_mae, "splits"
        elif len(cell) > 1:
            spread, band_over = cell["test_mae"].to_numpy(float), "seeds"
        else:
            spread, band_over = split_mae, "none"
        mean = float(split_mae.mean())
        half = _t_half_width(spread) if band_over != "none" else 0.0
        rows.append(
            {
                "pretrained": pretrained,
                "freeze": int(freeze),
                "strategy": strategy,
                "n_train": int(n_train),
                "recipe": recipe_label(pretrained, int(freeze), strategy),
                "kind": recipe_kind(pretrained),
                "n_splits": len(split_mae),
                "n_runs": len(cell),
                "mae_mean": mean,
                "mae_low": mean - half,
                "mae_high": mean + half,
                "band_over": band_over,
            }
        )
    return pd.DataFrame(rows, columns=POINT_COLUMNS)


def _mae_of(errors: RunErrors, run_id: str) -> float:
    err = errors(run_id)
    if err is None or len(err) == 0:
        return float("nan")
    return float(np.abs(np.asarray(err, dtype=float)).mean())


def _t_half_width(values: np.ndarray, level: float = BAND_LEVEL) -> float:
    """Half width of the t-interval of the mean of ``values`` (at least two)."""
    n = len(values)
    se = float(np.std(values, ddof=1)) / np.sqrt(n)
    return float(stats.t.ppf(0.5 + level / 2.0, n - 1)) * se


def _recipes(points: pd.DataFrame) -> list[tuple[tuple, pd.DataFrame]]:
    """The curves of ``points``: scratch first, then networks, then baselines; each sorted by size."""
    order = {"scratch": 0, "network": 1, "baseline": 2}
    curves = [(key, part.sort_values("n_train")) for key, part in points.groupby(RECIPE, sort=True)]
    return sorted(curves, key=lambda kv: (order.get(recipe_kind(kv[0][0]), 1), kv[0]))


#: Colours of the curves (scratch is black, the rest in turn); baselines are dashed.
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
_SCRATCH_COLOR = "#222222"


def mae_axis_range(points: pd.DataFrame, references: bool) -> tuple[float, float]:
    """The MAE axis: half the lowest to twice the highest mean (and reference) shown.

    Bands are cut at this range: over two or three splits a t-band is wide (t = 12.7 for two) and can reach
    below zero, which a log axis cannot show; the means, not the band's far ends, set the scale.
    """
    values = [float(v) for v in points["mae_mean"] if np.isfinite(v) and v > 0] if len(points) else []
    values += [r.mae for r in REFERENCES] if references else []
    if not values:
        return 0.1, 10.0
    return min(values) / 2.0, max(values) * 2.0


def log_ticks(low: float, high: float) -> list[float]:
    """Tick values for a log axis from ``low`` to ``high``: 1-2-5 per decade, or 1-3 over more than 2.5 decades.

    Explicit ticks, because plotly draws the labels of its own in-between log ticks at three quarters of the
    font size, under the 16 px a projector needs.
    """
    if not (np.isfinite(low) and np.isfinite(high)) or low <= 0 or high <= low:
        return []
    steps = (1, 2, 5) if np.log10(high / low) <= 2.5 else (1, 3)
    first, last = int(np.floor(np.log10(low))), int(np.ceil(np.log10(high)))
    values = [m * 10.0**e for e in range(first, last + 1) for m in steps]
    return [float(f"{v:.3g}") for v in values if low <= v <= high]


def _colors(curves: list[tuple[tuple, pd.DataFrame]]) -> list[str]:
    colors, k = [], 0
    for key, _ in curves:
        if recipe_kind(key[0]) == "scratch":
            colors.append(_SCRATCH_COLOR)
        else:
            colors.append(_PALETTE[k % len(_PALETTE)])
            k += 1
    return colors


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def learning_curve_figure(
    points: pd.DataFrame, references: bool = True, units: str = "eV", title: str = "", legend_row_px: int = 22
) -> go.Figure:
    """Log–log test MAE against training-set size: one line per recipe with its 95% band, baselines dashed.

    Args:
        points: :func:`curve_points`.
        references: also mark :data:`REFERENCES` (band gap only: the caller decides), each at its own size.
        units: of the MAE axis.
        title: figure title (default: says what the band is over).
        legend_row_px: height of one legend entry (larger in presentation mode).
    """
    fig = go.Figure()
    curves = _recipes(points)
    y_low, y_high = mae_axis_range(points, references)
    for (key, part), color in zip(curves, _colors(curves), strict=True):
        label = plotly_text(str(part["recipe"].iloc[0]))
        dashed = recipe_kind(key[0]) == "baseline"
        x = part["n_train"].tolist()
        low = np.clip(part["mae_low"].to_numpy(float), y_low, y_high).tolist()
        high = np.clip(part["mae_high"].to_numpy(float), y_low, y_high).tolist()
        if (part["band_over"] != "none").any():
            fig.add_trace(
                go.Scatter(
                    x=x + x[::-1],
                    y=high + low[::-1],
                    fill="toself",
                    fillcolor=_rgba(color, 0.15),
                    line={"width": 0},
                    hoverinfo="skip",
                    showlegend=False,
                    legendgroup=label,
                )
            )
        hover = [
            f"n = {n}<br>MAE {m:.3f} [{lo:.3f}, {hi:.3f}]<br>{s} split(s), {r} run(s), band over {b}"
            for n, m, lo, hi, s, r, b in zip(
                part["n_train"], part["mae_mean"], part["mae_low"], part["mae_high"], part["n_splits"],
                part["n_runs"], part["band_over"], strict=True,
            )
        ]  # fmt: skip
        fig.add_trace(
            go.Scatter(
                x=x,
                y=part["mae_mean"].tolist(),
                mode="lines+markers",
                name=label,
                line={"color": color, "dash": "dash" if dashed else "solid"},
                marker={"size": 6},
                legendgroup=label,
                text=hover,
                hovertemplate="%{text}<extra>" + label + "</extra>",
            )
        )
    if references:
        for ref in REFERENCES:
            fig.add_trace(
                go.Scatter(
                    x=[ref.n_train],
                    y=[ref.mae],
                    mode="markers+text",
                    marker={"symbol": "star", "size": 11, "color": "#555555"},
                    text=[f"{ref.label} {ref.mae:.3f}"],
                    textposition="middle left" if ref.n_train > 10_000 else "top center",
                    name=plotly_text(f"{ref.label} ({ref.n_train:,} training crystals)"),
                    hovertemplate=plotly_text(f"{ref.source}<br>n = {ref.n_train:,}, MAE {ref.mae:.3f}")
                    + "<extra></extra>",
                )
            )
    sizes = [float(n) for n in points["n_train"]] if len(points) else []
    sizes += [float(r.n_train) for r in REFERENCES] if references else []
    x_ticks = log_ticks(min(sizes) / 1.5, max(sizes) * 1.5) if sizes else []
    y_ticks = log_ticks(y_low, y_high)
    fig.update_xaxes(
        type="log", title="training crystals n (log scale)", tickvals=x_ticks, ticktext=[f"{v:,.0f}" for v in x_ticks]
    )
    fig.update_yaxes(
        type="log",
        title=f"test MAE{f' ({units})' if units else ''} (log scale)",
        range=np.log10([y_low, y_high]),
        tickvals=y_ticks,
        ticktext=[f"{v:g}" for v in y_ticks],
    )
    n_entries = len(curves) + (len(REFERENCES) if references else 0)
    plot_px = 420
    legend_px = 20 + legend_row_px * max(n_entries, 1)
    fig.update_layout(
        title=plotly_text(title or "Learning curves: mean test MAE and 95% band over splits"),
        legend={"orientation": "v", "yanchor": "top", "y": -90 / plot_px, "x": 0},
        height=plot_px + 60 + 90 + legend_px,
        margin={"l": 60, "r": 20, "t": 50, "b": 90 + legend_px},
    )
    return fig


def save_learning_curve_png(
    points: pd.DataFrame, path: Path, references: bool = True, units: str = "eV", title: str = ""
) -> Path:
    """The figure of :func:`learning_curve_figure` as a PNG (matplotlib, no browser), for ``sweep --out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = _recipes(points)
    y_low, y_high = mae_axis_range(points, references)
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    for (key, part), color in zip(curves, _colors(curves), strict=True):
        x = part["n_train"].to_numpy(float)
        dashed = recipe_kind(key[0]) == "baseline"
        ax.plot(x, part["mae_mean"], marker="o", ms=4, color=color, ls="--" if dashed else "-",
                label=str(part["recipe"].iloc[0]))  # fmt: skip
        if (part["band_over"] != "none").any():
            low = np.clip(part["mae_low"].to_numpy(float), y_low, y_high)
            high = np.clip(part["mae_high"].to_numpy(float), y_low, y_high)
            ax.fill_between(x, low, high, color=color, alpha=0.15, lw=0)
    if references:
        for ref in REFERENCES:
            ax.scatter([ref.n_train], [ref.mae], marker="*", s=90, color="#555555", zorder=3)
            far = ref.n_train > 10_000
            ax.annotate(f"{ref.label} {ref.mae:.3f}\n(n = {ref.n_train:,})", (ref.n_train, ref.mae),
                        textcoords="offset points", xytext=(-8, 0) if far else (8, -4), ha="right" if far else "left",
                        va="center", fontsize=7)  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(y_low, y_high)
    ax.set_xlabel("training crystals n")
    ax.set_ylabel(f"test MAE{f' ({units})' if units else ''}")
    bands = set(points["band_over"]) if len(points) else set()
    over = "splits" if bands <= {"splits"} else "/".join(sorted(bands))
    ax.set_title(title or f"Learning curves: mean and 95% band over {over}", fontsize=10)
    ax.grid(which="both", alpha=0.25)
    if curves:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
