"""Learning-curve points, bands and figures (cgcnn.experiments.learning_curve) on tiny hand-made frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cgcnn.experiments.learning_curve import (
    REFERENCES,
    curve_points,
    learning_curve_figure,
    save_learning_curve_png,
    with_recipe_columns,
)
from cgcnn.training.transfer import SCRATCH


def _run(run_id, pretrained, freeze, n, split, seed, mae, strategy=None):
    row = {"run_id": run_id, "pretrained": pretrained, "freeze": freeze, "n_train": n, "split_seed": split,
           "seed": seed, "test_mae": mae}  # fmt: skip
    if strategy is not None:
        row["strategy"] = strategy
    return row


def test_band_over_three_splits_by_hand():
    # split-level MAEs 0.5, 0.6, 0.7 (split 1 averages two model seeds: 0.55 and 0.65)
    runs = pd.DataFrame(
        [
            _run("a", SCRATCH, 0, 100, 0, 0, 0.5),
            _run("b", SCRATCH, 0, 100, 1, 0, 0.55),
            _run("c", SCRATCH, 0, 100, 1, 1, 0.65),
            _run("d", SCRATCH, 0, 100, 2, 0, 0.7),
        ]
    )
    point = curve_points(runs).iloc[0]
    # mean 0.6, sd 0.1, se 0.1 / sqrt(3) = 0.0577350; t(0.975, 2) = 4.302653 -> half width 0.2484138
    assert point.mae_mean == pytest.approx(0.6)
    assert point.mae_high - point.mae_mean == pytest.approx(0.2484138, abs=1e-6)
    assert point.mae_mean - point.mae_low == pytest.approx(0.2484138, abs=1e-6)
    assert (point.n_splits, point.n_runs, point.band_over) == (3, 4, "splits")
    assert (point.strategy, point.kind, point.recipe) == ("none", "scratch", "scratch")


def test_one_split_band_over_seeds_and_single_run_without_band():
    runs = pd.DataFrame(
        [
            _run("a", "bulk-moduli", 1, 50, 0, 0, 1.0),
            _run("b", "bulk-moduli", 1, 50, 0, 1, 1.2),
            _run("c", "bulk-moduli", 1, 200, 0, 0, 0.8),
        ]
    )
    points = curve_points(runs).set_index("n_train")
    # two seeds 1.0, 1.2: mean 1.1, sd 0.141421, se 0.1; t(0.975, 1) = 12.706205 -> 1.2706205
    assert points.loc[50, "band_over"] == "seeds"
    assert points.loc[50, "mae_high"] == pytest.approx(1.1 + 1.2706205, abs=1e-6)
    assert points.loc[200, "band_over"] == "none"
    assert points.loc[200, "mae_low"] == points.loc[200, "mae_high"] == pytest.approx(0.8)
    assert set(points["strategy"]) == {"freeze"}  # runs.csv without a strategy column: fine-tunes froze
    assert set(points["recipe"]) == {"bulk-moduli k=1"}


def test_recipe_columns_fill_scratch_and_baselines():
    frame = with_recipe_columns(
        pd.DataFrame(
            [
                {"pretrained": "", "freeze": None, "strategy": None},
                {"pretrained": "mean", "freeze": 0, "strategy": "freeze"},
                {"pretrained": "formation-energy-per-atom", "freeze": 0, "strategy": "lp-ft"},
            ]
        )
    )
    assert frame[["pretrained", "freeze", "strategy"]].values.tolist() == [
        ["none", 0, "none"],
        ["mean", 0, "none"],
        ["formation-energy-per-atom", 0, "lp-ft"],
    ]
    assert frame["split_seed"].tolist() == [0, 0, 0]


def test_errors_rescore_each_run_and_leave_out_runs_without_them():
    runs = pd.DataFrame([_run("a", SCRATCH, 0, 100, 0, 0, 9.0), _run("b", SCRATCH, 0, 100, 1, 0, 9.0)])
    errors = {"a": pd.Series([0.2, -0.4], index=["x", "y"])}
    point = curve_points(runs, errors.get).iloc[0]
    assert point.mae_mean == pytest.approx(0.3) and point.n_splits == 1


def test_figure_has_a_line_per_recipe_dashed_baselines_and_references(tmp_path):
    runs = pd.DataFrame(
        [_run(f"s{n}{s}", SCRATCH, 0, n, s, 0, 1.0 / np.log(n) + 0.01 * s) for n in (50, 200) for s in (0, 1)]
        + [_run(f"m{n}{s}", "mean", 0, n, s, 0, 1.1 + 0.01 * s) for n in (50, 200) for s in (0, 1)]
        + [_run(f"f{n}{s}", "formation-energy-per-atom", 1, n, s, 0, 0.2 + 0.01 * s) for n in (50, 200) for s in (0, 1)]
    )
    points = curve_points(runs)
    fig = learning_curve_figure(points)
    lines = {t.name: t for t in fig.data if t.mode == "lines+markers"}
    assert set(lines) == {"scratch", "mean (baseline)", "formation-energy-per-atom k=1"}
    assert lines["mean (baseline)"].line.dash == "dash" and lines["scratch"].line.dash == "solid"
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    stars = [t for t in fig.data if t.mode == "markers+text"]
    assert [(t.x[0], t.y[0]) for t in stars] == [(r.n_train, r.mae) for r in REFERENCES]
    assert (85_000, 0.297) in [(r.n_train, r.mae) for r in REFERENCES]
    assert not [t for t in learning_curve_figure(points, references=False).data if t.mode == "markers+text"]
    png = save_learning_curve_png(points, tmp_path / "lc" / "learning_curve.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_empty_runs_give_empty_points_and_an_empty_figure(tmp_path):
    points = curve_points(pd.DataFrame(columns=["run_id", "pretrained", "freeze", "n_train", "test_mae"]))
    assert points.empty
    assert len(learning_curve_figure(points, references=False).data) == 0
    assert save_learning_curve_png(points, tmp_path / "empty.png").is_file()


def test_log_ticks_are_full_size_labels_one_two_five_or_one_three():
    from cgcnn.experiments.learning_curve import log_ticks

    assert log_ticks(0.08, 3.7) == [0.1, 0.2, 0.5, 1.0, 2.0]
    assert log_ticks(33, 127_500) == [100.0, 300.0, 1000.0, 3000.0, 10000.0, 30000.0, 100000.0]  # > 2.5 decades
    assert log_ticks(0.0, 1.0) == [] and log_ticks(2.0, 1.0) == []
    fig = learning_curve_figure(curve_points(pd.DataFrame([_run("a", SCRATCH, 0, 100, 0, 0, 0.5)])))
    assert list(fig.layout.xaxis.tickvals) == log_ticks(100 / 1.5, 85_000 * 1.5)
    assert list(fig.layout.yaxis.ticktext)[:2] == ["0.1", "0.2"]
