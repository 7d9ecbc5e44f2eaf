"""A sweep's results folder: what ships (runs, per-crystal predictions) and what is recomputed from it.

A folder written by ``sweep --out`` holds ``runs.csv`` (one row per run) and ``predictions.csv.gz`` (every run's
per-crystal test predictions: run_id, crystal_id, y_true, y_pred). Everything else — ``summary.csv``,
``crossover.csv``, ``learning_curve.png`` — is a function of those two files and a :class:`Scoring`, so
``sweep-summary DIR`` recomputes every number and interval on a fresh clone, without the run store that
trained them (the store is read first when it has the runs; the file fills in what it lacks).

Scorings (docs/learning-curves.md, "Scoring"): ``primary`` is the pre-registered one (unclamped, the test
crystals with a structure twin in the first 4,000 training crystals, the validation block or a pretraining set
left out); ``all`` scores every test crystal as predicted (what a sweep writes while it runs, and the
sensitivity analysis "twins kept"); ``clamped`` and ``unseen`` are the other labelled sensitivity analyses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cgcnn.errors import CGCNNError
from cgcnn.experiments.crossover import crossover_table
from cgcnn.experiments.learning_curve import curve_points, save_learning_curve_png
from cgcnn.experiments.rescore import Rescoring, TestPredictions, rescore_runs, store_test_predictions, twin_rescoring
from cgcnn.experiments.summary import TestErrors, summarize
from cgcnn.runs.store import RunStore

PREDICTIONS_FILE = "predictions.csv.gz"
PREDICTION_COLUMNS = ["run_id", "crystal_id", "y_true", "y_pred"]
#: Twins are looked for in this many training crystals (the largest size of the pre-registered grid), so that
#: every size of a split is scored on the same test crystals.
TWIN_SEARCH_N_TRAIN = 4000
#: The split whose test block the committed own models' pretraining left out (the ``unseen`` rescoring).
OWN_MODELS_PRETRAINING_SPLIT = 0


@dataclass(frozen=True)
class Scoring:
    """How stored test predictions are scored.

    Attributes:
        name: the ``--scoring`` value.
        description: what it is, with its role (primary, or which sensitivity analysis).
        drop_twins: leave out test crystals with a structure twin in training, validation or pretraining.
        clamp_at: score ``max(prediction, clamp_at)`` (None: as predicted).
        unseen: also leave out every test crystal in the own models' pretraining pool (by id or as a twin).
    """

    name: str
    description: str
    drop_twins: bool = False
    clamp_at: float | None = None
    unseen: bool = False


SCORINGS = {
    s.name: s
    for s in (
        Scoring("all", "sensitivity analysis 2 (twins kept): every test crystal, unclamped"),
        Scoring("primary", "pre-registered primary: unclamped, twins of the test block removed", drop_twins=True),
        Scoring("clamped", "sensitivity analysis 1: clamped at 0, twins removed", drop_twins=True, clamp_at=0.0),
        Scoring(
            "unseen",
            "sensitivity analysis 4: only test crystals no pretraining saw (own models' pool, split 0), unclamped",
            drop_twins=True,
            unseen=True,
        ),
    )
}
#: The labelled sensitivity analyses that ``sweep-summary --sensitivity`` writes beside the primary.
SENSITIVITY = ("clamped", "all", "unseen")


@dataclass(frozen=True)
class ScoredResults:
    """A folder's runs under one scoring and everything computed from them."""

    scoring: Scoring
    runs: pd.DataFrame
    summary: pd.DataFrame
    crossover: pd.DataFrame
    points: pd.DataFrame
    n_unscored: int


def write_predictions(store: RunStore, run_ids: list[str], path: Path) -> int:
    """Write the test predictions of ``run_ids`` (those the store has) as ``predictions.csv.gz``; rows written.

    Floats are written in full (shortest round-trip form), so the file reproduces the store's MAEs exactly.
    """
    read = store_test_predictions(store)
    frames = []
    for run_id in run_ids:
        frame = read(run_id)
        if frame is not None:
            frames.append(frame.reset_index().assign(run_id=run_id)[PREDICTION_COLUMNS])
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=PREDICTION_COLUMNS)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False, compression={"method": "gzip", "mtime": 0})
    return len(table)


def file_test_predictions(path: Path) -> TestPredictions:
    """Per-run test predictions read from a ``predictions.csv.gz`` (None for a run it lacks, or no file)."""
    if not path.is_file():
        return lambda run_id: None
    try:
        table = pd.read_csv(path, dtype={"run_id": str, "crystal_id": str})
    except (OSError, ValueError, EOFError) as exc:
        raise CGCNNError(f"{path}: not a readable predictions file ({exc})") from None
    missing = set(PREDICTION_COLUMNS) - set(table.columns)
    if missing:
        raise CGCNNError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    by_run = {
        run_id: part.set_index("crystal_id")[["y_true", "y_pred"]].astype(float)
        for run_id, part in table.groupby("run_id", sort=False)
    }
    return by_run.get


def folder_test_predictions(folder: Path, store: RunStore | None) -> TestPredictions:
    """The store's predictions of a run, else the folder's ``predictions.csv.gz``.

    The file is read (and checked) here, once, so a damaged file is reported even when the store has every run.

    Raises:
        CGCNNError: ``predictions.csv.gz`` exists but cannot be read or lacks a column.
    """
    from_store = store_test_predictions(store) if store is not None else (lambda run_id: None)
    from_file = file_test_predictions(folder / PREDICTIONS_FILE)

    def predictions(run_id: str) -> pd.DataFrame | None:
        frame = from_store(run_id)
        return frame if frame is not None else from_file(run_id)

    return predictions


def errors_from(predictions: TestPredictions) -> TestErrors:
    """Per-crystal errors (prediction − label) from per-crystal predictions."""

    def errors(run_id: str) -> pd.Series | None:
        frame = predictions(run_id)
        if frame is None or frame.empty:
            return None
        return frame["y_pred"] - frame["y_true"]

    return errors


def rescoring_of(scoring: Scoring, runs: pd.DataFrame, dataset_loader: Callable | None = None) -> Rescoring:
    """The :class:`~cgcnn.experiments.rescore.Rescoring` that applies ``scoring`` to ``runs``.

    Raises:
        CGCNNError: twin removal asked for runs that are not on the band-gap split (twins are defined there).
    """
    if not scoring.drop_twins:
        return Rescoring(scoring.name, clamp_at=scoring.clamp_at)
    targets = set(runs["target"].dropna().astype(str)) if "target" in runs else {"band_gap"}
    if targets - {"band_gap"}:
        raise CGCNNError(
            f"--scoring {scoring.name}: twins of the test block are defined for the band-gap split; these runs "
            f"have target(s) {', '.join(sorted(targets))} (use --scoring all)"
        )
    if dataset_loader is None:
        from cgcnn.data.datasets import load_default_dataset as dataset_loader
    seeds = runs["split_seed"].fillna(0).astype(int).tolist() if "split_seed" in runs else [0]
    largest = int(runs["n_train"].max()) if "n_train" in runs and runs["n_train"].notna().any() else 0
    rescoring = twin_rescoring(
        dataset_loader(),
        seeds,
        clamp_at=scoring.clamp_at,
        pretraining_split_seed=OWN_MODELS_PRETRAINING_SPLIT if scoring.unseen else None,
        n_train=max(TWIN_SEARCH_N_TRAIN, largest),
    )
    return Rescoring(scoring.name, rescoring.drop, rescoring.clamp_at)


def score_results(
    runs: pd.DataFrame, predictions: TestPredictions, scoring: Scoring, rescoring: Rescoring | None = None
) -> ScoredResults:
    """Summary, crossover and learning-curve points of ``runs`` under ``scoring``.

    ``all`` keeps every run (its stored MAE; intervals where predictions exist). The other scorings need each
    run's predictions: runs without them are left out (``n_unscored`` says how many).
    """
    if scoring.name == "all" and rescoring is None:
        errors = errors_from(predictions)
        scored, n_unscored = runs, 0
    else:
        rescoring = rescoring or rescoring_of(scoring, runs)
        scored, errors = rescore_runs(runs, predictions, rescoring)
        n_unscored = len(runs) - len(scored)
        if scored.empty:
            raise CGCNNError(
                f"--scoring {scoring.name}: none of these runs has per-crystal test predictions (neither in the run "
                f"store nor in {PREDICTIONS_FILE})"
            )
    return ScoredResults(
        scoring=scoring,
        runs=scored,
        summary=summarize(scored, errors),
        crossover=crossover_table(scored, errors),
        points=curve_points(scored),
        n_unscored=n_unscored,
    )


#: The learning-curve points of a folder (:func:`~cgcnn.experiments.learning_curve.curve_points` and the scoring
#: they were computed under), which the app's Compare page reads.
POINTS_FILE = "learning_curve.csv"


def write_results(folder: Path, results: ScoredResults, title: str = "") -> list[Path]:
    """``summary.csv`` of one scoring and, over several sizes, its learning curve; the paths written.

    The curve files (``crossover.csv``, ``learning_curve.csv``, ``learning_curve.png``) need at least two
    training-set sizes, so a folder of one size (Table 2's) keeps the files it always had.
    """
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "summary.csv"]
    results.summary.to_csv(paths[0], index=False)
    if results.runs.empty or "n_train" not in results.runs or results.runs["n_train"].nunique() < 2:
        return paths
    paths += [folder / "crossover.csv", folder / POINTS_FILE, folder / "learning_curve.png"]
    results.crossover.to_csv(paths[1], index=False)
    points = results.points.assign(scoring=results.scoring.name, scoring_description=results.scoring.description)
    points.to_csv(paths[2], index=False)
    band_gap = "target" not in results.runs or set(results.runs["target"].dropna()) <= {"band_gap"}
    label = title or f"Learning curves ({results.scoring.name} scoring): mean and 95% band over splits"
    save_learning_curve_png(results.points, paths[3], references=band_gap, title=label)
    return paths


def write_sensitivity(folder: Path, variants: list[ScoredResults]) -> list[Path]:
    """The sensitivity analyses side by side, labelled: ``sensitivity_summary.csv``, ``sensitivity_crossover.csv``.

    Long form, with a leading ``scoring`` column (its name) and ``scoring_description`` (which analysis).
    """
    paths = [folder / "sensitivity_summary.csv", folder / "sensitivity_crossover.csv"]
    for path, part in zip(paths, ("summary", "crossover"), strict=True):
        frames = [
            getattr(v, part).assign(scoring_description=v.scoring.description).pipe(_label_first, v.scoring.name)
            for v in variants
        ]
        pd.concat(frames, ignore_index=True).to_csv(path, index=False)
    return paths


def _label_first(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    return frame.assign(scoring=name)[["scoring", *[c for c in frame.columns if c != "scoring"]]]
