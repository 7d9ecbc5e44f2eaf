"""Statistics of paired comparisons: multiple-testing correction, an exact sign test, a two-level bootstrap.

A sweep compares many cells with one baseline over a handful of seed pairs. Three things the plain paired
t-test misses, each a function here:

- many cells are tested at once: :func:`holm` controls the family-wise error over all of them;
- with five pairs, normality is an assumption, not a fact: :func:`sign_test` needs none (and can never go
  below 0.0625 with five pairs, which is the honest floor of what five seeds show);
- the t-test treats the test set as fixed, but another draw of 1,000 test crystals would give other MAEs:
  :func:`paired_bootstrap_ci` resamples the test crystals *and* the pairs, so its interval carries both;
- when splits are the unit of replication (learning curves), :func:`hierarchical_bootstrap` resamples splits,
  then test crystals within each split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: Resamples and seed of the bootstrap (fixed, so a summary is the same every time it is written).
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment; None (no test) stays None and does not count in the family.

    The smallest of ``m`` p-values is multiplied by ``m``, the next by ``m - 1``, ...; each adjusted value is
    at least the one before it (monotone) and at most 1.
    """
    present = [(p, i) for i, p in enumerate(p_values) if p is not None and np.isfinite(p)]
    adjusted: list[float | None] = [None] * len(p_values)
    m = len(present)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def sign_test(diff: np.ndarray) -> float | None:
    """Exact two-sided sign test that a paired difference is as often positive as negative (ties dropped).

    Returns None when every pair is a tie (or there are none).
    """
    diff = np.asarray(diff, dtype=np.float64)
    wins, losses = int((diff < 0).sum()), int((diff > 0).sum())
    if wins + losses == 0:
        return None
    return float(stats.binomtest(wins, wins + losses, 0.5, alternative="two-sided").pvalue)


@dataclass(frozen=True)
class PairErrors:
    """One pair's absolute test errors on the same crystals: the cell's run and the baseline's run.

    ``group`` names the test set (the split seed): pairs of one group share their crystals, so the bootstrap
    draws one crystal resample per group and applies it to all of its pairs.
    """

    group: object
    cell: np.ndarray
    base: np.ndarray


def paired_bootstrap_ci(
    pairs: Sequence[PairErrors],
    level: float = 0.95,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile interval of the mean paired MAE difference (cell - baseline), resampling crystals and pairs.

    Each resample draws, for every test set, its crystals with replacement (one draw shared by the pairs on
    that set), then draws pairs with replacement, and averages their MAE differences on the drawn crystals.
    The interval therefore covers both the seed-to-seed spread and the test-sampling error.

    Raises:
        ValueError: no pairs, or a pair whose two error arrays differ in length.
    """
    if not pairs:
        raise ValueError("no pairs to bootstrap")
    rng = np.random.default_rng(seed)
    groups: dict[object, list[int]] = {}
    for i, pair in enumerate(pairs):
        if len(pair.cell) != len(pair.base) or len(pair.cell) == 0:
            raise ValueError("each pair needs the same, non-empty, test crystals for cell and baseline")
        groups.setdefault(pair.group, []).append(i)
    # per-pair MAE difference under each resample of its group's crystals: (n_pairs, n_resamples)
    per_pair = np.empty((len(pairs), n_resamples))
    for members in groups.values():
        n = len(pairs[members[0]].cell)
        if any(len(pairs[i].cell) != n for i in members):
            raise ValueError("pairs of one test set must share the same crystals")
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_resamples) / n  # (n_resamples, n)
        diffs = np.stack([np.abs(pairs[i].cell) - np.abs(pairs[i].base) for i in members])  # (m, n)
        per_pair[members] = diffs @ weights.T
    picks = rng.integers(0, len(pairs), size=(n_resamples, len(pairs)))
    means = per_pair[picks, np.arange(n_resamples)[:, None]].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def hierarchical_bootstrap(
    curves: Sequence[Mapping[object, np.ndarray]],
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> np.ndarray:
    """Resampled split-mean differences, splits first, then test crystals within each chosen split.

    The split is the unit of replication (docs/learning-curves.md): each resample draws as many splits as
    there are, with replacement, and for every draw (a split drawn twice gets two independent draws) resamples
    that split's test crystals with replacement. A split's difference under a draw is the mean of its
    per-crystal differences over the drawn crystals; a resample's value is the mean over its drawn splits.

    Several curves (one per training-set size, say) are resampled jointly: one draw of splits and crystals
    serves all of them, so a crossover computed per resample sees one coherent world. A split that a curve
    lacks is skipped in that curve's mean (NaN when the resample drew none of its splits).

    Args:
        curves: per curve, split → per-crystal differences (|error of the recipe| − |error of the reference|,
            averaged over the pairs of the split). Within a split every curve must hold the same crystals in
            the same order (the scored test set of a split is the same at every size).
        n_resamples: resamples (2,000 by default, as every interval of a summary).
        seed: of the generator, fixed so a summary is the same every time it is written.

    Returns:
        ``(n_resamples, len(curves))`` resampled means.

    Raises:
        ValueError: no split at all, an empty split, or one split holding different crystal counts across curves.
    """
    splits = sorted({s for curve in curves for s in curve}, key=str)
    if not splits:
        raise ValueError("no split to bootstrap")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(splits), size=(n_resamples, len(splits)))
    values = np.full((len(curves), n_resamples, len(splits)), np.nan)
    for s, split in enumerate(splits):
        arrays = [np.asarray(curve[split], dtype=np.float64) for curve in curves if split in curve]
        n = len(arrays[0])
        if n == 0 or any(len(a) != n for a in arrays):
            raise ValueError(f"split {split}: every curve needs the same, non-empty, test crystals")
        chosen = picks == s
        count = int(chosen.sum())
        if count == 0:
            continue
        crystals = rng.integers(0, n, size=(count, n))
        for c, curve in enumerate(curves):
            if split in curve:
                values[c][chosen] = np.asarray(curve[split], dtype=np.float64)[crystals].mean(axis=1)
    with np.errstate(all="ignore"):
        counts = np.sum(~np.isnan(values), axis=2)
        sums = np.nansum(values, axis=2)
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return means.T


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float] | None:
    """The percentile interval of bootstrap values (NaN skipped); None when none is finite."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return None
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(low), float(high)
