"""The Compare page's learning-curve view: test MAE against training-set size, over split seeds.

Two sources, as for Table 2: the results that ship with the project (``docs/results/learning_curves/``, written
by ``sweep --sizes`` and scored by ``sweep-summary --scoring primary``), or this server's finished runs grouped
by (pretrained, freeze, strategy, n_train) over their split seeds. Runs are only put on one curve when they
share a protocol (target, validation and test sizes, epochs, patience, the default data): a size axis is a
comparison, and a budget or test-set change would move the points for another reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cgcnn.app.tables import shipped_results_dir
from cgcnn.errors import CGCNNError
from cgcnn.experiments.learning_curve import curve_points
from cgcnn.experiments.results_folder import POINTS_FILE
from cgcnn.runs.store import RunRecord

#: The shipped learning-curve results, under :func:`~cgcnn.app.tables.shipped_results_dir`.
SHIPPED_FOLDER = "learning_curves"
BAND_GAP = "band_gap"


@dataclass(frozen=True)
class CurveProtocol:
    """What runs on one learning curve share; sizes and split seeds vary along and across the curve."""

    target: str
    n_val: int
    n_test: int
    epochs: int | None
    patience: int | None

    def label(self, n_runs: int) -> str:
        """``band_gap, validation/test 1000/1000, 100 epochs (patience 15): 42 runs``."""
        budget = f"{self.epochs} epochs" if self.epochs else "default epochs"
        if self.patience:
            budget += f" (patience {self.patience})"
        return f"{self.target}, validation/test {self.n_val}/{self.n_test}, {budget}: {n_runs} run(s)"


@dataclass(frozen=True)
class CurveView:
    """What the view draws: the points, the crossovers when known, and where they come from."""

    points: pd.DataFrame
    crossover: pd.DataFrame | None
    target: str
    source: str


def shipped_folder() -> Path:
    """``docs/results/learning_curves``."""
    return shipped_results_dir() / SHIPPED_FOLDER


def shipped_view(folder: Path | None = None) -> CurveView | None:
    """The shipped learning curves (None when nothing ships yet).

    The points of ``learning_curve.csv`` (computed under the folder's scoring, which it names) when present,
    else computed from ``runs.csv`` (every test crystal, as stored).

    Raises:
        CGCNNError: a file of the folder cannot be read.
    """
    folder = folder or shipped_folder()
    runs_csv, points_csv, crossover_csv = folder / "runs.csv", folder / POINTS_FILE, folder / "crossover.csv"
    if not runs_csv.is_file() and not points_csv.is_file():
        return None
    try:
        if points_csv.is_file():
            points = pd.read_csv(points_csv)
            scoring = (
                str(points["scoring_description"].iloc[0]) if "scoring_description" in points and len(points) else ""
            )
        else:
            points, scoring = curve_points(pd.read_csv(runs_csv)), "every test crystal, as stored"
        crossover = pd.read_csv(crossover_csv) if crossover_csv.is_file() else None
        targets = pd.read_csv(runs_csv, usecols=["target"])["target"].dropna().unique() if runs_csv.is_file() else []
    except (OSError, ValueError, KeyError) as exc:
        raise CGCNNError(f"the shipped learning curves in {folder} cannot be read: {exc}") from None
    target = str(targets[0]) if len(targets) == 1 else BAND_GAP
    return CurveView(points, crossover, target, f"shipped results ({scoring})" if scoring else "shipped results")


def curve_protocol(record: RunRecord) -> CurveProtocol | None:
    """The protocol of a finished run that can sit on a learning curve (None: not done, a user's data, ...)."""
    if record.status != "done" or record.test_mae is None or record.n_train is None:
        return None
    spec = record.spec
    if spec.get("data") or spec.get("warm_start"):
        return None
    hyper = spec.get("hyperparams") or {}
    return CurveProtocol(
        str(record.target), int(record.n_val or 0), int(record.n_test or 0), hyper.get("epochs"), hyper.get("patience")
    )


def store_protocols(records: list[RunRecord]) -> list[tuple[CurveProtocol, int]]:
    """The protocols of this server's finished runs with their run counts, the most runs first."""
    counts: dict[CurveProtocol, int] = {}
    for record in records:
        protocol = curve_protocol(record)
        if protocol is not None:
            counts[protocol] = counts.get(protocol, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0].label(0)))


def store_view(records: list[RunRecord], protocol: CurveProtocol) -> CurveView:
    """This server's runs of ``protocol``, grouped by (pretrained, freeze, strategy, n_train) over split seeds."""
    from cgcnn.experiments.sweep import runs_frame

    chosen = [r for r in records if curve_protocol(r) == protocol]
    points = curve_points(runs_frame(chosen)) if chosen else curve_points(pd.DataFrame())
    return CurveView(points, None, protocol.target, "this server's runs (every test crystal, as stored)")


def points_table(points: pd.DataFrame) -> pd.DataFrame:
    """The points as a narrow table: recipe, size, splits, mean test MAE and its 95% band (3 significant digits)."""
    if points.empty:
        return pd.DataFrame(columns=["recipe", "n_train", "splits", "runs", "test MAE", "95% band", "band over"])
    frame = points.sort_values(["kind", "recipe", "n_train"])
    return pd.DataFrame(
        {
            "recipe": frame["recipe"],
            "n_train": frame["n_train"].astype(int),
            "splits": frame["n_splits"].astype(int),
            "runs": frame["n_runs"].astype(int),
            "test MAE": frame["mae_mean"].map(lambda v: f"{v:.3g}"),
            "95% band": [
                "" if over == "none" else f"{lo:.3g} to {hi:.3g}"
                for lo, hi, over in zip(frame["mae_low"], frame["mae_high"], frame["band_over"], strict=True)
            ],
            "band over": frame["band_over"],
        }
    ).reset_index(drop=True)


def crossover_display(crossover: pd.DataFrame) -> pd.DataFrame:
    """crossover.csv as a narrow table: recipe, crossover size, its 95% interval, the note."""
    from cgcnn.experiments.learning_curve import recipe_label

    def size(value: float) -> str:
        return "" if pd.isna(value) else f"{value:,.0f}"

    return pd.DataFrame(
        {
            "recipe": [
                recipe_label(str(p), int(f), str(s))
                for p, f, s in zip(crossover["pretrained"], crossover["freeze"], crossover["strategy"], strict=True)
            ],
            "crossover n": crossover["crossover_n"].map(size),
            "95% interval": [
                "" if pd.isna(lo) else f"{size(lo)} to {size(hi)}"
                for lo, hi in zip(crossover["ci_low"], crossover["ci_high"], strict=True)
            ],
            "note": crossover["note"].fillna(""),
        }
    )
