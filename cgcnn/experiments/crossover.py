"""Where a recipe stops (or starts) beating scratch: the zero of its split-mean Δ along log n.

docs/learning-curves.md defines it: for each recipe, Δ(n) = mean over splits of (MAE of the recipe − MAE of
scratch on the same split, size and model seed); the crossover is the zero of Δ as a function of log n, by
linear interpolation between the two sizes where its sign changes. Its 95% interval comes from the same
hierarchical bootstrap as the summary's (splits, then test crystals; one joint draw for every size, so each
resample is a curve), taking each resample's crossover; resamples without a sign change are counted and said
in the note. A recipe whose Δ keeps one sign has no crossover: "beats scratch at every size tested" or "never
beats scratch".
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from cgcnn.experiments.learning_curve import RECIPE
from cgcnn.experiments.stats import BOOTSTRAP_RESAMPLES, hierarchical_bootstrap, percentile_interval
from cgcnn.experiments.summary import TestErrors, pair_table, split_crystal_diffs
from cgcnn.training.transfer import SCRATCH

#: Columns of :func:`crossover_table`.
CROSSOVER_COLUMNS = [*RECIPE, "crossover_n", "ci_low", "ci_high", "note"]
ALWAYS_BETTER = "beats scratch at every size tested"
NEVER_BETTER = "never beats scratch"


def crossover_n(sizes: Sequence[float], deltas: Sequence[float]) -> float | None:
    """The first zero of Δ(n), interpolated linearly in log n; None when Δ never changes sign.

    A size where Δ is exactly 0 is itself the crossover. Sizes are sorted here; NaN deltas are skipped.

    >>> round(crossover_n([100, 400], [-0.1, 0.1]))  # halfway in log n: sqrt(100 * 400)
    200
    """
    points = sorted((float(n), float(d)) for n, d in zip(sizes, deltas, strict=True) if np.isfinite(d))
    for (n0, d0), (n1, d1) in itertools.pairwise(points):
        if d0 == 0.0:
            return n0
        if (d0 < 0.0) != (d1 < 0.0) and d1 != d0:
            x0, x1 = math.log(n0), math.log(n1)
            return math.exp(x0 + (0.0 - d0) * (x1 - x0) / (d1 - d0))
    if points and points[-1][1] == 0.0:
        return points[-1][0]
    return None


def sign_note(deltas: Sequence[float]) -> str:
    """The note of a recipe without a crossover (empty when Δ changes sign)."""
    finite = [d for d in deltas if np.isfinite(d)]
    if finite and all(d < 0 for d in finite):
        return ALWAYS_BETTER
    if finite and all(d > 0 for d in finite):
        return NEVER_BETTER
    return ""


def sign_changes(sizes: Sequence[float], deltas: Sequence[float]) -> int:
    """How often Δ(n) changes sign along the sorted sizes (a zero counts as no sign)."""
    signs = [np.sign(d) for _, d in sorted(zip(sizes, deltas, strict=True)) if np.isfinite(d) and d != 0]
    return sum(a != b for a, b in itertools.pairwise(signs))


def crossover_table(runs: pd.DataFrame, test_errors: TestErrors | None = None) -> pd.DataFrame:
    """One row per recipe other than scratch: :data:`CROSSOVER_COLUMNS` (see module doc).

    Args:
        runs: a runs.csv-shaped frame with several ``n_train``.
        test_errors: per-crystal test errors by run id, for the interval (without them it stays blank).
    """
    pairs = pair_table(runs)
    pairs = pairs[pairs.pretrained != SCRATCH]
    rows = []
    for key, recipe in pairs.groupby(RECIPE, sort=True):
        per_size = recipe.groupby(["n_train", "split_seed"])["diff"].mean().groupby("n_train").mean()
        sizes, deltas = per_size.index.to_numpy(float), per_size.to_numpy(float)
        point = crossover_n(sizes, deltas)
        row = dict(zip(RECIPE, key, strict=True))
        row["freeze"] = int(row["freeze"])
        row.update(crossover_n=point, ci_low=None, ci_high=None)
        notes = []
        if len(sizes) < 2:
            notes.append(f"one size only (n = {int(sizes[0])}): no curve")
        elif point is None:
            notes.append(sign_note(deltas))
        elif sign_changes(sizes, deltas) > 1:
            notes.append(f"Δ changes sign {sign_changes(sizes, deltas)} times; the first change is given")
        if point is not None and test_errors is not None and len(sizes) > 1:
            interval, crossing = _interval(recipe, sizes, test_errors)
            if crossing is None:
                notes.append("no interval: per-crystal test predictions missing")
            else:
                if interval is not None:
                    row["ci_low"], row["ci_high"] = interval
                notes.append(f"sign change in {crossing} of {BOOTSTRAP_RESAMPLES} resamples (interval over those)")
        row["note"] = "; ".join(n for n in notes if n)
        rows.append(row)
    return pd.DataFrame(rows, columns=CROSSOVER_COLUMNS)


def _interval(recipe: pd.DataFrame, sizes: np.ndarray, test_errors: TestErrors):
    """The bootstrap interval of the crossover and how many resamples had one (None, None: errors missing)."""
    curves = []
    for n in sizes:
        per_split = split_crystal_diffs(recipe[recipe.n_train == int(n)], test_errors)
        if per_split is None:
            return None, None
        curves.append(per_split)
    # within a split, every size must score the same crystals: keep those all sizes share
    for split in {s for curve in curves for s in curve}:
        present = [curve[split] for curve in curves if split in curve]
        shared = present[0].index
        for series in present[1:]:
            shared = shared.intersection(series.index)
        for curve in curves:
            if split in curve:
                curve[split] = curve[split].loc[shared]
    resampled = hierarchical_bootstrap(curves)
    points = np.array([crossover_n(sizes, row) or np.nan for row in resampled])
    crossing = int(np.isfinite(points).sum())
    return percentile_interval(points), crossing
