"""``python -m cgcnn data ...``: build, describe and export the crystal datasets.

Sub-commands: ``build-default`` (the only command that downloads anything), ``info [--json]`` and
``export`` (a CGCNN data folder for the original code). Each handler takes the parsed arguments and returns
an exit code; user errors print one line on stderr and return 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cgcnn.errors import CGCNNError
from cgcnn.paths import project_path

_REPO_ASSETS = project_path("assets")


def _guard(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn the errors a user can cause into one line on stderr and exit code 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except BrokenPipeError:
            raise
        except (CGCNNError, ValueError, KeyError, OSError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            print(f"error: {message}", file=sys.stderr)
            return 2

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


def _load(args: argparse.Namespace) -> Any:
    """The dataset named by ``--dataset`` (an asset .npz, a CGCNN folder or a zip), else the default one."""
    from cgcnn.data.datasets import load_default_dataset, read_asset
    from cgcnn.training.finetune import load_data

    path = getattr(args, "dataset", None)
    drop_heavy = getattr(args, "drop_heavy", False)
    if path is None:
        return load_default_dataset(drop_heavy=drop_heavy)
    dataset = read_asset(Path(path)) if Path(path).suffix.lower() == ".npz" else load_data(path)
    return dataset.without_heavy() if drop_heavy else dataset


def summarize(dataset: Any) -> dict[str, Any]:
    """The ``data info`` record of a dataset (JSON-friendly)."""
    from cgcnn.data.splits import PROTOCOL_TARGET, canonical_blocks, protocol_split

    meta = dataset.metadata
    label_sources = {
        t: {str(k): int(v) for k, v in dataset.label_sources[t].value_counts().items()} for t in dataset.targets
    }
    blocks = {}
    for t in dataset.targets:
        b = canonical_blocks(dataset, t, 0)
        blocks[t] = {"test": len(b.test), "val": len(b.val), "train": len(b.train)}
    info: dict[str, Any] = {
        "name": dataset.name,
        "n_crystals": len(dataset),
        "labels": dataset.label_counts(),
        "n_rejected": len(dataset.rejected),
        "content_hash": dataset.content_hash,
        "label_sources": label_sources,
        "structure_sources": {str(k): int(v) for k, v in dataset.structure_sources.value_counts().items()},
        "sources": dataset.sources,
        "canonical_blocks_seed0": blocks,
    }
    if PROTOCOL_TARGET in dataset.targets:
        try:
            split = protocol_split(dataset, 0)
            info["protocol_split_seed0"] = {"sizes": list(split.sizes), "content_hash": split.content_hash}
        except ValueError as exc:
            info["protocol_split_seed0"] = {"unavailable": str(exc)}
    for key in ("mp_versions", "units", "precedence"):
        if key in meta:
            info[key] = meta[key]
    if "conflicts" in meta:
        info["conflicts"] = {t: c["n"] for t, c in meta["conflicts"].items()}
        info["structure_conflicts"] = meta["structure_conflicts"]["n"]
    if dataset.rejected:
        info["rejected"] = [list(r) for r in dataset.rejected[:20]]
    # structure-equivalent crystals found by `data build-default` (None: built before that check existed)
    info["duplicate_groups"] = meta.get("duplicate_groups")
    if "twins_of_test_block" in meta:  # test crystals (band gap, seed 0) with a twin in training or pretraining
        info["twins_of_test_block"] = meta["twins_of_test_block"]
    return info


@_guard
def cmd_info(args: argparse.Namespace) -> int:
    """Print counts, sources and hashes of a dataset."""
    info = summarize(_load(args))
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"{info['name']}: {info['n_crystals']} crystals, {info['n_rejected']} rejected")
    print(f"content hash: {info['content_hash']}")
    for target, n in info["labels"].items():
        src = ", ".join(f"{k}: {v}" for k, v in info["label_sources"][target].items())
        print(f"  {target:28} {n:6d}   ({src})")
    if "protocol_split_seed0" in info and "sizes" in info["protocol_split_seed0"]:
        print(f"protocol split (band gap, seed 0): {info['protocol_split_seed0']['content_hash'][:16]}")
    if info["duplicate_groups"] is not None:
        groups = info["duplicate_groups"]
        line = f"structure-equivalent groups: {len(groups)} ({sum(len(g) for g in groups)} crystals)"
        if "twins_of_test_block" in info:
            leaks = info["twins_of_test_block"]
            line += f"; band-gap test crystals (seed 0) with a twin in training or pretraining: {leaks['n_leaked']}"
        print(line)
    for cid, reason in info.get("rejected", []):
        print(f"  rejected {cid}: {reason}")
    return 0


@_guard
def cmd_export(args: argparse.Namespace) -> int:
    """Write the first ``n`` crystals of the canonical order of a target as a CGCNN data folder."""
    from cgcnn.data.folders import export_cgcnn_folder
    from cgcnn.data.splits import first_n_canonical

    dataset = _load(args)
    split = first_n_canonical(dataset, args.target, args.n, args.seed)
    ids = [*split.test, *split.val, *split.train]
    out = export_cgcnn_folder(dataset, ids, args.target, Path(args.out_dir), split=split)
    n_train, n_val, n_test = split.sizes
    print(
        f"wrote {len(ids)} crystals ({args.target}; test/val/train = {n_test}/{n_val}/{n_train}, split seed "
        f"{args.seed}) to {out}"
    )
    return 0


@_guard
def cmd_build_default(args: argparse.Namespace) -> int:
    """Download the sources with pip and rebuild the default dataset asset."""
    from cgcnn.build.default_dataset import build_default_dataset

    meta = build_default_dataset(Path(args.out_dir), Path(args.work_dir) if args.work_dir else None, force=args.force)
    print(
        f"wrote {meta['path']} ({meta['size_bytes'] / 1e6:.1f} MB): {meta['n_crystals']} crystals, "
        f"{meta['n_rejected']} rejected, content hash {meta['content_hash']}"
    )
    for target, counts in meta["labels"].items():
        print(f"  {target:28} {counts['total']:6d}")
    return 0


def add_data_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``data`` and its sub-commands on the top-level ``subparsers``; each sets ``func``."""
    data = subparsers.add_parser("data", help="build, inspect and export the crystal datasets")
    sub = data.add_subparsers(dest="data_command", required=True)

    p = sub.add_parser(
        "build-default",
        help="rebuild assets/mp_default.npz (downloads matminer and jarvis-leaderboard with pip)",
    )
    p.add_argument("--out-dir", default=str(_REPO_ASSETS), help="where to write the asset (default: assets/)")
    p.add_argument("--work-dir", help="keep the downloads here (reused when present)")
    p.add_argument("--force", action="store_true", help="replace the frozen asset even if its content changes")
    p.set_defaults(func=cmd_build_default)

    def dataset_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dataset", help="a dataset .npz, CGCNN folder or zip (default: the embedded set)")
        p.add_argument("--drop-heavy", action="store_true", help="drop crystals with elements Z > 80")

    p = sub.add_parser("info", help="counts, label sources and hashes of a dataset")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    dataset_options(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "export",
        help="write a CGCNN data folder (id_prop.csv, CIFs, atom_init.json)",
        description="Export the first N crystals of the canonical order of TARGET (its test block, then its "
        "validation block, then training crystals; N = 3000 on band_gap is the 1000/1000/1000 protocol). "
        "split.json records the roles.",
    )
    p.add_argument("--target", default="band_gap", help="label to export (default: band_gap)")
    p.add_argument("--n", type=int, default=3000, help="number of crystals (default: 3000)")
    p.add_argument("--seed", type=int, default=0, help="split seed of the canonical order (default: 0)")
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder to create")
    dataset_options(p)
    p.set_defaults(func=cmd_export)
    return data


def main(argv: list[str] | None = None) -> int:
    """Run ``data`` sub-commands on their own (``python -m cgcnn.cli.data info --json``)."""
    parser = argparse.ArgumentParser(prog="python -m cgcnn")
    add_data_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
