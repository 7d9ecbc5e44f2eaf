"""Measure the intervals and the distance of a shipped ensemble on its own test block (docs/results/uncertainty/).

Usage (from the repository root, after ``pretrained/train_zoo.sh ensemble``)::

    python docs/results/uncertainty/measure.py --ensemble own-formation-energy-ensemble \
        --single own-formation-energy-matched --out docs/results/uncertainty

Four ways to put an interval on the same test block: one model (plain split conformal on its validation
errors), the raw ensemble (mean ± z·std, as if the seed spread were a Gaussian error bar), the ensemble with its
std scaled by one factor fitted on the validation block (variance scaling, for comparison), and the calibrated
ensemble (normalised split conformal, what ``predict`` and ``evaluate`` use). Writes ``results.json`` and
``results.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from cgcnn.analysis.evaluation import evaluate_model
from cgcnn.analysis.metrics import interval_metrics, json_safe
from cgcnn.training.calibrate import own_blocks, own_test_dataset
from cgcnn.zoo import load_model, load_model_or_ensemble, pretrained_dir

Z = {0.68: 0.9945578832, 0.90: 1.6448536270, 0.95: 1.9599639845}  # two-sided Gaussian quantiles
ROWS = ("coverage_68", "coverage_90", "coverage_95", "interval_width_90", "interval_width_90_std",
        "error_auroc_std", "error_auroc_distance", "far_fraction", "mae_near", "mae_far")  # fmt: skip


def gaussian(y_pred: np.ndarray, std: np.ndarray, scale: float = 1.0) -> dict:
    """The intervals mean ± z·scale·std at each confidence (a Gaussian reading of the spread)."""
    return {c: (y_pred - z * scale * std, y_pred + z * scale * std) for c, z in Z.items()}


def main() -> None:
    """Measure and write results.json and results.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ensemble", required=True)
    parser.add_argument("--single", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    started = time.time()
    data = own_test_dataset(args.ensemble)
    ensemble = load_model_or_ensemble(args.ensemble)
    single = evaluate_model(load_model(args.single), data)
    calibrated = evaluate_model(ensemble, data)
    y, pred, std, distance = calibrated.y_true, calibrated.y_pred, calibrated.std, calibrated.distance
    # variance scaling: one factor s with mean((error / (s std))^2) = 1 on the validation block
    card = json.loads((pretrained_dir() / f"{args.single}.json").read_text())
    _, val, _ = own_blocks(card["details"], ensemble.targets[0])
    val_mean, val_std, _ = ensemble.predict_spread(val.graphs)
    scale = float(np.sqrt(np.mean(((val_mean[:, 0] - val.labels) / np.maximum(val_std[:, 0], 1e-12)) ** 2)))
    results = {
        "n_test": len(y),
        "members": ensemble.names,
        "variance_scale": scale,
        "one model (plain split conformal)": {k: single.metrics[k] for k in ROWS},
        "ensemble, mean ± z·std (raw seed spread)": interval_metrics(y, pred, gaussian(pred, std), distance, std),
        "ensemble, variance-scaled std": interval_metrics(y, pred, gaussian(pred, std, scale), distance, std),
        "ensemble, calibrated (normalised split conformal)": {k: calibrated.metrics[k] for k in ROWS},
        "mae": {"one model": single.metrics["mae"], "ensemble": calibrated.metrics["mae"]},
        "seconds": round(time.time() - started, 1),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(json_safe(results), indent=2) + "\n")
    lines = ["| method | " + " | ".join(ROWS) + " |", "|---" * (len(ROWS) + 1) + "|"]
    for name, row in results.items():
        if isinstance(row, dict) and "coverage_90" in row:
            cells = [("—" if row[k] is None or not np.isfinite(row[k]) else f"{row[k]:.3f}") for k in ROWS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"variance scale {scale:.3f}; MAE one model {results['mae']['one model']:.4f}, ensemble "
          f"{results['mae']['ensemble']:.4f}; {results['seconds']} s")  # fmt: skip


if __name__ == "__main__":
    main()
