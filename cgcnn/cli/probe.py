"""CLI commands for linear probes and feature export: ``probe`` and ``features``."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from cgcnn.cli import options
from cgcnn.errors import CGCNNError

PROBE_HELP = """\
Linear probe: how well each depth of a pretrained model predicts a target with no fine-tune at all. The frozen
per-crystal features of every depth (embedding, after each convolution, the pooled hidden feature the head
reads; atom features averaged over the crystal) feed a ridge regression whose penalty is chosen by 5-fold
cross-validated MAE on the training crystals; the MAE is measured on the canonical test crystals of
--split-seed, the same ones a fine-tune is tested on. The mean-baseline predicts the training mean.
"""

FEATURES_HELP = """\
Export per-crystal feature vectors of one depth of a model: the first --n crystals having --target in the
canonical order of --split-seed (the test block comes first), or the ids listed in --ids-from (one id per
line; a CSV whose first column is the id works too). Writes CSV (id,f0..fk) or NPY (with FILE.ids.txt beside
it, one id per line, in row order). Crystals the featuriser refuses are reported on stderr and left out.
"""


def _cmd_probe(args: argparse.Namespace) -> int:
    from cgcnn.analysis.probe import linear_probe
    from cgcnn.training.finetune import load_data, resolve_target

    dataset = load_data(args.data)
    result = linear_probe(
        args.model,
        target=resolve_target(dataset, args.target),
        n_train=args.train,
        n_test=args.test,
        split_seed=args.split_seed,
        depths=args.depths,
        dataset=dataset,
    )
    for crystal_id, reason in result.skipped:
        print(f"skipped: {crystal_id}: {reason}", file=sys.stderr)
    if args.json:
        print(
            json.dumps(
                {
                    "model": result.model,
                    "target": result.target,
                    "n_train": result.n_train,
                    "n_test": result.n_test,
                    "split_seed": result.split_seed,
                    "split_hash": result.split_hash,
                    "baseline_mae": result.baseline_mae,
                    "seconds": result.seconds,
                    "skipped": len(result.skipped),
                    "depths": [
                        {"depth": d.depth, "dim": d.dim, "alpha": d.alpha, "cv_mae": d.cv_mae, "test_mae": d.test_mae}
                        for d in result.depths
                    ],
                }
            )
        )
        return 0
    print(
        f"linear probe of {result.model} on {result.target}: {result.n_train} train / {result.n_test} test "
        f"crystals, split seed {result.split_seed}"
    )
    print(f"{'depth':10} {'dim':>4} {'alpha':>9} {'CV MAE':>9} {'test MAE':>9}")
    for d in result.depths:
        print(f"{d.depth:10} {d.dim:>4} {d.alpha:>9.3g} {d.cv_mae:>9.4f} {d.test_mae:>9.4f}")
    print(f"{'mean-baseline':25} {'':>9} {result.baseline_mae:>9.4f}")
    print(f"({result.seconds:.1f} s)")
    return 0


def read_ids(path: Path) -> list[str]:
    """Crystal ids from a file: one per line, or the first column of a CSV (a header ``id`` is skipped).

    Raises:
        CGCNNError: the file cannot be read or lists no id.
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise CGCNNError(f"{path}: cannot read the id list ({exc.strerror or exc})") from None
    ids = []
    for row in csv.reader(text.splitlines()):
        value = row[0].strip() if row else ""
        if value and not value.startswith("#"):
            ids.append(value)
    if ids and ids[0].lower() in ("id", "material_id", "mp_id"):
        ids = ids[1:]
    if not ids:
        raise CGCNNError(f"{path}: no crystal ids in the file")
    return list(dict.fromkeys(ids))


def _cmd_features(args: argparse.Namespace) -> int:
    import numpy as np

    from cgcnn.analysis.probe import crystal_features, select_ids
    from cgcnn.training.finetune import load_data, resolve_target

    out = Path(args.out)
    if out.suffix.lower() not in (".csv", ".npy"):
        raise CGCNNError(f"{out}: --out must end in .csv or .npy")
    dataset = load_data(args.data)
    if args.ids_from:
        ids = read_ids(Path(args.ids_from))
    else:
        ids = select_ids(dataset, resolve_target(dataset, args.target), args.n, args.split_seed)
    kept, features, skipped = crystal_features(args.model, args.depth, ids, dataset)
    for crystal_id, reason in skipped:
        print(f"skipped: {crystal_id}: {reason}", file=sys.stderr)
    try:
        if out.suffix.lower() == ".npy":
            np.save(out, features)
            ids_path = out.with_suffix(".ids.txt")
            ids_path.write_text("".join(f"{i}\n" for i in kept))
            where = f"{out} (ids in {ids_path})"
        else:
            with open(out, "w", newline="") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow(["id", *(f"f{k}" for k in range(features.shape[1]))])
                for crystal_id, row in zip(kept, features, strict=True):
                    writer.writerow([crystal_id, *(repr(float(v)) for v in row)])
            where = str(out)
    except OSError as exc:
        raise CGCNNError(f"{out}: cannot write ({exc.strerror or exc})") from None
    print(f"{features.shape[0]} crystals x {features.shape[1]} features ({args.depth}) written to {where}")
    return 0


def add_probe_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``probe`` and ``features``."""
    p = sub.add_parser(
        "probe",
        help="linear probe of every depth of a model (ridge on frozen features; no fine-tune)",
        description=PROBE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    options.add_model(p)
    options.add_target(p, "label to probe")
    options.add_sizes(p, ("train", "test"))
    options.add_split_seed(p)
    p.add_argument("--depths", nargs="+", help="only these depths (default: all, embedding ... pooled)")
    options.add_data(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_probe)

    p = sub.add_parser(
        "features",
        help="export per-crystal feature vectors of one depth (CSV or NPY)",
        description=FEATURES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    options.add_model(p)
    p.add_argument("--depth", required=True, help="embedding, conv1 ... convN, or pooled")
    options.add_target(p, "choose crystals having this label")
    options.add_split_seed(p, "canonical order to take them from (default 0)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--n", type=int, default=1000, help="how many crystals (default 1000)")
    which.add_argument("--ids-from", help="file of crystal ids instead (one per line, or a CSV's first column)")
    options.add_data(p)
    p.add_argument("--out", required=True, help="FILE.csv or FILE.npy")
    p.set_defaults(func=_cmd_features)
