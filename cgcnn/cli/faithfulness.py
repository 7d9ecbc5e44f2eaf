"""CLI command ``faithfulness``: do a model's edge rankings pick the edges that move its predictions?"""

from __future__ import annotations

import argparse
import json
import sys

FAITHFULNESS_HELP = """\
Score edge rankings (attention per layer and head, gates, gradient x input, integrated gradients, occlusion by
deleting or zeroing one edge, random) by deletion and insertion curves on a model's test crystals: remove the
top fraction f = 0, 0.05, ..., 1 of each crystal's real edges in every convolution and measure
|p(x) - p(x without top f)| / |p(x) - p(x without all)|. Prints, per method, the deletion AUC (higher: the
ranking's first edges move the prediction more) with a bootstrap 95% CI over crystals, the insertion AUC,
fidelity+ and fidelity-. Test crystals: an own model's card test ids; a run's test block; the originals the
band-gap test block of --split-seed (which they trained on). See docs/analysis.md.
"""

#: Models that predict without any graph: nothing to remove.
BASELINES = ("mean", "composition")


def _cmd_faithfulness(args: argparse.Namespace) -> int:
    from cgcnn.analysis.faithfulness import curves_png, mean_deletion_curves, measure_faithfulness, test_crystal_ids
    from cgcnn.data.graph_cache import get_graphs
    from cgcnn.errors import CGCNNError
    from cgcnn.training.finetune import load_data
    from cgcnn.zoo import load_model

    if args.model in BASELINES or args.model.split(":")[-1] in BASELINES:
        raise CGCNNError(f"{args.model} is a baseline without a crystal graph: no edges to remove")
    if args.n < 1:
        raise CGCNNError(f"--n must be 1 or more, got {args.n}")
    predictor = load_model(args.model)
    if not getattr(getattr(predictor, "model", None), "convs", None):
        raise CGCNNError(f"{args.model} has no graph convolutions: no edges to remove")
    spec = predictor.card.details.get("spec") if predictor.card.kind == "run" else None
    dataset = load_data(args.data or (spec.get("data") if isinstance(spec, dict) else None))
    if args.data:
        ids = sorted(str(i) for i in dataset.ids)
        origin = f"the crystals of {args.data}"
    else:
        ids, origin = test_crystal_ids(predictor.card, dataset, args.split_seed)
    if args.n > len(ids):
        note = f"note: --n {args.n} is more than the {len(ids)} crystals there are ({origin}): using all"
        print(note, file=sys.stderr)
    ids = ids[: args.n]
    graphs, failures = get_graphs(dataset, ids, predictor.graph_params)
    for crystal_id, reason in failures:
        print(f"note: {crystal_id} skipped: {reason}", file=sys.stderr)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    result = measure_faithfulness(predictor, graphs, methods, args.occlusion)
    if failures:
        result.skipped["could not be featurised"] = len(failures)
    report = result.to_json()
    if args.out:
        title = f"{report['model']} (n = {report['n']}, {args.occlusion})"
        curves_png([(title, mean_deletion_curves(result))], args.out)
    if args.json:
        print(json.dumps(report, separators=(",", ":")))
        return 0
    print(f"{report['model']}: {report['n']} crystals of {origin}; {result.skipped_text()}; occlusion {args.occlusion}")
    print(f"{'method':32} {'deletion AUC':>12} {'95% CI':>17} {'insertion':>10} {'fid+':>7} {'fid-':>7}")
    for name, row in report["methods"].items():
        low, high = row["deletion_auc_ci"]
        print(
            f"{name:32} {row['deletion_auc']:12.3f} {f'[{low:.3f}, {high:.3f}]':>17} {row['insertion_auc']:10.3f} "
            f"{row['fidelity_plus']:7.3f} {row['fidelity_minus']:7.3f}"
        )
    if report["not_applicable"]:
        print("not applicable: " + ", ".join(report["not_applicable"]))
    return 0


def add_faithfulness_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``faithfulness``."""
    from cgcnn.nn.removal import REMOVAL_MODES

    p = sub.add_parser(
        "faithfulness",
        help="score edge rankings (attention, gradients, occlusion) by deletion and insertion curves",
        description=FAITHFULNESS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="zoo name, checkpoint path or run:ID")
    p.add_argument("--n", type=int, default=200, help="test crystals (default 200; capped at the test block)")
    p.add_argument("--split-seed", type=int, default=0, help="split of the originals' band-gap test block")
    p.add_argument(
        "--methods",
        help="comma-separated methods or prefixes (attention, gate, gradient_input, integrated_gradients, "
        "occlusion_delete, occlusion_zero, attention_layer2, ...; default all; random is always measured)",
    )
    p.add_argument(
        "--occlusion", choices=REMOVAL_MODES, default="delete", help="how edges are removed (default delete)"
    )
    p.add_argument("--data", help="a CGCNN folder or zip: its crystals instead of the model's test crystals")
    p.add_argument("--json", action="store_true", help="print one compact JSON object as the last line")
    p.add_argument("--out", help="write the mean deletion curves to this PNG file")
    p.set_defaults(func=_cmd_faithfulness)
