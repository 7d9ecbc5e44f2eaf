"""CLI command ``sweep``: a grid of fine-tunes over seeds, resumable, with a summary table and figure."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cgcnn.cli import options
from cgcnn.cli.train import add_executor_arguments
from cgcnn.errors import CGCNNError
from cgcnn.training.protocol import STUDY


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

    pretrained = [p for p in args.pretrained.split(",") if p]
    freezes = parse_int_list(args.freeze)
    hyper: dict = {"epochs": args.epochs}
    if args.patience is not None:
        hyper["patience"] = args.patience
    if args.milestones:
        hyper["lr_milestones"] = args.milestones
    if args.sizes is not None and args.train is not None:
        raise CGCNNError("--sizes and --train exclude each other: --sizes 50,100,... is the grid's training sizes, "
                         "--train N a single one")  # fmt: skip
    grid = SweepGrid(
        pretrained=pretrained,
        freezes=freezes,
        seeds=parse_int_list(args.seeds),
        baseline=not args.no_baseline,
        target=args.target,
        n_train=args.train if args.train is not None else STUDY.n_train,
        sizes=parse_int_list(args.sizes) if args.sizes is not None else None,
        n_val=args.val,
        n_test=args.test,
        split_seed=args.split_seed,
        split_seeds=parse_int_list(args.split_seeds) if args.split_seeds else None,
        hyperparams=hyper,
    )
    grid.validate()  # fail now, not in every worker
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
        written = ["runs.csv", "summary.csv", "predictions.csv.gz"]
        if len(grid.train_sizes) == 1:
            save_summary_figure(result.summary, out / "summary.png", title=args.title or "")
            written.append("summary.png")
        else:
            written += ["crossover.csv", "learning_curve.csv", "learning_curve.png"]
        print(f"wrote {', '.join(str(out / name) for name in written)}", file=sys.stderr)
    print(result.summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def _cmd_sweep_summary(args: argparse.Namespace) -> int:
    import pandas as pd

    from cgcnn.experiments import results_folder
    from cgcnn.runs.store import RunStore
    from cgcnn.training.transfer import SCRATCH

    folder = Path(args.folder)
    runs_csv = folder / "runs.csv"
    if not runs_csv.is_file():
        raise CGCNNError(f"{folder} has no runs.csv (a folder written by `sweep --out`)")
    runs = pd.read_csv(runs_csv, dtype={"run_id": str})
    if args.store and not Path(args.store).is_file():
        raise CGCNNError(f"--store {args.store}: no such run store file")
    store = RunStore(args.store) if args.store else RunStore()
    if args.exclude_twins or args.clamp:
        return _rescore(folder, runs, store, args.exclude_twins, args.clamp, args.pretraining_split_seed)
    predictions = results_folder.folder_test_predictions(folder, store)
    scoring = results_folder.SCORINGS[args.scoring]
    results = results_folder.score_results(runs, predictions, scoring)
    written = results_folder.write_results(folder, results)
    if args.sensitivity:
        variants = [
            results_folder.score_results(runs, predictions, results_folder.SCORINGS[name])
            for name in results_folder.SENSITIVITY
            if name != scoring.name
        ]
        written += results_folder.write_sensitivity(folder, variants)
    summary = results.summary
    missing = int((summary["ci_low_split"].isna() & (summary["pretrained"] != SCRATCH)).sum())
    if missing > 0:
        print(f"{missing} cell(s) without a bootstrap CI: their runs' per-crystal test predictions are neither in "
              f"the run store nor in {results_folder.PREDICTIONS_FILE}", file=sys.stderr)  # fmt: skip
    if results.n_unscored:
        print(f"{results.n_unscored} of {len(runs)} runs have no per-crystal test predictions and are left out of "
              f"the {scoring.name} scoring", file=sys.stderr)  # fmt: skip
    print(f"scoring: {scoring.description}; wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def _rescore(folder: Path, runs, store, exclude_twins: bool, clamp: bool, pre_seed: int | None) -> int:
    """Write rescored_runs.csv and rescored_summary.csv: every variant beside ``all`` on the same runs."""
    from cgcnn.data.datasets import load_default_dataset
    from cgcnn.experiments.rescore import Rescoring, rescore_summary, twin_rescoring
    from cgcnn.experiments.results_folder import folder_test_predictions

    variants = []
    if exclude_twins:
        seeds = runs["split_seed"].fillna(0).astype(int).tolist() if "split_seed" in runs else [0]
        dataset = load_default_dataset()
        variants.append(twin_rescoring(dataset, seeds))
        if pre_seed is not None:
            variants.append(twin_rescoring(dataset, seeds, pretraining_split_seed=pre_seed))
    if clamp:
        variants.append(Rescoring("clamped", clamp_at=0.0))
    if exclude_twins and clamp:
        variants.append(twin_rescoring(dataset, seeds, clamp_at=0.0))
    per_run, per_cell = rescore_summary(runs, folder_test_predictions(folder, store), variants)
    per_run.to_csv(folder / "rescored_runs.csv", index=False)
    per_cell.to_csv(folder / "rescored_summary.csv", index=False)
    if len(per_run) < len(runs):
        print(f"{len(runs) - len(per_run)} of {len(runs)} runs have no per-crystal test predictions in the run "
              "store and are left out of every variant", file=sys.stderr)  # fmt: skip
    print(f"wrote {folder / 'rescored_runs.csv'}, {folder / 'rescored_summary.csv'}", file=sys.stderr)
    compared = [c for c in per_cell.columns if c.startswith(("mean_mae_", "p_holm_"))]
    shown = ["pretrained", "freeze", "strategy", "n_train", "n", *compared]
    print(per_cell[shown].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def add_experiment_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``sweep`` and ``sweep-summary``."""
    p = sub.add_parser(
        "sweep-summary",
        help="recompute a sweep folder's summary.csv (and, over several sizes, its learning curve) from its runs.csv",
        description="Recomputes summary.csv (pair level: t-test, Holm per size, sign test, bootstrap CI; split "
        "level: t-test and sign test over split-level differences, hierarchical bootstrap CI) and, over several "
        "training-set sizes, crossover.csv, learning_curve.csv and learning_curve.png from FOLDER/runs.csv, "
        "without training anything. Per-crystal test predictions come "
        "from the run store, else from FOLDER/predictions.csv.gz, so a fresh clone recomputes every interval. "
        "--scoring picks how test predictions are scored (primary: the pre-registered analysis of "
        "docs/learning-curves.md). With --exclude-twins and/or --clamp it writes the older side-by-side "
        "rescoring instead (rescored_runs.csv, rescored_summary.csv).",
    )
    p.add_argument("folder", help="a folder written by `sweep --out`")
    p.add_argument(
        "--scoring",
        choices=["all", "primary", "clamped", "unseen"],
        default="all",
        help="all (default): every test crystal as predicted; primary: unclamped, test crystals with a structure "
        "twin in the first 4,000 training crystals, validation or pretraining left out (band gap only); clamped: "
        "primary with predictions clamped at 0; unseen: primary without every crystal the own models' "
        "pretraining saw (split 0)",
    )
    p.add_argument(
        "--sensitivity",
        action="store_true",
        help="also write the labelled sensitivity analyses (clamped, all = twins kept, unseen) side by side: "
        "sensitivity_summary.csv, sensitivity_crossover.csv",
    )
    p.add_argument(
        "--exclude-twins",
        action="store_true",
        help="re-score without the test crystals that have a structure twin in training or pretraining; writes "
        "rescored_runs.csv and rescored_summary.csv (summary.csv is left as it is)",
    )
    p.add_argument(
        "--clamp", action="store_true", help="also score predictions clamped at 0 (band gap); same output files"
    )
    p.add_argument(
        "--pretraining-split-seed",
        type=int,
        help="with --exclude-twins: also a variant 'unseen' without every test crystal in the pretraining pool "
        "of this split seed, by id or as a twin (the committed own models: 0; for runs on other splits)",
    )
    p.add_argument("--store", help="the run store's runs.sqlite (default: $CGCNN_HOME/runs.sqlite)")
    p.set_defaults(func=_cmd_sweep_summary)

    p = sub.add_parser(
        "sweep",
        help="fine-tune a grid (models x freeze depths x seeds, plus the scratch baseline) and summarise it",
        description="Runs every cell not already done in the run store (a stopped sweep resumes), in worker "
        "processes with one torch thread each, and writes runs.csv, summary.csv (mean ± std per cell; paired "
        "difference to the scratch model of the same size, split seed and seed, wins, paired t-test p-value, its Holm "
        "correction per size, exact sign test, 95% bootstrap CI over test crystals and pairs; the same at split "
        "level) as runs finish, and when the sweep ends predictions.csv.gz (per-crystal test predictions) and, with "
        "--sizes, crossover.csv, learning_curve.csv and learning_curve.png (one size: summary.png).",
    )
    p.add_argument("--pretrained", required=True, help="comma-separated zoo names")
    p.add_argument("--freeze", default="1,2,3", help="freeze depths, e.g. 1,2,3 (default)")
    p.add_argument("--seeds", default="0-4", help="seeds, e.g. 0-4 (default) or 0,1,2")
    p.add_argument("--no-baseline", action="store_true", help="skip the scratch baseline")
    options.add_target(p, "label to learn")
    options.add_sizes(p)
    p.set_defaults(train=None)  # so that --train given with --sizes can be told from the default
    p.add_argument(
        "--sizes",
        help="several training-set sizes, e.g. 50,100,200,500,1000 (a learning curve; excludes --train): every "
        "cell, seed and split runs at each; a smaller training set is a prefix of a larger one, with the same "
        "validation and test crystals",
    )
    options.add_split_seed(p)
    p.add_argument(
        "--split-seeds",
        help="several canonical splits, e.g. 0-2: every cell and seed runs on each; pairs match on (split, seed)",
    )
    p.add_argument("--epochs", type=int, default=STUDY.epochs, help=f"default {STUDY.epochs}")
    p.add_argument(
        "--patience", type=int, default=STUDY.patience, help="early stopping after this many epochs without improvement"
    )
    p.add_argument("--milestones", type=int, nargs="*", help="epochs where the learning rate drops tenfold")
    p.add_argument("--workers", type=int, help="parallel runs (default: one per core)")
    p.add_argument("--out", help="folder for runs.csv, summary.csv, predictions.csv.gz, the curve files and figures")
    p.add_argument("--name", default="sweep", help="sweep id recorded with each run")
    p.add_argument("--title", help="figure title")
    add_executor_arguments(p)
    p.set_defaults(func=_cmd_sweep)
