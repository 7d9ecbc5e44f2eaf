"""CLI commands for training and the run store: ``finetune`` and ``runs``."""

from __future__ import annotations

import argparse
import json
import sys

from cgcnn.cli import options
from cgcnn.training.protocol import STUDY
from cgcnn.training.train import TrainConfig

_DEFAULTS = TrainConfig()

FINETUNE_HELP = f"""\
Fine-tune a pretrained CGCNN to a new target with the embedding and the first K convolutions frozen (the
deeper layers re-initialised, as in the transfer study), or train from scratch with --pretrained none.
The yardsticks run the same way: --pretrained mean (the training mean) and --pretrained composition
(gradient-boosted trees on the formula's Magpie-style features), freeze 0, stored as runs.
The split is the canonical one of --split-seed (default: the study's protocol, {STUDY.describe()});
--seed sets the model initialisation and data order only, so seeds share one test set.

Defaults: optimizer {_DEFAULTS.optimizer} (lr {_DEFAULTS.lr}), batch {_DEFAULTS.batch_size}, \
{_DEFAULTS.epochs} epochs, no learning-rate schedule (--milestones to add one), MSE loss on the normalised
target; the weights of the epoch with the best validation MAE are tested. Frozen layers are computed once per
crystal, so deeper freezing trains faster.

--strategy picks how the pretrained layers learn: freeze (the study's, above), discriminative (layer-wise
learning rates, --lr-decay), gradual (unfreezing from the head down, --unfreeze-every), lp-ft (the head alone
first, --lp-epochs) or l2sp (a pull towards the pretrained weights, --l2sp-alpha). Every strategy but freeze
keeps all pretrained convolutions. See docs/cli.md.
"""


def _spec_from_args(args: argparse.Namespace):
    from cgcnn.training.finetune import FinetuneSpec

    hyper = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "optimizer": args.optimizer,
        "lr": args.lr,
        "device": args.device,
    }
    if args.milestones:
        hyper["lr_milestones"] = args.milestones
    if args.patience is not None:
        hyper["patience"] = args.patience
    if args.threads:
        hyper["threads"] = args.threads
    hyper.update(options.strategy_hyperparams(args))
    return FinetuneSpec(
        pretrained=args.pretrained,
        freeze=args.freeze,
        target=args.target,
        n_train=args.train,
        n_val=args.val,
        n_test=args.test,
        seed=args.seed,
        split_seed=args.split_seed,
        data=args.data,
        warm_start=args.warm_start,
        hyperparams=hyper,
        strategy=args.strategy,
    )


def _cmd_finetune(args: argparse.Namespace) -> int:
    import os

    from cgcnn.names import validate_name
    from cgcnn.runs.store import RunStore
    from cgcnn.settings import atom_limit
    from cgcnn.training.baselines import BASELINES
    from cgcnn.training.finetune import run_finetune

    if args.max_atoms is not None:  # this command's own limit (the workers of a server keep CGCNN_MAX_ATOMS)
        os.environ["CGCNN_MAX_ATOMS"] = str(atom_limit(args.max_atoms))
    if args.owner:
        args.owner = validate_name(args.owner, what="a display name")
    spec = _spec_from_args(args)
    if args.queue:
        return _queue(spec, args)
    store = None if args.no_store else RunStore()

    def on_epoch(stats) -> None:
        if not args.quiet:
            print(
                f"epoch {stats.epoch:3d}  train loss {stats.train_loss:.4f}  train MAE {stats.train_mae:.4f}  "
                f"val MAE {stats.val_mae:.4f}  ({stats.seconds:.2f} s)",
                file=sys.stderr,
            )

    outcome = run_finetune(spec, store=store, owner=args.owner, on_epoch=on_epoch)
    result = outcome.result
    summary = {
        "test_mae": result.test.mae,
        "epochs": len(result.history),
        "seconds": outcome.seconds,
        "run_id": outcome.run_id,
        "best_epoch": result.best_epoch,
        "pretrained": spec.pretrained,
        "freeze": spec.freeze,
        "strategy": spec.strategy,
        "target": outcome.predictor.targets[0],
        "n_train": len(outcome.split.train),
        "n_val": len(outcome.split.val),
        "n_test": len(outcome.test_ids),
        "split_hash": outcome.split.content_hash,
        "frozen_params": outcome.report.frozen_params,
        "trainable_params": outcome.report.trainable_params,
        "skipped": len(outcome.skipped),
        "cancelled": result.cancelled,
    }
    for crystal_id, reason in outcome.skipped:
        print(f"skipped: {crystal_id}: {reason}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary))
    elif spec.pretrained in BASELINES:
        print(
            f"test MAE {result.test.mae:.4f}: the {spec.pretrained} baseline, fitted in {result.seconds:.2f} s "
            f"({outcome.seconds:.1f} s in all)" + (f"; run {outcome.run_id}" if outcome.run_id else "")
        )
    else:
        print(
            f"test MAE {result.test.mae:.4f} after {len(result.history)} epochs (best epoch {result.best_epoch}), "
            f"{outcome.seconds:.1f} s; trainable {outcome.report.trainable_params:,} / frozen "
            f"{outcome.report.frozen_params:,} parameters" + (f"; run {outcome.run_id}" if outcome.run_id else "")
        )
    return 0


def _queue(spec, args: argparse.Namespace) -> int:
    """``finetune --queue``: the app's path (checks, per-person limit, reuse of identical runs); no worker starts.

    ``--owner`` is trusted here: whoever runs the CLI on the server's machine may act as any owner.
    """
    from cgcnn.errors import CGCNNError
    from cgcnn.runs.store import RunStore

    if args.no_store:
        raise CGCNNError("--queue records the run in the run store; it cannot be combined with --no-store")
    spec.validate()
    record = RunStore().launch(spec.to_dict(), owner=args.owner)
    if args.json:
        print(json.dumps({"run_id": record.id, "status": record.status, "source_run_id": record.source_run_id}))
    elif record.source_run_id is not None and record.status == "done":
        print(f"run {record.id}: answered at once from the identical finished run {record.source_run_id}")
    elif record.source_run_id is not None:
        print(f"queued run {record.id} (joins the identical run {record.source_run_id})")
    else:
        print(f"queued run {record.id}")
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    from cgcnn.runs.store import RunStore

    store = RunStore()
    store.reap_stale()
    action = getattr(args, "action", None)
    if action == "show":
        record = store.get(args.run_id)
        data = record.to_dict()
        data["epochs"] = store.epochs(args.run_id).to_dict(orient="records")
        print(json.dumps(data, indent=2, default=str))
        return 0
    if action == "save":
        from cgcnn.zoo import save_run_as

        store.get(args.run_id)
        name = save_run_as(store, args.run_id, args.name)
        print(f"run {args.run_id} saved to the zoo as {name!r} (use --model {name!r})")
        return 0
    if action == "delete":
        if store.delete(args.run_id):
            print(f"run {args.run_id} deleted")
        else:
            print(f"run {args.run_id} hidden: other runs reuse its results, so they are kept until those go")
        return 0
    records = store.list_runs(owner=args.owner, status=args.status, limit=args.limit)
    if args.json:
        print(json.dumps([r.to_dict() for r in records], default=str))
        return 0
    print(f"{'id':8}  {'status':9}  {'pretrained':26} {'k':>2}  {'target':12} {'seed':>4}  {'test MAE':>8}  name")
    for r in records:
        mae = f"{r.test_mae:.4f}" if r.test_mae is not None else "-"
        print(
            f"{r.id:8}  {r.status:9}  {r.pretrained!s:26} {r.freeze!s:>2}  {r.target!s:12} "
            f"{r.seed!s:>4}  {mae:>8}  {r.name or ''}"
        )
    return 0


def _cmd_jobs(args: argparse.Namespace) -> int:
    from cgcnn.runs.executors import make_runner
    from cgcnn.runs.store import RunStore

    store = RunStore()
    ray = {"ray_address": args.ray_address, "num_cpus": args.ray_num_cpus, "fallback_local": args.ray_fallback_local}
    runner = make_runner(store, executor=args.executor, max_workers=args.workers,
                         **{k: v for k, v in ray.items() if v})  # fmt: skip
    if runner.fallback_reason:
        print(f"warning: {runner.fallback_reason}", file=sys.stderr)
    queued = store.counts(computations_only=True)["queued"]
    print(
        f"draining {queued} queued run(s) with up to {runner.max_workers} {runner.executor} worker(s)", file=sys.stderr
    )
    if not runner.run_until_empty(args.timeout):
        print("timeout: runs are still queued or running", file=sys.stderr)
        return 1
    return 0


def add_executor_arguments(p: argparse.ArgumentParser) -> None:
    """``--executor local|ray``, ``--ray-address``, ``--ray-num-cpus`` and ``--ray-fallback-local``."""
    p.add_argument("--executor", choices=["local", "ray"], help="where runs execute (default $CGCNN_EXECUTOR or local)")
    p.add_argument("--ray-address", help="Ray cluster, host:port of `ray start --head` (default: a local instance)")
    p.add_argument("--ray-num-cpus", type=int, help="CPUs (and torch threads) per Ray task (default 1)")
    p.add_argument("--ray-fallback-local", action="store_true", help="if Ray cannot be reached, run locally")


def add_train_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``finetune``, ``runs`` and ``jobs``."""
    p = sub.add_parser(
        "finetune",
        help="fine-tune a pretrained model (or train from scratch) and record the run",
        description=FINETUNE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--pretrained",
        default="none",
        help="zoo name, checkpoint path, run:ID, none (scratch), or a baseline: mean (the training mean), "
        "composition (trees on the formula's Magpie-style features)",
    )
    p.add_argument("--freeze", type=int, default=0, help="K: freeze the embedding and the first K convolutions")
    options.add_target(p, "label to learn")
    options.add_sizes(p)
    p.add_argument("--epochs", type=int, default=_DEFAULTS.epochs, help=f"default {_DEFAULTS.epochs}")
    p.add_argument("--seed", type=int, default=0, help="initialisation and data order (default 0)")
    options.add_split_seed(p)
    options.add_data(p)
    p.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size, help=f"default {_DEFAULTS.batch_size}")
    p.add_argument("--lr", type=float, default=_DEFAULTS.lr, help=f"learning rate (default {_DEFAULTS.lr})")
    p.add_argument("--optimizer", choices=["adam", "sgd"], default=_DEFAULTS.optimizer)
    p.add_argument("--milestones", type=int, nargs="*", help="epochs where the learning rate drops tenfold")
    p.add_argument(
        "--patience", type=int, default=STUDY.patience, help="early stopping after this many epochs without improvement"
    )
    p.add_argument("--warm-start", action="store_true", help="keep the deeper pretrained layers (no re-init)")
    options.add_strategy(p)
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    p.add_argument(
        "--owner",
        default="",
        help="display name recorded with the run; with --queue, whose per-person limit it counts against "
        "(trusted: no sign-in on the command line)",
    )
    p.add_argument(
        "--max-atoms", type=int, help="refuse crystals with more atoms than this (default: CGCNN_MAX_ATOMS, 20,000)"
    )
    p.add_argument("--no-store", action="store_true", help="do not record the run in the run store")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines on stderr")
    p.add_argument("--json", action="store_true", help="print one JSON summary as the last line")
    p.add_argument(
        "--queue",
        action="store_true",
        help="queue the run for `jobs` (or the app's workers) instead of running it: the app's checks, per-person "
        "limit and reuse of identical runs; --json prints run_id, status and source_run_id",
    )
    p.set_defaults(func=_cmd_finetune)

    p = sub.add_parser("jobs", help="run queued fine-tunes in worker processes until the queue is empty")
    p.add_argument("--workers", type=int, help="runs at once (default: one per core, or the Ray cluster's CPUs)")
    p.add_argument("--timeout", type=float, help="give up after this many seconds")
    add_executor_arguments(p)
    p.set_defaults(func=_cmd_jobs)

    p = sub.add_parser("runs", help="list, show, save to the zoo, or delete stored runs")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.add_argument("--owner", help="only this owner's runs")
    p.add_argument("--status", choices=["queued", "running", "done", "failed", "cancelled"])
    p.add_argument("--limit", type=int)
    p.set_defaults(func=_cmd_runs)
    actions = p.add_subparsers(dest="action")
    show = actions.add_parser("show", help="one run with its epochs, as JSON")
    show.add_argument("run_id")
    save = actions.add_parser("save", help="save a finished run to the zoo under a name")
    save.add_argument("run_id")
    save.add_argument("name")
    delete = actions.add_parser("delete", help="delete a run, its epochs and its checkpoint")
    delete.add_argument("run_id")
