"""Time of the faithfulness measurement per model, as a ratio to predicting the same crystals; and the results.

For one model: the wall time of ``measure_faithfulness`` (every method's deletion and insertion curves, the
random floor, integrated gradients) on its first ``n`` test crystals, per crystal and as a multiple of one plain
prediction of the same crystals one by one (measured in the same run). With ``--save DIR`` the report JSON, the
mean deletion curves and the timing are written to ``DIR/<model>.json`` (how ``docs/results/faithfulness/``
was made); ``--figure DIR`` draws ``DIR/faithfulness.png`` from the saved files.
Usage: python bench/faithfulness.py --model own-attention --n 200 [--save DIR] [--threads 1]
       python bench/faithfulness.py --figure DIR   (or --table DIR: the README's markdown table)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if not __package__:  # run as `python bench/NAME.py`: import from the repository root, as `python -m bench.NAME` does
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from bench.common import timed  # noqa: F401  (silences warnings)
from cgcnn.analysis.faithfulness import (
    auc,
    bootstrap_ci,
    curves_png,
    mean_deletion_curves,
    measure_faithfulness,
    test_crystal_ids,
)
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
        saved["crystals"] = [c.crystal_id for c in result.curves]  # paired comparisons between methods
        saved["deletion_auc_per_crystal"] = {
            m: [round(auc(c.deletion[m]), 5) for c in result.curves] for m in result.methods
        }
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


def _paired(report: dict, a: str, b: str) -> str:
    """Mean per-crystal difference of deletion AUCs ``a - b`` with its bootstrap CI (saved per-crystal AUCs)."""
    per = report.get("deletion_auc_per_crystal")
    if not per or a not in per or b not in per:
        return "not saved"
    diff = np.array(per[a]) - np.array(per[b])
    low, high = bootstrap_ci(diff)
    return f"{diff.mean():+.3f} [{low:+.3f}, {high:+.3f}]"


def table(folder: Path) -> str:
    """A markdown table of the saved results: each model's floor, its rankings, and the best layer vs gradients."""
    rows = [
        "| model | n | random | attention/gate mean | best layer | gradient × input | integrated gradients | "
        "occlusion delete | occlusion zero | best layer − gradient × input (paired) | IG delta (median, max) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted(folder.glob("*.json")):
        r = json.loads(path.read_text())
        m = r["methods"]
        fam = "attention" if "attention_mean" in m else "gate"
        layers = [k for k in m if k.startswith(f"{fam}_layer") and "_head" not in k]
        best = max(layers, key=lambda k: m[k]["deletion_auc"])

        def cell(key: str, m: dict = m) -> str:
            low, high = m[key]["deletion_auc_ci"]
            return f"{m[key]['deletion_auc']:.3f} [{low:.2f}, {high:.2f}]"

        ig = m["integrated_gradients"]
        delta = f"{ig['convergence_delta_relative_median']:.1e}, {ig['convergence_delta_relative_max']:.2f}"
        rows.append(
            f"| {r['model']} | {r['n']} | {cell('random')} | {cell(f'{fam}_mean')} | {best.split('_')[1]}: "
            f"{cell(best)} | {cell('gradient_input')} | {cell('integrated_gradients')} | {cell('occlusion_delete')} "
            f"| {cell('occlusion_zero')} | {_paired(r, best, 'gradient_input')} | {delta} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--save", type=Path)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--figure", type=Path)
    parser.add_argument("--table", type=Path, help="print a markdown table of the results saved in this folder")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.figure:
        print(figure(args.figure))
        return
    if args.table:
        print(table(args.table))
        return
    if not args.model:
        parser.error("--model is required (or --figure DIR)")
    measure(args.model, args.n, args.save)


if __name__ == "__main__":
    main()
