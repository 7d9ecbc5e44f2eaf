"""Collect the finished runs of the pre-registered learning-curve grid from a run store into this folder.

Usage: ``CGCNN_HOME=... python docs/results/learning_curves/collect.py`` then
``python -m cgcnn sweep-summary docs/results/learning_curves --scoring primary --sensitivity``.
A run belongs to the grid when its spec is the protocol of docs/learning-curves.md: band gap, validation and test
blocks of 1,000, model seed 0, 100 epochs with patience 15 (baselines: no epochs), one torch thread.
"""

from __future__ import annotations

from pathlib import Path

from cgcnn.experiments.results_folder import write_predictions
from cgcnn.experiments.sweep import runs_frame
from cgcnn.runs.store import RunStore

HERE = Path(__file__).parent


def in_grid(record) -> bool:
    """Whether a stored run follows the grid's protocol (see the module docstring)."""
    hyper = record.spec.get("hyperparams", {})
    return (
        record.status == "done"
        and record.target == "band_gap"
        and record.spec.get("n_val") == 1000
        and record.spec.get("n_test") == 1000
        and record.seed == 0
        # a baseline's spec carries no training settings (it trains no epochs)
        and (record.pretrained in ("mean", "composition") or (hyper.get("epochs"), hyper.get("patience")) == (100, 15))
    )


def main() -> None:
    """Write runs.csv and predictions.csv.gz of the grid's finished runs."""
    store = RunStore()
    records = [r for r in store.list_runs() if in_grid(r)]
    frame = runs_frame(records).sort_values(["pretrained", "freeze", "n_train", "split_seed"])
    frame.to_csv(HERE / "runs.csv", index=False)
    rows = write_predictions(store, frame["run_id"].tolist(), HERE / "predictions.csv.gz")
    print(f"{len(frame)} runs, {rows} prediction rows")


if __name__ == "__main__":
    main()
