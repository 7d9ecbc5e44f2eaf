"""Options several commands share, declared once so that their names, defaults and help agree."""

from __future__ import annotations

import argparse


def add_model(p: argparse.ArgumentParser, help_text: str = "zoo name, run:ID or checkpoint path") -> None:
    """``--model`` (required)."""
    p.add_argument("--model", required=True, help=help_text)


def add_target(p: argparse.ArgumentParser, what: str) -> None:
    """``--target``, the study protocol's (band gap) by default; ``what`` says what the label is for."""
    from cgcnn.training.protocol import STUDY

    p.add_argument("--target", default=STUDY.target, help=f"{what} (default {STUDY.target})")


def add_sizes(p: argparse.ArgumentParser, roles: tuple[str, ...] = ("train", "val", "test")) -> None:
    """``--train``, ``--val``, ``--test``: crystals of each role, the study protocol's sizes by default."""
    from cgcnn.training.protocol import STUDY

    words = {"train": "training", "val": "validation", "test": "test"}
    defaults = {"train": STUDY.n_train, "val": STUDY.n_val, "test": STUDY.n_test}
    for role in roles:
        p.add_argument(
            f"--{role}", type=int, default=defaults[role], help=f"{words[role]} crystals (default {defaults[role]})"
        )


def add_split_seed(p: argparse.ArgumentParser, help_text: str = "which canonical split (default 0)") -> None:
    """``--split-seed``, 0 by default."""
    p.add_argument("--split-seed", type=int, default=0, help=help_text)


def add_data(p: argparse.ArgumentParser) -> None:
    """``--data``: a user's CGCNN folder or zip instead of the embedded dataset."""
    p.add_argument("--data", help="a CGCNN folder (id_prop.csv + CIFs) or a zip of one; default: embedded MP data")


def add_strategy(p: argparse.ArgumentParser) -> None:
    """``--strategy`` and its settings ``--lr-decay``, ``--unfreeze-every``, ``--lp-epochs``, ``--l2sp-alpha``.

    The values are checked by ``FinetuneSpec.validate`` (one owner of run policy, so the app and the queue refuse
    what the CLI refuses); a setting left out is its default and stays out of the run's key.
    """
    from cgcnn.training.strategies import EXPLANATIONS, SETTING_DEFAULTS, SETTINGS, STRATEGIES

    p.add_argument(
        "--strategy",
        default=STRATEGIES[0],
        help="how the pretrained layers learn (default freeze): "
        + "; ".join(f"{name}: {EXPLANATIONS[name]}" for name in STRATEGIES),
    )
    for strategy, (field, option, meaning) in SETTINGS.items():
        kind = int if isinstance(SETTING_DEFAULTS[field], int) else float
        p.add_argument(option, type=kind, help=f"--strategy {strategy}: {meaning} (default {SETTING_DEFAULTS[field]})")


def strategy_hyperparams(args: argparse.Namespace) -> dict:
    """The strategy settings given on the command line, as ``hyperparams`` entries (those left out are absent)."""
    from cgcnn.training.strategies import SETTINGS

    values = {field: getattr(args, field) for field, _, _ in SETTINGS.values()}
    return {field: value for field, value in values.items() if value is not None}


def isolated_reader(max_atoms: int):
    """A reader of crystal files that parses in the capped parser pool (files given to the CLI may come from anyone).

    The size is checked before the file is read (:func:`~cgcnn.data.crystal_io.read_file_bytes`); the worker
    runs :func:`~cgcnn.data.crystal_io.read_crystal_bytes`, the rules of every other surface.
    """
    from pathlib import Path

    from cgcnn.data.crystal_io import read_file_bytes
    from cgcnn.data.parse_pool import shared_pool

    def read(path: Path):
        return shared_pool().parse(path.name, read_file_bytes(path), max_atoms=max_atoms)

    return read
