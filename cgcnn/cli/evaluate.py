"""CLI command ``evaluate``: score a model (or a seed ensemble) on a labelled CGCNN folder or zip."""

from __future__ import annotations

import argparse
import json
import sys

EVALUATE_HELP = """\
Score a model on labelled crystals: a CGCNN folder (id_prop.csv + CIFs) or a zip of one. Labels must be in
the model's units (log10 GPa for the moduli; 0/1 for a classifier's positive class). Prints n, mae, rmse, r2,
spearman, bias (mean prediction - label), failures, mae_by_quintile (MAE in each fifth of the crystals
sorted by label) and mae_clamped (negative predictions set to 0); a classifier gets accuracy and roc_auc. With
several models (--model run:A,run:B,...) the ensemble mean is scored and the ensemble's spread is checked:
spearman_abs_error_std and a calibration table. A calibrated model (an own model or a shipped ensemble, see
`calibrate`) adds coverage_68/90/95 (fraction of labels inside its conformal intervals), interval_width_90,
far_fraction (distance > 1 from the training data), mae_near, mae_far, error_auroc_std and error_auroc_distance
(how well the spread and the distance find the 10% largest errors); null where not applicable. Bad files are
named on stderr and skipped; exit code 1 if any failed (as predict).
"""


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from cgcnn.analysis.evaluation import evaluate_model, parity_png, target_units
    from cgcnn.analysis.metrics import json_safe
    from cgcnn.errors import CGCNNError
    from cgcnn.nn.predictor import Ensemble
    from cgcnn.settings import atom_limit
    from cgcnn.training.finetune import load_data
    from cgcnn.zoo import load_model_or_ensemble

    if bool(args.data) == bool(args.test_block):
        raise CGCNNError("give --data FOLDER or --test-block (the model's own test block), not both or neither")
    model = load_model_or_ensemble(args.model, baseline_ok=True)  # a baseline run is scored like a network
    if args.test_block:
        from cgcnn.training.calibrate import own_test_dataset

        dataset = own_test_dataset(args.model)
    else:
        dataset = load_data(args.data)
    max_atoms = atom_limit(args.max_atoms)
    result = evaluate_model(model, dataset, target=args.target, clamp=args.clamp, max_atoms=max_atoms)
    for crystal_id, reason in result.failures:
        print(f"error: {crystal_id}: {reason}", file=sys.stderr)
    if result.note:
        print(f"note: {result.note}", file=sys.stderr)
    if args.out:
        parity_png(result, args.out, units=target_units(model, result.target))
    metrics = {"target": result.target, "label": result.label_column, **result.metrics}
    if isinstance(model, Ensemble):
        metrics["members"] = model.names
    if args.json:
        print(json.dumps(json_safe(metrics), separators=(",", ":"), allow_nan=False))
    else:
        for key, value in metrics.items():
            if key == "calibration":
                print("calibration (crystals binned by ensemble std):")
                print(f"  {'n':>5} {'std':>9} {'rmse':>9} {'mae':>9} {'within 1 std':>13}")
                for row in value:
                    print(
                        f"  {row['n']:>5} {row['std']:9.4g} {row['rmse']:9.4g} {row['mae']:9.4g} "
                        f"{row['within_1std']:13.2f}"
                    )
            elif isinstance(value, list):
                print(f"{key:24} " + " ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value))
            elif isinstance(value, float):
                print(f"{key:24} {value:.6g}")
            else:
                print(f"{key:24} {value}")
    if result.failures:
        print(f"{len(result.failures)} crystal(s) failed", file=sys.stderr)
    return 1 if result.failures else 0


def add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``evaluate``."""
    p = sub.add_parser(
        "evaluate",
        help="score a model (or ensemble) on a labelled CGCNN folder or zip",
        description=EVALUATE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="zoo name, checkpoint path or run:ID; several joined by commas")
    p.add_argument("--data", help="CGCNN folder (id_prop.csv + CIFs) or a zip of one")
    p.add_argument(
        "--test-block",
        action="store_true",
        help="instead of --data: the test block of an own model, shipped ensemble (default dataset) or run:ID",
    )
    p.add_argument("--target", help="the output to score (required for a multi-output model)")
    p.add_argument("--json", action="store_true", help="print one compact JSON object as the last line")
    p.add_argument("--out", help="write a parity plot to this PNG file")
    p.add_argument("--clamp", action="store_true", help="set negative predictions of non-negative targets to 0")
    p.add_argument(
        "--max-atoms",
        type=int,
        help="refuse crystals with more atoms than this (default: CGCNN_MAX_ATOMS, 20,000), as predict",
    )
    p.set_defaults(func=_cmd_evaluate)
