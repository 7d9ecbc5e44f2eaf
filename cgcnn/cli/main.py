"""Command-line interface: ``python -m cgcnn <command>``; everything the app does, the CLI does too.

Each command is a small function taking the parsed arguments and returning an exit code. Errors a user can
cause are :class:`~cgcnn.errors.CGCNNError` and print one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import warnings
from pathlib import Path

from cgcnn import __version__
from cgcnn.cli.data import add_data_parser
from cgcnn.cli.evaluate import add_evaluate_parser
from cgcnn.cli.explain import add_explain_parser
from cgcnn.cli.faithfulness import add_faithfulness_parser
from cgcnn.cli.lesson import add_lesson_parser
from cgcnn.cli.names import add_names_parser
from cgcnn.cli.options import isolated_reader
from cgcnn.cli.pretrain import add_pretrain_parsers
from cgcnn.cli.probe import add_probe_parsers
from cgcnn.cli.sweep import add_experiment_parsers
from cgcnn.cli.train import add_train_parsers
from cgcnn.errors import CGCNNError
from cgcnn.settings import atom_limit


def _cmd_models(args: argparse.Namespace) -> int:
    from cgcnn.zoo import list_cards

    cards = list_cards()
    if args.json:
        print(json.dumps([card.to_dict() for card in cards], indent=2))
        return 0
    print(f"{'name':32} {'kind':9} {'units':22} {'train':>6} {'mae':>8}  property")
    for c in cards:
        mae = f"{c.mae:.3f}" if c.mae is not None else "-"
        print(f"{c.name:32} {c.kind:9} {c.units:22} {c.train_size or '-':>6} {mae:>8}  {c.property}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from cgcnn.nn.predictor import Ensemble, crystal_files, predict_files, uncertainty_note
    from cgcnn.zoo import load_model_or_ensemble

    max_atoms = atom_limit(args.max_atoms)
    predictor = load_model_or_ensemble(args.model)
    files = crystal_files(args.paths)
    if not files:
        raise CGCNNError("no crystal files found (a folder is searched for *.cif directly inside it)")
    results = predict_files(
        predictor,
        files,
        widen_radius=args.widen_radius,
        max_atoms=max_atoms,
        read=isolated_reader(max_atoms),
        clamp=args.clamp,
    )
    note = uncertainty_note(predictor)
    if note:
        print(f"note: {note}", file=sys.stderr)
    targets = predictor.targets
    ensemble = isinstance(predictor, Ensemble)
    header = ["id", "prediction"]
    if len(targets) > 1:
        header += [f"prediction_{t}" for t in targets]
    if ensemble:  # spread and members of the first target
        header += ["std", *[f"member_{name}" for name in predictor.names]]
    header += ["lower_90", "upper_90", "distance", "far", "formula"]
    out = open(args.out, "w", newline="") if args.out else sys.stdout  # noqa: SIM115
    try:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        for r in results:
            if r.note:
                print(f"note: {r.note}", file=sys.stderr)
            if r.error:
                print(f"error: {r.error}", file=sys.stderr)
                continue
            if r.tie:
                print(f"warning: {r.name}: {r.tie}", file=sys.stderr)
            values = [repr(float(v)) for v in r.values]
            extra = values if len(targets) > 1 else []
            if ensemble:
                extra = [*extra, repr(float(r.std[0])), *[repr(float(v)) for v in r.members[:, 0]]]
            bounds = [repr(v) for v in r.interval] if r.interval is not None else ["", ""]
            distance = [repr(r.distance), str(int(r.far))] if r.distance is not None else ["", ""]
            writer.writerow([Path(r.name).stem, values[0], *extra, *bounds, *distance, r.formula])
    finally:
        if args.out:
            out.close()
    failed = sum(1 for r in results if r.error)
    if failed:
        print(f"{failed} of {len(results)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from cgcnn.training.calibrate import calibrate_own, write_ensemble

    if args.ensemble:
        members = [m.strip() for m in args.ensemble.split(",") if m.strip()]
        path = write_ensemble(args.name, members, notes=args.notes or "")
    else:
        path = calibrate_own(args.name)
    print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(prog="python -m cgcnn", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"cgcnn {__version__}")
    parser.add_argument("--home", help="folder of the run store and graph cache (default: $CGCNN_HOME)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list the model zoo (original checkpoints and this project's own)")
    p.add_argument("--json", action="store_true", help="print a JSON list of model cards")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser(
        "predict",
        help="predict crystals with a model",
        description="Predict CIF files; writes CSV 'id,prediction[,prediction_<target>...][,std,member_<name>...],"
        "lower_90,upper_90,distance,far,formula'. Predictions are in the model's units (log10 GPa for the "
        "moduli; probability of the positive class for a classifier). lower_90/upper_90: the calibrated 90% "
        "interval of the first target; distance: from the training crystals (far = 1 when above 1, as for 5% of "
        "crystals like them); empty for a model without a calibration (the originals). A bad file is reported "
        "on stderr and skipped; exit code 1 if any failed.",
    )
    p.add_argument(
        "--model",
        required=True,
        help="zoo name, checkpoint path or run:ID (see `models`); several joined by commas form an ensemble "
        "(columns std and member_<name> added)",
    )
    p.add_argument("--out", help="CSV file to write (default: stdout)")
    p.add_argument("--clamp", action="store_true", help="set negative predictions of non-negative targets to 0")
    p.add_argument(
        "--widen-radius",
        action="store_true",
        help="if an atom has no neighbour within the cutoff, search further instead of refusing the crystal",
    )
    p.add_argument(
        "--max-atoms",
        type=int,
        help="refuse crystals with more atoms than this (default: CGCNN_MAX_ATOMS, 20,000)",
    )
    p.add_argument("paths", nargs="+", help="CIF files or folders of CIF files")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "calibrate",
        help="calibrate an own model (or write and calibrate a shipped ensemble) on its validation block",
        description="Write NAME.calibration.npz beside an own model: split-conformal scores of its validation "
        "block and its applicability domain (training crystals' pooled features). With --ensemble M1,M2,...: "
        "write the manifest NAME.json of an ensemble of those own models (same split) and its calibration "
        "normalised by the ensemble's std. The file records each checkpoint's sha256: retrain a model and its "
        "intervals stay empty until it is calibrated again.",
    )
    p.add_argument("name", help="own model (pretrained/NAME.pt) or, with --ensemble, the ensemble's name")
    p.add_argument("--ensemble", help="comma-separated own models: write NAME.json as their ensemble")
    p.add_argument("--notes", help="the ensemble card's notes")
    p.set_defaults(func=_cmd_calibrate)

    add_evaluate_parser(sub)
    add_explain_parser(sub)
    add_faithfulness_parser(sub)
    add_data_parser(sub)
    add_train_parsers(sub)
    add_pretrain_parsers(sub)
    add_probe_parsers(sub)
    add_experiment_parsers(sub)
    add_names_parser(sub)
    add_lesson_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit code (2 for a user error)."""
    args = build_parser().parse_args(argv)
    if args.home:
        os.environ["CGCNN_HOME"] = args.home
    warnings.filterwarnings("ignore", module="pymatgen")
    try:
        return args.func(args)
    except CGCNNError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 1
