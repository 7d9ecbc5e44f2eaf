"""Sweep statistics: Holm, the sign test, the two-level bootstrap, and their columns in ``summarize``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cgcnn.experiments.stats import PairErrors, holm, paired_bootstrap_ci, sign_test
from cgcnn.experiments.sweep import SweepGrid, runs_frame, summarize
from cgcnn.runs.store import RunStore
from cgcnn.training.transfer import SCRATCH


def test_holm_by_hand():
    # sorted: 0.01 (x4 = 0.04), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06), 0.5 (x1 = 0.5)
    assert holm([0.03, None, 0.01, 0.5, 0.02]) == pytest.approx([0.06, None, 0.04, 0.5, 0.06])
    assert holm([0.4, 0.6]) == [0.8, 0.8]  # monotone: never below the previous adjusted value
    assert holm([0.9, 0.8]) == [1.0, 1.0]  # capped at 1
    assert holm([None]) == [None]


def test_holm_matches_scipy_family_wise_definition():
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 0.2, size=7)
    order = np.argsort(p)
    expected = np.empty(7)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (7 - rank) * p[i]))
        expected[i] = running
    assert holm(list(p)) == pytest.approx(list(expected))


def test_sign_test_exact_values():
    assert sign_test(np.array([-1.0, -2, -3, -4, -5])) == pytest.approx(0.0625)  # 2 * 0.5**5: the floor at n = 5
    assert sign_test(np.array([-1.0, -2, -3, -4, 5])) == pytest.approx(0.375)  # 2 * 6/32
    assert sign_test(np.array([-1.0, 0.0, 0.0, -2])) == pytest.approx(0.5)  # ties dropped: 2 of 2
    assert sign_test(np.array([-1.0, 1.0, -1.0, 1.0, -1.0, 1.0, 1.0])) == pytest.approx(
        stats.binomtest(3, 7, 0.5).pvalue
    )
    assert sign_test(np.zeros(3)) is None


def test_bootstrap_is_fixed_and_covers_both_sources_of_error():
    rng = np.random.default_rng(0)
    n = 400
    base = [np.abs(rng.normal(0, 1, n)) for _ in range(5)]
    cell = [b - 0.1 + rng.normal(0, 0.3, n) for b in base]
    pairs = [PairErrors(0, c, b) for c, b in zip(cell, base, strict=True)]
    low, high = paired_bootstrap_ci(pairs)
    assert (low, high) == paired_bootstrap_ci(pairs)  # fixed seed
    truth = np.mean([np.abs(c).mean() - np.abs(b).mean() for c, b in zip(cell, base, strict=True)])
    assert low < truth < high
    # one pair, one test set: the interval is the crystal bootstrap of the mean difference (SE ~ sd / sqrt(n))
    d = np.abs(cell[0]) - np.abs(base[0])
    lo1, hi1 = paired_bootstrap_ci([pairs[0]])
    assert (hi1 - lo1) / (2 * 1.96) == pytest.approx(d.std(ddof=1) / np.sqrt(n), rel=0.15)
    # identical pairs: resampling pairs adds nothing, so the interval matches the single pair's
    assert paired_bootstrap_ci([pairs[0]] * 3) == pytest.approx((lo1, hi1), abs=0.02)
    with pytest.raises(ValueError):
        paired_bootstrap_ci([PairErrors(0, np.ones(3), np.ones(4))])


# fmt: off
def _runs(base, cells, split_seeds=(0,)):
    rows = []
    for split in split_seeds:
        for seed, v in enumerate(base):
            rows.append({"run_id": f"b{split}{seed}", "pretrained": SCRATCH, "freeze": 0, "seed": seed,
                         "split_seed": split, "test_mae": v + 0.01 * split})
        for name, values in cells.items():
            for seed, v in enumerate(values):
                rows.append({"run_id": f"{name}{split}{seed}", "pretrained": name, "freeze": 1, "seed": seed,
                             "split_seed": split, "test_mae": v + 0.01 * split})
    return pd.DataFrame(rows)
# fmt: on


def test_summary_has_holm_sign_and_ci_columns():
    base = [0.80, 0.90, 0.85, 0.95, 0.88]
    cells = {"good": [0.70, 0.85, 0.80, 0.90, 0.80], "mixed": [0.82, 0.88, 0.86, 0.93, 0.89]}
    runs = _runs(base, cells, split_seeds=(0, 1))
    rng = np.random.default_rng(0)
    errors = {rid: pd.Series(rng.normal(mae, 0.1, 50), index=[f"x{i}" for i in range(50)]) for rid, mae in
              zip(runs.run_id, runs.test_mae, strict=True)}  # fmt: skip
    summary = summarize(runs, lambda rid: errors[rid]).set_index("pretrained")
    assert summary.index[0] == SCRATCH
    assert pd.isna(summary.at[SCRATCH, "p_holm"]) and pd.isna(summary.at[SCRATCH, "p_sign"])
    good, mixed = summary.loc["good"], summary.loc["mixed"]
    assert good.n_pairs == 10  # pairs match on (split seed, seed)
    diffs = {n: np.array(v * 2) - np.array(base * 2) for n, v in cells.items()}
    ps = {n: stats.ttest_1samp(d, 0).pvalue for n, d in diffs.items()}
    assert good.p_value == pytest.approx(ps["good"])
    assert good.p_holm == pytest.approx(min(1, 2 * min(ps.values())))
    assert mixed.p_holm == pytest.approx(max(min(1, 2 * min(ps.values())), ps["mixed"]))
    assert good.p_sign == pytest.approx(stats.binomtest(10, 10, 0.5).pvalue)
    assert good.ci_low < good.ci_high and np.isfinite(good.ci_low)
    # without per-crystal predictions the interval is blank, the rest is unchanged
    bare = summarize(runs).set_index("pretrained")
    assert pd.isna(bare.at["good", "ci_low"]) and bare.at["good", "p_holm"] == pytest.approx(good.p_holm)


def test_old_runs_without_split_seed_pair_on_seed():
    runs = _runs([0.8, 0.9, 0.85], {"a": [0.7, 0.8, 0.9]}).drop(columns=["split_seed"])
    row = summarize(runs).set_index("pretrained").loc["a"]
    assert row.n_pairs == 3 and row.wins == 2


def test_grid_over_split_seeds_and_runs_csv_column(tmp_path):
    grid = SweepGrid(["bulk-moduli"], [1], [0, 1], split_seeds=[0, 1, 2])
    specs = grid.specs()
    assert len(specs) == 3 * 2 * 2
    assert sorted({(s.split_seed, s.seed) for s in specs}) == [(a, b) for a in range(3) for b in range(2)]
    store = RunStore(tmp_path / "runs.sqlite")
    run_id = store.create_run(specs[-1].to_dict())
    frame = runs_frame([store.get(run_id)])
    assert frame.at[0, "split_seed"] == 2


def test_sweep_summary_rewrites_a_shipped_folder(tmp_path, isolated_home):
    import shutil

    from cgcnn.cli.main import main
    from cgcnn.paths import project_path

    folder = tmp_path / "table3"
    shutil.copytree(project_path("docs", "results", "table3"), folder)
    before = pd.read_csv(folder / "summary.csv")
    assert main(["sweep-summary", str(folder)]) == 0
    after = pd.read_csv(folder / "summary.csv")
    assert {"p_holm", "p_sign", "ci_low", "ci_high"} <= set(after.columns)
    assert after["mean_diff"].equals(before["mean_diff"]) and after["p_value"].equals(before["p_value"])
    matched = after[(after.pretrained == "own-formation-energy-matched") & (after.freeze == 2)].iloc[0]
    assert matched.p_sign == pytest.approx(0.375) and matched.wins == 4
    assert after["ci_low"].isna().all()  # the per-crystal predictions are not in this (empty) store
