"""Time of the faithfulness measurement per model, as a ratio to predicting the same crystals; and the results.

For one model: the wall time of ``measure_faithfulness`` (every method's deletion and insertion curves, the
random floor, integrated gradients) on its first ``n`` test crystals, per crystal and as a multiple of one plain
prediction of the same crystals one by one (measured in the same run). With ``--save DIR`` the report JSON, the
mean deletion curves and the timing are written to ``DIR/<model>.json`` (how ``docs/results/faithfulness/``
was made); ``--figure DIR`` draws ``DIR/faithfulness.png`` from the saved files.
Usage: python bench/faithfulness.py --model own-attention --n 200 [--save DIR] [--threads 1]
       python bench/faithfulness.py --figure DIR
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if not __package__:  # run as `python bench/NAME.py`: import from the repository root, as `python -m bench.NAME` does
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from bench.common import timed  # noqa: F401  (silences warnings)
from cgcnn.analysis.faithfulness import curves_png, mean_deletion_curves, measure_faithfulness, test_crystal_ids
from cgcnn.data.datasets import load_default_dataset
from cgcnn.data.graph_cache import get_graphs
from cgcnn.zoo import load_model


def measure(model: str, n: int, save: Path | None) -> dict:
    predictor = load_model(model)
    dataset = load_default_dataset()
    ids, origin = test_crystal_ids(predictor.card, dataset)
    graphs, _ = get_graphs(dataset, ids[:n], predictor.graph_params)
    predictor.model.eval()
    started = time.perf_counter()
    for graph in graphs.values():
        predictor.predict_graphs([graph])
    predict_seconds = time.perf_counter() - started
    started = time.perf_counter()
    result = measure_faithfulness(predictor, graphs)
    seconds = time.perf_counter() - started
    report = result.to_json()
    timing = {
        "crystals": len(graphs),
        "seconds": round(seconds, 1),
        "seconds_per_crystal": round(seconds / len(graphs), 2),
        "ratio_to_one_prediction_per_crystal": round(seconds / predict_seconds, 1),
        "torch_threads": torch.get_num_threads(),
    }
    print(
        f"{model}: {len(graphs)} crystals of {origin}, {seconds:.1f} s ({timing['seconds_per_crystal']} s per "
        f"crystal, {timing['ratio_to_one_prediction_per_crystal']}x predicting them), {len(result.methods)} methods"
    )
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        saved = {**report, "test_crystals": origin, "mean_deletion_curves": mean_deletion_curves(result)}
        saved["timing"] = timing
        (save / f"{model}.json").write_text(json.dumps(saved, indent=1) + "\n")
    return timing


def figure(folder: Path) -> Path:
    reports = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    order = sorted(reports, key=lambda r: (not r["model"].startswith("own-attention"), r["model"]))
    panels = [(f"{r['model']} (n = {r['n']})", r["mean_deletion_curves"]) for r in order]
    out = folder / "faithfulness.png"
    curves_png(panels, out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--save", type=Path)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--figure", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.figure:
        print(figure(args.figure))
        return
    if not args.model:
        parser.error("--model is required (or --figure DIR)")
    measure(args.model, args.n, args.save)


if __name__ == "__main__":
    main()
