"""Re-score finished runs from their stored per-crystal test predictions, without retraining.

A sweep's conclusions rest on test MAEs. Two questions about them need no new training, only another look at
the predictions the run store keeps for every finished run:

- leakage by structure: a test crystal whose twin (same structure, another id; :mod:`cgcnn.data.leakage`) was
  in the fine-tune training set or a pretraining set was, in effect, seen. :func:`twin_rescoring` leaves those
  crystals out of every run of a split, fine-tune and baseline alike, so pairs stay paired;
- physical ranges: a band gap cannot be negative; ``clamp_at=0`` scores ``max(prediction, 0)``, as
  ``predict --clamp`` would have answered.

:func:`rescore_summary` puts the summaries (:func:`cgcnn.experiments.sweep.summarize`: mean, paired difference,
wins, Holm-corrected t-test, sign test, bootstrap CI) of each variant side by side, all on the same runs (those
with stored predictions), so a change of conclusion shows as a change in one row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cgcnn.data.datasets import CrystalDataset
from cgcnn.data.leakage import twin_leaks
from cgcnn.data.splits import PROTOCOL_SIZE
from cgcnn.errors import CGCNNError
from cgcnn.experiments.learning_curve import POINT
from cgcnn.experiments.summary import TestErrors, summarize
from cgcnn.runs.store import RunStore

#: Per-crystal test predictions of a run: index ``crystal_id``, columns ``y_true`` and ``y_pred`` (None: none).
TestPredictions = Callable[[str], "pd.DataFrame | None"]

#: Columns of the summary compared between variants, in :func:`rescore_summary`'s output.
COMPARED = ("mean_mae", "mean_diff", "wins", "p_value", "p_holm", "p_sign", "ci_low", "ci_high")


@dataclass(frozen=True)
class Rescoring:
    """One way of scoring stored test predictions again.

    Attributes:
        name: column suffix in the outputs, e.g. ``without_twins``.
        drop: split seed → crystals left out of every run on that split (absent seed: none).
        clamp_at: score ``max(prediction, clamp_at)`` instead of the prediction (None: as predicted).
    """

    name: str
    drop: Mapping[int, frozenset[str]] = field(default_factory=dict)
    clamp_at: float | None = None


def store_test_predictions(store: RunStore) -> TestPredictions:
    """The stored per-crystal test predictions of runs (None for a run with none, or one the store lacks)."""

    def predictions(run_id: str) -> pd.DataFrame | None:
        try:
            frame = store.predictions(run_id, split="test")
        except CGCNNError:  # not a run of this store (e.g. results copied from another machine)
            return None
        if frame.empty:
            return None
        return frame.set_index("crystal_id")[["y_true", "y_pred"]].astype(float)

    return predictions


def twin_rescoring(
    dataset: CrystalDataset,
    split_seeds: Iterable[int],
    clamp_at: float | None = None,
    pretraining_split_seed: int | None = None,
    n_train: int = PROTOCOL_SIZE,
) -> Rescoring:
    """Leave out, per split seed, the test crystals with a twin in training or pretraining (see module doc).

    ``n_train``: the fine-tune training set the twins are looked for in (a prefix of the training block). A
    learning curve passes its largest size (docs/learning-curves.md: 4,000), so every size of a split is scored
    on the same crystals.

    ``pretraining_split_seed``: the split whose test block the pretraining left out, when it is not the
    fine-tune's own (then the crystals in the pretraining pool by id are left out too, and the variant is
    named ``unseen``: only test crystals no model learnt from, in any form).
    """
    drop = {
        int(s): frozenset(
            twin_leaks(dataset, int(s), n_train=n_train, pretraining_split_seed=pretraining_split_seed).leaked
        )
        for s in sorted(set(split_seeds))
    }
    name = "without_twins" if pretraining_split_seed is None else "unseen"
    return Rescoring(name if clamp_at is None else f"{name}_clamped", drop, clamp_at)


def rescore_runs(
    runs: pd.DataFrame, predictions: TestPredictions, rescoring: Rescoring
) -> tuple[pd.DataFrame, TestErrors]:
    """``runs`` (a sweep's runs.csv) with ``test_mae`` re-scored; runs without stored predictions are dropped.

    Returns:
        The runs that have predictions, with ``test_mae`` replaced by the re-scored MAE and two columns added:
        ``n_scored`` (test crystals scored) and ``n_dropped`` (left out); and the matching per-crystal errors
        (prediction − label, after clamping and dropping) for :func:`~cgcnn.experiments.sweep.summarize`'s
        bootstrap.
    """
    runs = runs.copy()
    if "split_seed" not in runs:
        runs["split_seed"] = 0  # results written before split seeds were recorded: all on split 0
    runs["split_seed"] = runs["split_seed"].fillna(0).astype(int)
    errors: dict[str, pd.Series] = {}
    keep, maes, scored, dropped = [], [], [], []
    for i, row in runs.iterrows():
        frame = predictions(str(row["run_id"]))
        if frame is None:
            continue
        left_out = rescoring.drop.get(int(row["split_seed"]), frozenset())
        kept = frame[~frame.index.isin(left_out)]
        pred = kept["y_pred"].to_numpy(float)
        if rescoring.clamp_at is not None:
            pred = np.maximum(pred, rescoring.clamp_at)
        err = pd.Series(pred - kept["y_true"].to_numpy(float), index=kept.index)
        errors[str(row["run_id"])] = err
        keep.append(i)
        maes.append(float(err.abs().mean()))
        scored.append(len(kept))
        dropped.append(len(frame) - len(kept))
    out = runs.loc[keep].copy()
    out["test_mae"] = maes
    out["n_scored"] = scored
    out["n_dropped"] = dropped
    return out.reset_index(drop=True), errors.get


def rescore_summary(
    runs: pd.DataFrame, predictions: TestPredictions, rescorings: Iterable[Rescoring]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-run MAEs and per-cell summaries under each rescoring, side by side, on the runs with predictions.

    The first variant is always ``all`` (every test crystal, predictions as stored), so every other column
    compares with it on the same runs.

    Returns:
        ``(per_run, per_cell)``: per run its id, cell, split seed, seed, stored ``test_mae`` and
        ``mae_<variant>`` (plus ``n_scored_<variant>``); per cell (``pretrained``, ``freeze``, ``strategy``,
        ``n_train``) its number of runs and, per variant, the :data:`COMPARED` summary columns suffixed ``_<variant>``.

    Raises:
        CGCNNError: no run of ``runs`` has stored test predictions.
    """
    variants = [Rescoring("all"), *rescorings]
    runs = runs.copy()
    if "split_seed" not in runs:
        runs["split_seed"] = 0
    runs["split_seed"] = runs["split_seed"].fillna(0).astype(int)
    per_run: pd.DataFrame | None = None
    per_cell: pd.DataFrame | None = None
    for variant in variants:
        scored, errors = rescore_runs(runs, predictions, variant)
        if scored.empty:
            raise CGCNNError("none of these runs has per-crystal test predictions in the run store")
        summary = summarize(scored, errors)
        columns = {"test_mae": f"mae_{variant.name}", "n_scored": f"n_scored_{variant.name}"}
        run_part = scored[["run_id", "test_mae", "n_scored"]].rename(columns=columns)
        if per_run is None:
            base = ["run_id", "pretrained", "freeze", "split_seed", "seed"]
            per_run = runs[[*base, "test_mae"]].merge(run_part, on="run_id", how="inner")
        else:
            per_run = per_run.merge(run_part, on="run_id", how="left")
        cell_part = summary[[*POINT, *COMPARED]].rename(columns={c: f"{c}_{variant.name}" for c in COMPARED})
        if per_cell is None:
            per_cell = summary[[*POINT, "n"]].merge(cell_part, on=POINT)
        else:
            per_cell = per_cell.merge(cell_part, on=POINT, how="left")
    assert per_run is not None and per_cell is not None
    return per_run, per_cell
