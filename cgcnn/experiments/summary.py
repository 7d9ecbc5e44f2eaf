"""A sweep's summary: per cell its MAE, the paired comparison with scratch, and the split-level statistics.

A cell is a recipe at one training-set size: (pretrained, freeze, strategy, n_train). Its reference is the
scratch model of the same size, split and model seed (a pair). Two levels of statistics sit side by side:

- pair level (the columns sweeps always had): ``mean_diff``, ``wins``, the paired t-test ``p_value``, its Holm
  correction ``p_holm``, the sign test ``p_sign`` and a bootstrap over pairs and test crystals. Pairs of one
  split share their test crystals, so with several model seeds per split they are not independent;
- split level (docs/learning-curves.md, the pre-registered analysis): the split is the unit of replication.
  Δ(split) is the mean over that split's pairs; ``mean_diff_split`` its mean over splits, ``p_split_t`` a
  t-test and ``p_split_sign`` an exact sign test over the split-level Δ, ``ci_*_split`` a hierarchical
  bootstrap (splits, then test crystals within each; :func:`cgcnn.experiments.stats.hierarchical_bootstrap`).

Holm families are one per size, across the network recipes (``p_holm``, ``p_split_holm``,
``p_split_sign_holm``). The baselines without a network (``mean``, ``composition``) are yardsticks, not
hypotheses: their differences to scratch are reported, untested. A baseline run is deterministic, so one run
per split pairs with every scratch seed of that split.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats

from cgcnn.experiments.learning_curve import POINT, recipe_kind, with_recipe_columns
from cgcnn.experiments.stats import (
    PairErrors,
    hierarchical_bootstrap,
    holm,
    paired_bootstrap_ci,
    percentile_interval,
    sign_test,
)
from cgcnn.experiments.study import study_mae
from cgcnn.training.protocol import STUDY
from cgcnn.training.transfer import SCRATCH

#: Per-crystal test errors of a run: ``crystal_id`` → prediction − label (None when the run has none stored).
TestErrors = Callable[[str], "pd.Series | None"]

#: Columns of :func:`summarize`, in order: the cell, the pair-level comparison, then the split level.
SUMMARY_COLUMNS = [
    *POINT, "n", "mean_mae", "std_mae", "study_mae", "n_pairs", "mean_diff", "std_diff", "wins", "p_value", "p_holm",
    "p_sign", "ci_low", "ci_high", "n_splits", "mean_diff_split", "p_split_t", "p_split_holm", "p_split_sign",
    "p_split_sign_holm", "ci_low_split", "ci_high_split",
]  # fmt: skip

#: Columns of a pair table (:func:`pair_table`).
PAIR_COLUMNS = [*POINT, "split_seed", "seed", "run_id", "base_run_id", "mae", "base_mae", "diff"]


def pair_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Every (recipe run, scratch run) pair: same size, same split, same model seed (baselines: every seed).

    Args:
        runs: a runs.csv-shaped frame (see :func:`cgcnn.experiments.learning_curve.with_recipe_columns`); a
            frame without ``n_train`` is one size, without ``run_id`` has no per-crystal look-ups.

    Returns:
        :data:`PAIR_COLUMNS`; ``diff`` = recipe − scratch test MAE (negative: the recipe is better).
    """
    frame = _prepared(runs)
    scratch = frame[frame.pretrained == SCRATCH].drop_duplicates(["n_train", "split_seed", "seed"])
    base = scratch[["n_train", "split_seed", "seed", "run_id", "test_mae"]].rename(
        columns={"run_id": "base_run_id", "test_mae": "base_mae"}
    )
    others = frame[frame.pretrained != SCRATCH]
    is_baseline = others.pretrained.map(recipe_kind) == "baseline"
    network = others[~is_baseline].merge(base, on=["n_train", "split_seed", "seed"], how="inner")
    # a baseline is deterministic: its one run per split pairs with every scratch seed of that split
    baselines = others[is_baseline].drop_duplicates([*POINT, "split_seed"]).drop(columns="seed")
    baselines = baselines.merge(base, on=["n_train", "split_seed"], how="inner")
    pairs = pd.concat([network, baselines], ignore_index=True).rename(columns={"test_mae": "mae"})
    pairs["diff"] = pairs["mae"].astype(float) - pairs["base_mae"].astype(float)
    return pairs[PAIR_COLUMNS].sort_values([*POINT, "split_seed", "seed"], ignore_index=True)


def _prepared(runs: pd.DataFrame) -> pd.DataFrame:
    frame = with_recipe_columns(runs)
    if "n_train" not in frame:
        frame["n_train"] = STUDY.n_train  # results written before sizes varied: the study's
    frame["n_train"] = frame["n_train"].fillna(STUDY.n_train).astype(int)
    if "run_id" not in frame:
        frame["run_id"] = [f"row{i}" for i in range(len(frame))]
    frame["run_id"] = frame["run_id"].astype(str)
    return frame.dropna(subset=["test_mae"])


def summarize(runs: pd.DataFrame, test_errors: TestErrors | None = None) -> pd.DataFrame:
    """One row per cell (pretrained, freeze, strategy, n_train): :data:`SUMMARY_COLUMNS` (see module doc).

    ``n``, ``mean_mae``, ``std_mae``: test MAE over the cell's runs. ``study_mae``: the study's single-seed
    number for the cell (only at its 1,000 training crystals). ``n_pairs``, ``mean_diff``, ``std_diff``,
    ``wins``, ``p_value`` (paired t-test, two-sided; None with < 2 pairs), ``p_holm``, ``p_sign`` (exact
    two-sided, ties dropped), ``ci_low``/``ci_high`` (95% bootstrap over test crystals and pairs): the
    pair-level comparison. ``n_splits``, ``mean_diff_split``, ``p_split_t``, ``p_split_sign`` and their Holm
    corrections, ``ci_low_split``/``ci_high_split`` (hierarchical bootstrap, 2,000 resamples, seed 0): the
    split level. Intervals need ``test_errors`` for every pair's runs; without them they stay blank. The
    scratch rows (first) leave the comparison blank; baselines get differences and intervals but no tests.
    """
    if runs.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    frame = _prepared(runs)
    pairs = pair_table(frame)
    rows = []
    for key, cell in frame.groupby(POINT, sort=True):
        pretrained, freeze, strategy, n_train = key
        values = cell["test_mae"].to_numpy(dtype=float)
        row = dict.fromkeys(SUMMARY_COLUMNS)
        row.update(
            pretrained=pretrained,
            freeze=int(freeze),
            strategy=strategy,
            n_train=int(n_train),
            n=len(values),
            mean_mae=float(values.mean()),
            std_mae=float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
            study_mae=study_mae(pretrained, int(freeze)) if _is_study_cell(int(n_train), strategy) else None,
            n_pairs=0,
            n_splits=int(cell["split_seed"].nunique()),
        )
        if pretrained != SCRATCH:
            cell_pairs = pairs[(pairs[POINT] == pd.Series(key, index=POINT)).all(axis=1)]
            row.update(_comparison(cell_pairs, recipe_kind(pretrained) == "network", test_errors))
        rows.append(row)
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    tested = summary.pretrained.map(recipe_kind) == "network"
    for column, source in (("p_holm", "p_value"), ("p_split_holm", "p_split_t"), ("p_split_sign_holm", "p_split_sign")):
        summary[column] = summary[column].astype(object)
        for _, family in summary[tested].groupby("n_train"):
            adjusted = holm([None if pd.isna(p) else float(p) for p in family[source]])
            for index, p in zip(family.index, adjusted, strict=True):
                summary.at[index, column] = p
    is_scratch = summary.pretrained == SCRATCH
    return pd.concat([summary[is_scratch], summary[~is_scratch]], ignore_index=True)  # scratch first


def _is_study_cell(n_train: int, strategy: str) -> bool:
    """The study's numbers belong to its own size (1,000 crystals) and its only strategy (freezing)."""
    return n_train == STUDY.n_train and strategy in ("freeze", "none")


def _comparison(pairs: pd.DataFrame, tested: bool, test_errors: TestErrors | None) -> dict:
    """The pair- and split-level columns of one cell (tests only when ``tested``)."""
    if pairs.empty:
        return {"n_pairs": 0, "n_splits": 0}
    diff = pairs["diff"].to_numpy(float)
    split_diff = pairs.groupby("split_seed")["diff"].mean().to_numpy(float)
    out = {
        "n_pairs": len(diff),
        "mean_diff": float(diff.mean()),
        "std_diff": float(diff.std(ddof=1)) if len(diff) > 1 else None,
        "wins": int((diff < 0).sum()),
        "n_splits": len(split_diff),
        "mean_diff_split": float(split_diff.mean()),
    }
    if tested:
        out.update(
            p_value=one_sample_p(diff),
            p_sign=sign_test(diff),
            p_split_t=one_sample_p(split_diff),
            p_split_sign=sign_test(split_diff),
        )
    if test_errors is not None:
        flat = _pair_errors(pairs, test_errors)
        if flat is not None:
            out["ci_low"], out["ci_high"] = paired_bootstrap_ci(flat)
        per_split = split_crystal_diffs(pairs, test_errors)
        if per_split is not None:
            interval = percentile_interval(hierarchical_bootstrap([per_split])[:, 0])
            if interval is not None:
                out["ci_low_split"], out["ci_high_split"] = interval
    return out


def one_sample_p(diff: np.ndarray) -> float | None:
    """Two-sided one-sample t-test of mean zero; None with fewer than 2 values or no spread."""
    if len(diff) < 2 or np.allclose(diff, diff[0]):
        return None
    return float(stats.ttest_1samp(diff, 0.0).pvalue)


def _aligned(pair: pd.Series, test_errors: TestErrors) -> tuple[pd.Series, pd.Series] | None:
    cell, base = test_errors(str(pair["run_id"])), test_errors(str(pair["base_run_id"]))
    if cell is None or base is None:
        return None
    shared = cell.index.intersection(base.index).sort_values()
    if len(shared) == 0:
        return None
    return cell.loc[shared], base.loc[shared]


def _pair_errors(pairs: pd.DataFrame, test_errors: TestErrors) -> list[PairErrors] | None:
    """Each pair's absolute errors on their shared crystals, or None when one pair's errors are missing."""
    out = []
    for _, pair in pairs.iterrows():
        aligned = _aligned(pair, test_errors)
        if aligned is None:
            return None
        cell, base = aligned
        out.append(PairErrors(int(pair["split_seed"]), cell.to_numpy(float), base.to_numpy(float)))
    groups: dict[int, int] = {}
    if any(groups.setdefault(p.group, len(p.cell)) != len(p.cell) for p in out):
        return None  # pairs of one split scored on different crystals: no shared resample
    return out


def split_crystal_diffs(pairs: pd.DataFrame, test_errors: TestErrors) -> dict[int, pd.Series] | None:
    """Per split, the per-crystal |error| difference (recipe − scratch) averaged over the split's pairs.

    Indexed by crystal id (the crystals every pair of the split shares, sorted), so curves of one split at
    several sizes can be aligned. None when a pair's per-crystal errors are missing.
    """
    out: dict[int, pd.Series] = {}
    for split, part in pairs.groupby("split_seed"):
        diffs = []
        for _, pair in part.iterrows():
            aligned = _aligned(pair, test_errors)
            if aligned is None:
                return None
            cell, base = aligned
            diffs.append(cell.abs() - base.abs())
        joined = pd.concat(diffs, axis=1, join="inner")
        if joined.empty:
            return None
        out[int(split)] = joined.mean(axis=1).sort_index()
    return out
