"""CLI command ``sweep``: a grid of fine-tunes over seeds, resumable, with a summary table and figure."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cgcnn.cli.train import add_executor_arguments
from cgcnn.errors import CGCNNError


def parse_int_list(text: str) -> list[int]:
    """``"1,2,3"`` or ``"0-4"`` (inclusive) or a mix: ``"0-2,5"``."""
    values: list[int] = []
    try:
        for part in filter(None, text.split(",")):
            lo, _, hi = part.partition("-")
            values.extend(range(int(lo), int(hi) + 1) if hi else [int(lo)])
    except ValueError:
        raise CGCNNError(f"not a list of integers: {text!r} (use e.g. 1,2,3 or 0-4)") from None
    return values


def _cmd_sweep(args: argparse.Namespace) -> int:
    from cgcnn.experiments.sweep import LocalExecutor, RayExecutor, SweepGrid, run_sweep, save_summary_figure
    from cgcnn.runs.store import RunStore
    from cgcnn.training.transfer import check_freeze_request
    from cgcnn.zoo import load_model

    pretrained = [p for p in args.pretrained.split(",") if p]
    freezes = parse_int_list(args.freeze)
    for name in pretrained:
        load_model(name)  # fail now, not in every worker
        for k in freezes:
            check_freeze_request(name, k)
    grid = SweepGrid(
        pretrained=pretrained,
        freezes=freezes,
        seeds=parse_int_list(args.seeds),
        baseline=not args.no_baseline,
        target=args.target,
        n_train=args.train,
        n_val=args.val,
        n_test=args.test,
        split_seed=args.split_seed,
        hyperparams={"epochs": args.epochs},
    )
    store = RunStore()
    out = Path(args.out) if args.out else None

    def progress(done: int, total: int) -> None:
        print(f"{done}/{total} runs done", file=sys.stderr)

    executor = (args.executor or os.environ.get("CGCNN_EXECUTOR", "") or "local").lower()
    if executor == "ray":
        runner_of = RayExecutor(store, args.ray_address, args.ray_num_cpus or 1, args.workers, args.ray_fallback_local)
    else:
        runner_of = LocalExecutor(store, args.workers)
    result = run_sweep(grid, store, runner_of, out, sweep_id=args.name, progress=progress)
    if out is not None:
        save_summary_figure(result.summary, out / "summary.png", title=args.title or "")
        print(f"wrote {out / 'runs.csv'}, {out / 'summary.csv'}, {out / 'summary.png'}", file=sys.stderr)
    print(result.summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def add_experiment_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``sweep``."""
    p = sub.add_parser(
        "sweep",
        help="fine-tune a grid (models x freeze depths x seeds, plus the scratch baseline) and summarise it",
        description="Runs every cell not already done in the run store (a stopped sweep resumes), in worker "
        "processes with one torch thread each, and writes runs.csv, summary.csv (mean ± std per cell; paired "
        "difference to the same seed's scratch model, wins, paired t-test p-value) and summary.png as runs finish.",
    )
    p.add_argument("--pretrained", required=True, help="comma-separated zoo names")
    p.add_argument("--freeze", default="1,2,3", help="freeze depths, e.g. 1,2,3 (default)")
    p.add_argument("--seeds", default="0-4", help="seeds, e.g. 0-4 (default) or 0,1,2")
    p.add_argument("--no-baseline", action="store_true", help="skip the scratch baseline")
    p.add_argument("--target", default="band_gap")
    p.add_argument("--train", type=int, default=1000)
    p.add_argument("--val", type=int, default=1000)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--workers", type=int, help="parallel runs (default: one per core)")
    p.add_argument("--out", help="folder for runs.csv, summary.csv and summary.png")
    p.add_argument("--name", default="sweep", help="sweep id recorded with each run")
    p.add_argument("--title", help="figure title")
    add_executor_arguments(p)
    p.set_defaults(func=_cmd_sweep)
