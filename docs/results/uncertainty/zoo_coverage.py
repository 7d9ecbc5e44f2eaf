"""Measure each calibrated own model's intervals on its own test block: ``zoo-coverage.json`` (the Model zoo page).

Usage (from the repository root, after ``python -m cgcnn calibrate NAME`` for each own model)::

    python docs/results/uncertainty/zoo_coverage.py --out docs/results/uncertainty

For every own model and shipped ensemble with a calibration file: ``evaluate --model NAME --test-block``'s
metrics (the same call), i.e. the test block of the model's card, which nothing in training or calibration
touched. Models without a calibration are listed under ``not_calibrated``; the originals have no test block of
ours that they did not train on and are left out. The wall time of each evaluation is recorded.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from cgcnn.analysis.evaluation import evaluate_model
from cgcnn.analysis.metrics import json_safe
from cgcnn.training.calibrate import own_test_dataset
from cgcnn.zoo import list_cards, load_model_or_ensemble

KEYS = ("n", "mae", "coverage_68", "coverage_90", "coverage_95", "interval_width_90", "interval_width_90_std",
        "far_fraction", "mae_near", "mae_far", "error_auroc_std", "error_auroc_distance")  # fmt: skip


def main() -> None:
    """Evaluate every calibrated own model on its test block and write ``zoo-coverage.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of zoo-coverage.json")
    parser.add_argument("--models", help="comma-separated names (default: every own model and ensemble)")
    args = parser.parse_args()
    cards = [c for c in list_cards() if c.kind in ("own", "ensemble")]
    if args.models:
        wanted = args.models.split(",")
        cards = [c for c in cards if c.name in wanted]
    path = args.out / "zoo-coverage.json"
    report = json.loads(path.read_text()) if path.exists() else {}
    report["what"] = (
        "evaluate --model NAME --test-block: calibrated intervals of the first target on the test block of the "
        "model's card (never used to train or calibrate)"
    )
    models = report.setdefault("models", {})
    report["not_calibrated"] = [c.name for c in cards if "half_width" not in (c.calibration or {})]
    args.out.mkdir(parents=True, exist_ok=True)
    for card in cards:
        if card.name in report["not_calibrated"]:
            continue
        model = load_model_or_ensemble(card.name)
        start = time.perf_counter()
        result = evaluate_model(model, own_test_dataset(card.name), target=model.targets[0])  # intervals: 1st target
        seconds = time.perf_counter() - start
        row = {key: result.metrics.get(key) for key in KEYS}
        row.update(target=result.target, calibration=card.calibration.get("method"), seconds=round(seconds, 1))
        models[card.name] = json_safe(row)
        print(card.name, json.dumps(models[card.name]), flush=True)
        path.write_text(json.dumps(report, indent=1) + "\n")  # after each model: a long run keeps what it measured


if __name__ == "__main__":
    main()
