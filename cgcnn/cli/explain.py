"""CLI command ``explain``: which atoms and edges move a model's prediction for one crystal."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXPLAIN_HELP = """\
Attribute one crystal's prediction to its atoms and edges: occlusion (remove an edge's message, or every
message an atom sends, in every convolution, and predict again: prediction minus that) and gradient x input.
For attention models, also the Spearman correlation between each edge's attention weight and its occlusion:
attention says how an atom mixes its neighbours, not how much an edge moves the prediction.
--occlusion says what removing an edge means: delete (default; the edge is gone and attention renormalises
over the remaining neighbours) or zero (its message x 0 after the softmax). --remove-top N --ranking NAME
predicts without the N top edges of a ranking (attention_mean, attention_layer2, gradient_input,
occlusion_delete, ...; see `faithfulness`) and without N random real edges (mean of 10 random draws).
"""


def _cmd_explain(args: argparse.Namespace) -> int:
    from cgcnn.analysis.attribution import explain_report
    from cgcnn.cli.options import isolated_reader
    from cgcnn.nn.predictor import tie_note
    from cgcnn.settings import atom_limit
    from cgcnn.zoo import load_model

    predictor = load_model(args.model)
    structure = isolated_reader(atom_limit(args.max_atoms))(Path(args.cif))
    tie = tie_note(structure, predictor.graph_params) or None
    if tie:
        print(f"warning: {Path(args.cif).name}: {tie}", file=sys.stderr)
    if args.remove_top is not None or args.ranking is not None:
        return _remove_top(args, predictor, structure)
    report = explain_report(predictor, structure, top=args.top, occlusion=args.occlusion)
    report["tie"] = tie
    if args.json:
        print(json.dumps(report, separators=(",", ":")))
        return 0
    print(f"prediction {report['prediction']:.4f} {report['units']} (occlusion: {report['occlusion']})")
    print(f"{'atom':>8} {'occlusion':>11} {'grad x in':>11}")
    for atom in report["atoms"]:
        label = f"{atom['element']}{atom['index']}"
        print(f"{label:>8} {atom['occlusion']:>11.5f} {atom['gradient_x_input']:>11.5f}")
    print(f"top {len(report['top_edges'])} edges by |occlusion|:")
    print(f"{'from':>8} {'to':>8} {'d (Å)':>7} {'occlusion':>11} {'grad x in':>11} {'attention':>10}")
    for e in report["top_edges"]:
        att = "" if e["attention"] is None else f"{e['attention']:.4f}"
        print(
            f"{e['from']:>8} {e['to']:>8} {e['distance']:>7.3f} {e['occlusion']:>11.5f} "
            f"{e['gradient_x_input']:>11.5f} {att:>10}"
        )
    rho = report["attention_vs_occlusion_spearman"]
    if rho is not None:
        print(f"attention vs |occlusion| over real edges: Spearman {rho:.3f}")
    return 0


def _remove_top(args: argparse.Namespace, predictor, structure) -> int:
    """``explain --remove-top N --ranking NAME``: the prediction without a ranking's top edges vs random ones."""
    import sys

    from cgcnn.analysis.faithfulness import remove_top
    from cgcnn.errors import CGCNNError

    if args.remove_top is None or args.ranking is None:
        raise CGCNNError("--remove-top N and --ranking NAME go together")
    report = remove_top(predictor, predictor.graph(structure), args.remove_top, args.ranking, args.occlusion)
    if report["note"]:
        print(f"note: {report['note']}", file=sys.stderr)
    report["units"] = predictor.card.units
    if args.json:
        print(json.dumps(report, separators=(",", ":")))
        return 0
    n, units = report["removed"], report["units"]
    print(f"prediction                              {report['prediction']:.4f} {units}")
    print(f"without the top {n} edges by {args.ranking:14} {report['prediction_without_top']:.4f} {units}")
    print(f"without {n} random real edges (mean of 10) {report['prediction_without_random']:.4f} {units}")
    return 0


def add_explain_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``explain``."""
    p = sub.add_parser("explain", help="attribute a prediction to atoms and edges", description=EXPLAIN_HELP)
    p.add_argument("--model", required=True, help="zoo name, checkpoint path or run:ID")
    p.add_argument("--top", type=int, default=10, help="edges to list (default 10)")
    p.add_argument("--max-atoms", type=int, help="refuse crystals with more atoms (default: CGCNN_MAX_ATOMS)")
    p.add_argument(
        "--occlusion", choices=("delete", "zero"), default="delete", help="how an edge is removed (default delete)"
    )
    p.add_argument("--remove-top", type=int, metavar="N", help="predict without the N top edges of --ranking")
    p.add_argument("--ranking", metavar="NAME", help="the ranking of --remove-top (attention_mean, gradient_input...)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("cif", help="a crystal file (CIF, POSCAR or pymatgen JSON)")
    p.set_defaults(func=_cmd_explain)
