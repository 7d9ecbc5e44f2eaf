"""Split-level statistics of a learning-curve grid on tiny frames, with values computed by hand.

Summary (pair and split level, Holm per size, baselines untested), the hierarchical bootstrap, the crossover
interpolated in log n and its notes.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cgcnn.experiments.crossover import ALWAYS_BETTER, NEVER_BETTER, crossover_n, crossover_table, sign_changes
from cgcnn.experiments.stats import hierarchical_bootstrap, percentile_interval
from cgcnn.experiments.summary import SUMMARY_COLUMNS, pair_table, summarize
from cgcnn.training.transfer import SCRATCH


def _row(run_id, pretrained, freeze, n, split, seed, mae, strategy="freeze"):
    return {"run_id": run_id, "pretrained": pretrained, "freeze": freeze, "strategy": strategy, "n_train": n,
            "split_seed": split, "seed": seed, "test_mae": mae}  # fmt: skip


def _grid(deltas: dict[str, dict[int, list[float]]], base=1.0) -> pd.DataFrame:
    """Scratch at MAE ``base`` (+0.1 per split) and each recipe at scratch + its Δ per split, one seed each."""
    sizes = sorted({n for per_size in deltas.values() for n in per_size})
    n_splits = max(len(d) for per_size in deltas.values() for d in per_size.values())
    rows = [_row(f"s-{n}-{s}", SCRATCH, 0, n, s, 0, base + 0.1 * s, "none") for n in sizes for s in range(n_splits)]
    for name, per_size in deltas.items():
        pretrained, freeze = name.split(":")
        for n, values in per_size.items():
            rows += [_row(f"{name}-{n}-{s}", pretrained, int(freeze), n, s, 0, base + 0.1 * s + d)
                     for s, d in enumerate(values)]  # fmt: skip
    return pd.DataFrame(rows)


def test_three_split_t_test_and_sign_test_by_hand():
    summary = summarize(_grid({"fe:1": {1000: [-0.1, -0.2, -0.3]}}))
    assert list(summary.columns) == SUMMARY_COLUMNS
    row = summary.set_index("pretrained").loc["fe"]
    assert row.n_splits == 3 and row.mean_diff_split == pytest.approx(-0.2)
    # t = -0.2 / (0.1 / sqrt 3) = -sqrt 12; with 2 df, P(T > t) = (1 - t / sqrt(t^2 + 2)) / 2
    t = math.sqrt(12)
    assert row.p_split_t == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-9)  # 0.0741799
    assert row.p_split_t == pytest.approx(0.0741799, abs=1e-7)
    assert row.p_split_sign == pytest.approx(0.25)  # 3 of 3: 2 * 0.5 ** 3, the floor with three splits
    assert row.wins == 3 and row.n_pairs == 3
    assert pd.isna(row.study_mae)  # 'fe' is no row of the study's tables
    scratch = summary.iloc[0]
    assert scratch.pretrained == SCRATCH and scratch.strategy == "none" and pd.isna(scratch.p_split_t)


def test_split_level_averages_the_seeds_of_a_split():
    rows = [
        _row("b0", SCRATCH, 0, 100, 0, 0, 1.0, "none"),
        _row("b1", SCRATCH, 0, 100, 0, 1, 2.0, "none"),
        _row("b2", SCRATCH, 0, 100, 1, 0, 1.0, "none"),
        _row("r0", "fe", 1, 100, 0, 0, 0.8),  # Δ -0.2
        _row("r1", "fe", 1, 100, 0, 1, 2.4),  # Δ +0.4 -> split 0: +0.1
        _row("r2", "fe", 1, 100, 1, 0, 0.7),  # Δ -0.3 -> split 1: -0.3
    ]
    row = summarize(pd.DataFrame(rows)).set_index("pretrained").loc["fe"]
    assert row.n_pairs == 3 and row.mean_diff == pytest.approx(-0.1 / 3)
    assert row.n_splits == 2 and row.mean_diff_split == pytest.approx(-0.1)


def test_holm_per_size_across_network_recipes_and_baselines_untested():
    runs = _grid(
        {
            "fe:1": {100: [-0.1, -0.2, -0.3, -0.25], 1000: [0.1, -0.05, 0.2, 0.1]},
            "fe:2": {100: [-0.1, 0.05, -0.2, -0.1], 1000: [0.3, 0.1, 0.2, 0.25]},
            "mean:0": {100: [0.3, 0.2, 0.4, 0.3], 1000: [0.5, 0.6, 0.4, 0.5]},
        }
    )
    runs.loc[runs.pretrained == "mean", "strategy"] = "none"
    summary = summarize(runs)
    for n in (100, 1000):
        part = summary[(summary.n_train == n)].set_index(["pretrained", "freeze"])
        p1, p2 = part.at[("fe", 1), "p_split_t"], part.at[("fe", 2), "p_split_t"]
        low, high = sorted([p1, p2])
        expected = {low: min(1, 2 * low), high: max(min(1, 2 * low), high)}
        assert part.at[("fe", 1), "p_split_holm"] == pytest.approx(expected[p1])
        assert part.at[("fe", 2), "p_split_holm"] == pytest.approx(expected[p2])
        mean = part.loc[("mean", 0)]
        assert pd.isna(mean.p_split_t) and pd.isna(mean.p_split_holm) and pd.isna(mean.p_value)
        assert mean.mean_diff_split == pytest.approx({100: 0.3, 1000: 0.5}[n])
    # the family is the size: with the other size's tests left out, the values do not change
    alone = summarize(runs[runs.n_train == 100]).set_index(["pretrained", "freeze"])
    both = summary[summary.n_train == 100].set_index(["pretrained", "freeze"])
    assert alone.at[("fe", 1), "p_split_holm"] == pytest.approx(both.at[("fe", 1), "p_split_holm"])


def test_a_deterministic_baseline_pairs_with_every_scratch_seed_of_its_split():
    rows = [
        _row("b0", SCRATCH, 0, 50, 0, 0, 1.0, "none"),
        _row("b1", SCRATCH, 0, 50, 0, 1, 1.4, "none"),
        _row("m", "composition", 0, 50, 0, 0, 0.9, "none"),
    ]
    pairs = pair_table(pd.DataFrame(rows))
    assert sorted(pairs.base_run_id) == ["b0", "b1"] and pairs["diff"].tolist() == pytest.approx([-0.1, -0.5])
    row = summarize(pd.DataFrame(rows)).set_index("pretrained").loc["composition"]
    assert row.n_splits == 1 and row.mean_diff_split == pytest.approx(-0.3)


def test_crossover_interpolates_in_log_n():
    assert crossover_n([100, 400], [-0.1, 0.1]) == pytest.approx(200.0)  # halfway in log n
    # Δ -0.3 at 100, +0.1 at 1000: zero three quarters of the way, 10 ** 2.75
    assert crossover_n([1000, 100], [0.1, -0.3]) == pytest.approx(10**2.75)
    assert crossover_n([50, 100, 200], [-0.2, 0.0, 0.3]) == pytest.approx(100.0)  # a zero is the crossover
    assert crossover_n([50, 100, 200], [0.2, -0.1, -0.3]) == pytest.approx(math.exp(math.log(50) + 2 / 3 * math.log(2)))
    assert crossover_n([50, 100], [-0.1, -0.2]) is None
    assert sign_changes([50, 100, 200, 500], [-0.1, 0.1, -0.1, 0.2]) == 3


def test_crossover_table_notes():
    runs = _grid(
        {
            "fe:1": {100: [-0.1, -0.2, -0.1], 1000: [0.1, 0.3, 0.2]},  # split means -0.1333, +0.2
            "fe:2": {100: [-0.1, -0.2, -0.3], 1000: [-0.1, -0.05, -0.1]},
            "bm:1": {100: [0.1, 0.2, 0.3], 1000: [0.1, 0.05, 0.1]},
        }
    )
    table = crossover_table(runs).set_index(["pretrained", "freeze"])
    assert list(table.columns) == ["strategy", "crossover_n", "ci_low", "ci_high", "note"]
    d0, d1 = -0.4 / 3, 0.2
    expected = math.exp(math.log(100) + (0 - d0) * (math.log(1000) - math.log(100)) / (d1 - d0))
    assert table.at[("fe", 1), "crossover_n"] == pytest.approx(expected)  # 10 ** 2.4 = 251.19
    assert table.at[("fe", 1), "crossover_n"] == pytest.approx(10**2.4)
    assert table.at[("fe", 2), "note"] == ALWAYS_BETTER == "beats scratch at every size tested"
    assert table.at[("bm", 1), "note"] == NEVER_BETTER == "never beats scratch"
    assert pd.isna(table.at[("fe", 2), "crossover_n"]) and pd.isna(table.at[("fe", 1), "ci_low"])


def _errors_for(runs: pd.DataFrame, n_crystals: int = 60, seed: int = 0):
    """Per-crystal errors whose MAE is each run's test_mae (random signs and spread, fixed per split)."""
    rng = np.random.default_rng(seed)
    ids = [f"x{i}" for i in range(n_crystals)]
    shape = {s: rng.uniform(0.2, 1.8, n_crystals) for s in runs.split_seed.unique()}
    out = {}
    for run_id, split, mae in zip(runs.run_id, runs.split_seed, runs.test_mae, strict=True):
        noise = shape[split] * rng.uniform(0.9, 1.1, n_crystals)
        magnitude = noise / noise.mean() * mae
        out[run_id] = pd.Series(magnitude * rng.choice([-1.0, 1.0], n_crystals), index=ids)
    return out.get


def test_crossover_interval_from_the_joint_bootstrap():
    runs = _grid({"fe:1": {100: [-0.1, -0.2, -0.15, -0.12], 1000: [0.1, 0.15, 0.12, 0.2]}})
    errors = _errors_for(runs)
    table = crossover_table(runs, errors).iloc[0]
    assert table.ci_low < table.crossover_n < table.ci_high
    assert table.ci_low >= 100 and table.ci_high <= 1000
    assert "sign change in 2000 of 2000 resamples" in table.note
    again = crossover_table(runs, errors).iloc[0]
    assert (again.ci_low, again.ci_high) == (table.ci_low, table.ci_high)  # seed 0: fixed
    summary = summarize(runs, errors).set_index(["pretrained", "n_train"])
    row = summary.loc[("fe", 100)]
    assert row.ci_low_split < row.mean_diff_split < row.ci_high_split < 0
    assert np.isfinite(row.ci_low) and np.isfinite(row.ci_high)  # the pair-level interval too
    assert pd.isna(summarize(runs).set_index(["pretrained", "n_train"]).at[("fe", 100), "ci_low_split"])


def test_hierarchical_bootstrap_resamples_splits_then_crystals():
    rng = np.random.default_rng(3)
    d = rng.normal(-0.1, 0.5, 400)
    # one split: only the crystals vary, so the interval is the crystal bootstrap of the mean (SE ~ sd / sqrt n)
    one = hierarchical_bootstrap([{0: d}])[:, 0]
    low, high = percentile_interval(one)
    assert (high - low) / (2 * 1.96) == pytest.approx(d.std(ddof=1) / np.sqrt(len(d)), rel=0.15)
    # splits whose crystals agree but whose means differ: the split draw widens the interval
    shifted = {s: d + 0.3 * (s - 1) for s in range(3)}
    wide = percentile_interval(hierarchical_bootstrap([shifted])[:, 0])
    assert wide[1] - wide[0] > 2 * (high - low)
    assert np.array_equal(hierarchical_bootstrap([shifted]), hierarchical_bootstrap([shifted]))  # fixed seed
    # a second curve that lacks split 2 is averaged over the splits it has; one draw serves both curves
    joint = hierarchical_bootstrap([shifted, {0: shifted[0], 1: shifted[1]}], n_resamples=500)
    assert joint.shape == (500, 2) and np.isfinite(joint[:, 0]).all()
    assert np.isnan(joint[:, 1]).sum() < 500 and (joint[np.isfinite(joint[:, 1]), 1] < 0.3).all()
    with pytest.raises(ValueError):
        hierarchical_bootstrap([{0: d}, {0: d[:10]}])
    with pytest.raises(ValueError):
        hierarchical_bootstrap([{}])
