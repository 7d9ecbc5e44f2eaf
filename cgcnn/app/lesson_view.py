"""What the lesson steps of the Class page show: progress, the class's answers, the outcome of its grid.

The page (``app_pages/7_Class.py`` with ``app_lesson.py``) only lays these out. Everything a student or the
projector reads is decided here, from the lesson session's state (:mod:`cgcnn.lessons.session`), so it can be
tested without a browser:

- the class's answers as counts only (a bar per choice, a histogram of numbers): the projector shows how the
  class thinks, never who thought what;
- the outcome of an experiment as it fills, drawn from the runs finished so far: the Table 2 heatmap, the
  learning curve (:mod:`cgcnn.experiments.learning_curve`) or a comparison of recipes, each point a mean with a
  95% band over split seeds. A band over the model seeds of one split says so: it ignores which crystals were
  tested, so it is narrower than the question deserves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from cgcnn.analysis import figures
from cgcnn.analysis.markup import plotly_text
from cgcnn.data.datasets import TARGET_UNITS
from cgcnn.experiments import learning_curve as lc
from cgcnn.experiments.study import study_row

#: Pages an explore step may open (the lesson schema's names) → the app's page file and its address path.
EXPLORE_PAGES = {"viewer": ("app_pages/4_Crystal_viewer.py", "Crystal_viewer")}
#: What each step kind is called on the page.
KIND_NAMES = {"question": "a question", "experiment": "an experiment", "reveal": "the reveal", "explore": "explore"}


# --------------------------------------------------------------------------------------------------- progress


def progress_text(done: int, total: int) -> str:
    """``18 of 30 cells done`` (what every student sees of the class's grid)."""
    return f"{done} of {total} cell{'s' if total != 1 else ''} done"


def step_heading(lesson: Any, index: int) -> str:
    """``Step 2 of 5 · an experiment``: where the class is in the lesson."""
    step = lesson.steps[index]
    return f"Step {index + 1} of {len(lesson.steps)} · {KIND_NAMES.get(step.kind, step.kind)}"


def answered_text(answers: Mapping[str, str], students: int | None = None) -> str:
    """``12 answers`` or ``12 of 30 students answered``: a count, never names."""
    n = len(answers)
    if students:
        return f"{n} of {students} student{'s' if students != 1 else ''} answered"
    return f"{n} answer{'s' if n != 1 else ''}"


def preset_note(pinned: str | None) -> str | None:
    """What starting a lesson does to a pinned protocol preset (None when none is pinned).

    A lesson's experiments carry their own protocol (sizes, epochs, splits): that is what the class compares, so
    the lesson wins for its cells; the pin still holds for runs launched on the Fine-tune page.
    """
    if not pinned:
        return None
    return (
        f"The class is pinned to the protocol preset {pinned!r}. The lesson wins for its own cells: they run with "
        f"the lesson's sizes and epochs. The pin still applies to runs launched on the Fine-tune page."
    )


# --------------------------------------------------------------------------------------------------- answers


def _layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(title=plotly_text(title), height=height, margin={"l": 50, "r": 20, "t": 50, "b": 45})
    return fig


def answer_counts(question: Any, answers: Mapping[str, str]) -> pd.DataFrame:
    """The class's answers to a choice question as counts: one row per option (0s included), in the lesson's order.

    Names are dropped here, so nothing downstream can show them.
    """
    counts = {option: 0 for option in question.options}
    for value in answers.values():
        if value in counts:
            counts[value] += 1
    return pd.DataFrame({"answer": list(counts), "students": list(counts.values())})


def number_answers(answers: Mapping[str, str]) -> list[float]:
    """The numbers the class answered (stored answers are validated floats; anything else is skipped)."""
    values = []
    for value in answers.values():
        try:
            values.append(float(value))
        except (TypeError, ValueError):
            continue
    return sorted(values)


def answers_figure(question: Any, answers: Mapping[str, str], font_px: int = 14) -> go.Figure:
    """Bars (choices) or a histogram (numbers) of the class's answers: counts only, never who answered what."""
    fig = go.Figure()
    n = len(answers)
    if question.answer_type == "choice":
        counts = answer_counts(question, answers)
        fig.add_trace(
            go.Bar(
                x=[plotly_text(o) for o in counts["answer"]],
                y=counts["students"].tolist(),
                text=counts["students"].tolist(),
                textposition="outside",
                textfont={"size": font_px},
                marker_color="#1f77b4",
                hovertemplate="%{x}: %{y} student(s)<extra></extra>",
            )
        )
        fig.update_xaxes(title="answer", tickfont={"size": font_px})
    else:
        values = number_answers(answers)
        fig.add_trace(go.Histogram(x=values, marker_color="#1f77b4", hovertemplate="%{x}: %{y}<extra></extra>"))
        unit = f" ({question.unit})" if question.unit else ""
        fig.update_xaxes(title=plotly_text(f"answer{unit}"))
    fig.update_yaxes(title="students", rangemode="tozero", dtick=1 if n <= 10 else None)
    return _layout(fig, f"The class's answers ({n})", height=360)


# --------------------------------------------------------------------------------------------------- outcome


@dataclass(frozen=True)
class Outcome:
    """What a reveal shows of an experiment: a figure (None before any run is done) and a note on the band."""

    figure: go.Figure | None
    note: str
    points: pd.DataFrame


def done_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The finished runs of an experiment (a test MAE), the only ones a reveal draws."""
    if runs.empty or "test_mae" not in runs:
        return runs.iloc[0:0]
    return runs[runs["test_mae"].notna()]


def band_note(points: pd.DataFrame) -> str:
    """What the bands of ``points`` are over, in words (a band over model seeds of one split is labelled so)."""
    if points.empty:
        return "No run of this experiment has finished yet: the figure fills as runs finish."
    over = set(points["band_over"])
    splits = int(points["n_splits"].max())
    if over == {"splits"}:
        return f"Mean over split seeds ({splits} per point) with a 95% band over the splits."
    parts = []
    if "splits" in over:
        parts.append("where several splits are done, a 95% band over the splits")
    if "seeds" in over:
        parts.append(
            "where only one split is done, a 95% band over the model seeds on that one split (it leaves out which "
            "crystals were tested, so it is narrower than a band over splits)"
        )
    if "none" in over:
        parts.append("one run so far: no band yet")
    return "Mean test MAE; " + "; ".join(parts) + ". It fills as runs finish."


def band_title(points: pd.DataFrame, what: str) -> str:
    """A figure title that says what its band is over."""
    over = set(points["band_over"]) if len(points) else set()
    if over == {"splits"}:
        return f"{what}, 95% band over splits"
    if "seeds" in over and "splits" not in over:
        return f"{what}, 95% band over model seeds (one split)"
    return f"{what}, 95% band"


def table2_cells(points: pd.DataFrame) -> pd.DataFrame:
    """Curve points as the Table 2 heatmap's cells (``row``, ``freeze``, ``mean``, ``std``, ``n``, ``text``).

    Each cell's text is its mean with the 95% band (``0.612 ± 0.031``) and what the band is over; scratch sits
    at freeze 0. Of several sizes, the largest is shown (Table 2 is one size).
    """
    columns = ["row", "freeze", "mean", "std", "n", "text"]
    network = points[points["kind"] != "baseline"] if len(points) else points
    if network.empty:
        return pd.DataFrame(columns=columns)
    network = network[network["n_train"] == network["n_train"].max()]
    rows = []
    for p in network.itertuples():
        half = (float(p.mae_high) - float(p.mae_low)) / 2.0
        over = band_over_text(p.band_over, int(p.n_splits), int(p.n_runs))
        text = f"{p.mae_mean:.3f}<br>{over}" if p.band_over == "none" else f"{p.mae_mean:.3f} ± {half:.3f}<br>{over}"
        rows.append(
            {"row": study_row(str(p.pretrained)), "freeze": int(p.freeze), "mean": float(p.mae_mean), "std": half,
             "n": int(p.n_runs), "text": text}
        )  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def comparison_figure(points: pd.DataFrame, units: str = "eV", font_px: int = 14) -> go.Figure:
    """One bar per recipe (per training size) with its 95% band as error bars: the class's grid at a glance."""
    fig = go.Figure()
    for n_train, part in points.groupby("n_train", sort=True):
        fig.add_trace(
            go.Bar(
                x=[plotly_text(r) for r in part["recipe"]],
                y=part["mae_mean"],
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": (part["mae_high"] - part["mae_mean"]).tolist(),
                    "arrayminus": (part["mae_mean"] - part["mae_low"]).tolist(),
                },
                name=f"{n_train} training crystals",
                text=[f"{m:.3f}" for m in part["mae_mean"]],
                textposition="inside",
                textfont={"size": font_px},
            )
        )
    fig.update_yaxes(title=f"test MAE ({units})" if units else "test MAE", rangemode="tozero")
    fig.update_layout(barmode="group")
    return _layout(fig, band_title(points, "Test MAE by recipe"), height=420)


def outcome(
    view: str, runs: pd.DataFrame, target: str = "band_gap", font_px: int = 14, legend_row_px: int = 22
) -> Outcome:
    """The outcome of an experiment drawn as ``view`` (``table2``, ``learning_curve``, ``comparison``).

    Args:
        view: the reveal's view.
        runs: the experiment's runs (runs.csv-shaped: ``pretrained``, ``freeze``, ``strategy``, ``n_train``,
            ``seed``, ``split_seed``, ``test_mae``); unfinished ones are left out, so it fills live.
        target: the label learned (units, and whether the band-gap reference points apply).
        font_px: cell and tick text (projector sizes in presentation mode).
        legend_row_px: height of one legend entry of the learning curve.
    """
    points = lc.curve_points(done_runs(runs))
    note = band_note(points)
    if points.empty:
        return Outcome(None, note, points)
    units = TARGET_UNITS.get(target, "")
    if view == "table2":
        cells = table2_cells(points)
        if cells.empty:
            return Outcome(None, note, points)
        fig = figures.table2_heatmap(cells, None, source="the class's runs", font_size=font_px)
        fig.update_layout(title=plotly_text(band_title(points, f"Test MAE ({units})")))
        return Outcome(fig, note, points)
    if view == "learning_curve":
        fig = lc.learning_curve_figure(
            points,
            references=target == "band_gap",
            units=units,
            title=band_title(points, "Learning curves"),
            legend_row_px=legend_row_px,
        )
        return Outcome(fig, note, points)
    return Outcome(comparison_figure(points, units, font_px), note, points)


def band_over_text(band_over: str, n_splits: int, n_runs: int) -> str:
    """What one point's band is over, in a few words: ``3 splits``, ``2 seeds, 1 split``, ``1 run``."""
    if band_over == "splits":
        return f"{n_splits} splits"
    if band_over == "seeds":
        return f"{n_runs} seeds, 1 split"
    return f"{n_runs} run" + ("s" if n_runs != 1 else "")


def points_table(points: pd.DataFrame) -> pd.DataFrame:
    """The outcome's numbers as a narrow table (it sits beside the answers): recipe, size, mean ± 95%, over what."""
    columns = ["recipe", "n", "MAE ± 95%", "over"]
    if points.empty:
        return pd.DataFrame(columns=columns)
    rows = [
        {
            "recipe": p.recipe,
            "n": int(p.n_train),
            "MAE ± 95%": f"{p.mae_mean:.3f}" if p.band_over == "none" else
                         f"{p.mae_mean:.3f} ± {(p.mae_high - p.mae_low) / 2:.3f}",
            "over": band_over_text(p.band_over, int(p.n_splits), int(p.n_runs)),
        }
        for p in points.itertuples()
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------------------------------- cells


def _spec_value(spec: Any, name: str) -> Any:
    if isinstance(spec, Mapping):
        return spec.get(name)
    return getattr(spec, name, None)


def cells_frame(cells: Iterable[Any], with_student: bool = False) -> pd.DataFrame:
    """Dealt cells as a table: what each one trains and its status (and who holds it: the teacher's screen only)."""
    rows = []
    for cell in cells:
        spec = cell.spec
        pretrained = str(_spec_value(spec, "pretrained") or "none")
        rows.append(
            {
                "student": getattr(cell, "student", "") or "—",
                "cell": int(cell.index) + 1,
                "model": "scratch" if pretrained == "none" else pretrained,
                "freeze": _spec_value(spec, "freeze"),
                "n_train": _spec_value(spec, "n_train"),
                "split": _spec_value(spec, "split_seed"),
                "seed": _spec_value(spec, "seed"),
                "run": cell.run_id or "—",
                "status": cell.status,
                "test MAE": getattr(cell, "test_mae", None),
            }
        )
    columns = ["cell", "model", "freeze", "n_train", "split", "seed", "run", "status", "test MAE"]
    return pd.DataFrame(rows, columns=(["student"] if with_student else []) + columns)


def explore_link(step: Any) -> tuple[str, dict[str, str]]:
    """The page file an explore step opens and its address keys (the step's ``params``, as text)."""
    page = EXPLORE_PAGES.get(step.page)
    if page is None:
        raise KeyError(step.page)
    return page[0], {str(k): str(v) for k, v in step.params.items()}


def explore_url(step: Any) -> str:
    """The relative address of an explore step's page with its keys (``Crystal_viewer?crystal=mp-856&k=3``)."""
    from urllib.parse import urlencode

    return f"{EXPLORE_PAGES[step.page][1]}?{urlencode(explore_link(step)[1])}"
