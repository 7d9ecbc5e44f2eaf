"""CLI command ``pretrain``: train a zoo model on several targets (see :mod:`cgcnn.training.pretrain`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cgcnn.errors import CGCNNError

PRETRAIN_HELP = """\
Pretrain a CGCNN on several targets at once and write NAME.pt and its card NAME.json to the zoo folder
(pretrained/ by default). Crystals: by default every crystal having one of the targets, minus the canonical
band-gap test block of --split-seed and every structure twin of a crystal in it (so a band-gap fine-tune never
tests on a pretraining crystal, under its own or another id; --keep-twins: by id only, as the committed zoo
models were); a crystal missing some labels still teaches the others. The crystals get their own
validation/test split (recorded on the card). The training state is saved after every epoch to NAME.resume.pt:
run the same command again to continue an interrupted run (--no-resume to start over). --split
chemistry:FAMILY tests on every crystal containing an element of FAMILY and trains on none of them; --split
random-like:FAMILY is its same-size random control (compare the two with `python -m cgcnn shift-penalty`).
"""


def _train_ids(value: str) -> str | list[str]:
    """``pretraining``, ``matched:NAME``, or a file with one crystal id per line."""
    if value == "pretraining" or value.startswith("matched:"):
        return value
    path = Path(value)
    if not path.is_file():
        raise CGCNNError(f"--train-ids {value}: not 'pretraining', 'matched:NAME' or a file of ids")
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from cgcnn.training.pretrain import PretrainSpec, pretrain
    from cgcnn.zoo import pretrained_dir

    hyper: dict = {"batch_size": args.batch_size, "optimizer": args.optimizer, "lr": args.lr}
    if args.threads:
        hyper["threads"] = args.threads
    if args.milestones:
        hyper["lr_milestones"] = args.milestones
        hyper["lr_gamma"] = args.lr_gamma
    options = {"key_dim": args.key_dim} if args.key_dim else {}
    fields = {
        **{k: getattr(args, k) for k in ("atom_fea_len", "n_conv", "h_fea_len", "n_h") if getattr(args, k) is not None},
        "targets": [t.strip() for t in args.targets.split(",") if t.strip()],
        "conv": args.conv,
        "heads": args.heads,
        "conv_options": options,
        "epochs": args.epochs,
        "seed": args.seed,
        "split_seed": args.split_seed,
        "val_fraction": args.val_fraction,
        "test_fraction": args.test_fraction,
        "ids": _train_ids(args.train_ids),
        "exclude_twins": not args.keep_twins,
        "split": args.split,
        "hyperparams": hyper,
        "name": args.name,
    }
    spec = PretrainSpec.from_dict(fields)
    out = Path(args.out_dir) if args.out_dir else pretrained_dir()

    def on_epoch(stats) -> None:
        if not args.quiet:
            per = "  ".join(f"{k} {v:.4f}" for k, v in stats.val_mae_per_target.items())
            print(
                f"epoch {stats.epoch:3d}  train loss {stats.train_loss:.4f}  val MAE {per}  ({stats.seconds:.1f} s)",
                file=sys.stderr,
                flush=True,
            )

    card = pretrain(spec, out / f"{args.name}.pt", resume=not args.no_resume, on_epoch=on_epoch)
    summary = {
        "name": card.name,
        "test_mae": card.details["test_mae"],
        "epochs": card.details["epochs"],
        "training_seconds": card.details["training_seconds"],
        "path": str(out / f"{args.name}.pt"),
    }
    print(json.dumps(summary) if args.json else "\n".join(f"{k}: {v}" for k, v in summary.items()))
    return 0


def _cmd_shift_penalty(args: argparse.Namespace) -> int:
    from cgcnn.nn.cards import ModelCard, shift_penalty
    from cgcnn.zoo import pretrained_dir, write_shift_penalty

    cards = []
    for path in (args.random, args.shifted):
        try:
            cards.append(ModelCard.from_dict(json.loads(Path(path).read_text())))
        except (OSError, ValueError, TypeError) as exc:
            raise CGCNNError(f"{path}: not a readable model card ({type(exc).__name__})") from None
    try:
        penalty = shift_penalty(*cards)
    except (ValueError, KeyError) as exc:
        raise CGCNNError(f"not a shift pair: {exc}") from None
    print(json.dumps(penalty, indent=2))
    if args.write:
        folder = Path(args.out_dir) if args.out_dir else pretrained_dir()
        names = write_shift_penalty(penalty, folder)
        print(f"wrote shift_penalty on {len(names)} card(s) in {folder}: {', '.join(names)}", file=sys.stderr)
    return 0


def add_pretrain_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``pretrain``."""
    from cgcnn.data.splits import ELEMENT_FAMILIES
    from cgcnn.nn.model import ModelConfig
    from cgcnn.training.pretrain import DEFAULT_TARGETS
    from cgcnn.training.train import TrainConfig

    defaults = TrainConfig()
    p = sub.add_parser(
        "pretrain",
        help="pretrain a zoo model on several targets (multi-task, resumable)",
        description=PRETRAIN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--name", required=True, help="zoo name: writes NAME.pt and NAME.json")
    p.add_argument("--targets", default=",".join(DEFAULT_TARGETS), help="comma-separated labels (default: %(default)s)")
    p.add_argument("--conv", default="gated", help="gated | attention | attention-edge (default: gated)")
    p.add_argument("--heads", type=int, default=1, help="attention heads, combined by a dense layer (default: 1)")
    p.add_argument("--key-dim", type=int, help="attention-edge: query/key length per head")
    sizes = ModelConfig.original_checkpoints()  # the defaults: the original checkpoints' architecture
    for flag in ("atom_fea_len", "n_conv", "h_fea_len", "n_h"):
        p.add_argument(f"--{flag.replace('_', '-')}", type=int, help=f"default: {getattr(sizes, flag)}")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--optimizer", default=defaults.optimizer, choices=["adam", "sgd"])
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--milestones", type=int, nargs="+", help="epochs at which the learning rate drops")
    p.add_argument("--lr-gamma", type=float, default=defaults.lr_gamma, help="factor of each drop")
    p.add_argument("--seed", type=int, default=0, help="initialisation and data order")
    p.add_argument("--split-seed", type=int, default=0, help="excluded band-gap test block and own split")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument(
        "--train-ids",
        default="pretraining",
        help="'pretraining' (default), 'matched:NAME' (the crystals of zoo model NAME) or a file of ids",
    )
    p.add_argument(
        "--keep-twins",
        action="store_true",
        help="with --train-ids pretraining: exclude the band-gap test block by id only, keeping its structure "
        "twins (the rule the committed zoo models were trained with; default: drop the twins)",
    )
    p.add_argument(
        "--split",
        default="random",
        help="random (default); chemistry:FAMILY: every crystal containing an element of FAMILY is the test "
        f"block and none is trained on (FAMILY: {', '.join(ELEMENT_FAMILIES)}, or elements joined by '+', e.g. "
        "Fe+Co+Ni; --test-fraction unused); random-like:FAMILY: a random split with the same block sizes (the "
        "control that makes the two test MAEs comparable)",
    )
    p.add_argument("--out-dir", help="folder to write to (default: the zoo folder, pretrained/)")
    p.add_argument("--threads", type=int, help="torch threads")
    p.add_argument("--no-resume", action="store_true", help="start over even if a resume file exists")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines on stderr")
    p.add_argument("--json", action="store_true", help="print one JSON summary")
    p.set_defaults(func=_cmd_pretrain)

    p = sub.add_parser(
        "shift-penalty",
        help="the distribution-shift penalty of a random-like/chemistry pretraining pair; --write puts it on the cards",
        description="Compare two cards written by `pretrain --split random-like:FAMILY` and `--split "
        "chemistry:FAMILY` (same recipe, same block sizes): prints shifted MAE / random MAE and their difference. "
        "--write stores it as shift_penalty on every own card in the zoo folder (the weights files are untouched).",
    )
    p.add_argument("--random", required=True, help="card (JSON) of the random-like:FAMILY model")
    p.add_argument("--shifted", required=True, help="card (JSON) of the chemistry:FAMILY model")
    p.add_argument("--write", action="store_true", help="write the penalty on every own card")
    p.add_argument("--out-dir", help="zoo folder whose cards --write updates (default: pretrained/)")
    p.set_defaults(func=_cmd_shift_penalty)
