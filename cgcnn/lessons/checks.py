"""A lesson's steps checked against this server: its limits, its model zoo, its data.

Why apart from the schema (:mod:`cgcnn.lessons.schema`): the schema says what a lesson file may hold; these
checks say whether this server can run it today (a lesson valid on one server may ask for more epochs than
another allows, or for a model only one has). Each problem is a :class:`Problem` naming the key at fault; the
schema turns it into a :class:`~cgcnn.lessons.schema.LessonError` with the step and the line.

The experiment checks are :meth:`FinetuneSpec.validate`'s, run key by key so the message can name the key; a
final :meth:`~cgcnn.training.finetune.FinetuneSpec.validate` of one spec per model and depth catches whatever a
later change of the spec adds.
"""

from __future__ import annotations

from typing import Any

from cgcnn.data.datasets import load_default_dataset
from cgcnn.data.splits import canonical_blocks, make_split
from cgcnn.errors import CGCNNError
from cgcnn.settings import LimitExceeded, current_limits
from cgcnn.training.finetune import FinetuneSpec, resolve_target
from cgcnn.training.transfer import check_freeze
from cgcnn.zoo import model_config

#: Values the Crystal viewer's address keys take (the page checks them again; here a lesson's typo is caught).
_VIEWER_CHOICES = {
    "edges": ("atom", "top", "all"),
    "colour": ("weights", "occlusion"),
    "atoms": ("0", "1"),
    "fixed": ("0", "1"),
    "removal": ("delete", "zero"),
}
_VIEWER_COUNTS = {"layer": 1, "atom": 0, "k": 1, "remove": 1}


class Problem(CGCNNError):
    """One thing of a step this server cannot do; ``key`` is the lesson key at fault (dotted when nested)."""

    def __init__(self, key: str | None, reason: str) -> None:
        self.key, self.reason = key, reason
        super().__init__(reason)


def check_experiment(experiment: Any) -> None:
    """Whether every cell of an experiment step can run here (limits, models and depths, target, split sizes).

    Args:
        experiment: a :class:`~cgcnn.lessons.schema.Experiment`.

    Raises:
        Problem: the first problem, with its key.
    """
    limits = current_limits()
    try:
        limits.check("max_epochs", experiment.epochs, "epochs")
    except LimitExceeded as exc:
        raise Problem("epochs", str(exc)) from None
    largest = max(experiment.sizes)
    try:
        limits.check("max_crystals", largest + experiment.val + experiment.test,
                     f"crystals of the largest cell ({largest} train + {experiment.val} validation + "
                     f"{experiment.test} test)")  # fmt: skip
    except LimitExceeded as exc:
        raise Problem("sizes", str(exc)) from None
    for name in experiment.models:
        try:
            config = model_config(name)
        except CGCNNError as exc:
            raise Problem("pretrained", str(exc)) from None
        for depth in experiment.freeze:
            try:
                check_freeze(config, depth, name)
            except CGCNNError as exc:
                raise Problem("freeze", str(exc)) from None
    dataset = load_default_dataset()
    try:
        target = resolve_target(dataset, experiment.target)
    except CGCNNError as exc:
        raise Problem("target", str(exc)) from None
    for split_seed in experiment.split_seeds:
        blocks = canonical_blocks(dataset, target, split_seed)
        for key, n, block in (("sizes", largest, blocks.train), ("val", experiment.val, blocks.val),
                              ("test", experiment.test, blocks.test)):  # fmt: skip
            if n > len(block):
                role = {"sizes": "training", "val": "validation", "test": "test"}[key]
                raise Problem(key, f"{n} {role} crystals asked for, but the {role} block of split {split_seed} of "
                                   f"the default dataset has {len(block)} with {target!r}")  # fmt: skip
        try:
            make_split(dataset, target, largest, experiment.val, experiment.test, split_seed=split_seed)
        except CGCNNError as exc:
            raise Problem("sizes", str(exc)) from None
    cells = {(p, k) for p in experiment.models for k in experiment.freeze} or {("none", 0)}
    for pretrained, depth in sorted(cells):
        sizes = {"n_train": largest, "n_val": experiment.val, "n_test": experiment.test}
        hyper = {"epochs": experiment.epochs}
        spec = FinetuneSpec(
            pretrained, depth, experiment.target, split_seed=experiment.split_seeds[0], hyperparams=hyper, **sizes
        )
        try:
            spec.validate(dataset)
        except CGCNNError as exc:
            raise Problem("pretrained", str(exc)) from None


def check_explore(page: str, params: dict[str, str]) -> None:
    """Whether an explore step's address values make sense on its page (the crystal and model exist).

    Raises:
        Problem: the first bad value, with its key (``params.KEY``).
    """
    if page != "viewer":
        return
    for key, allowed in _VIEWER_CHOICES.items():
        if key in params and params[key] not in allowed:
            raise Problem(f"params.{key}", f"{params[key]!r} is not one of {', '.join(allowed)}")
    for key, low in _VIEWER_COUNTS.items():
        if key in params:
            try:
                value = int(params[key])
            except ValueError:
                value = None
            if value is None or value < low:
                raise Problem(f"params.{key}", f"{params[key]!r} is not a whole number of at least {low}")
    head = params.get("head")
    if head is not None and head != "mean" and not (head.isdigit() and int(head) >= 1):
        raise Problem("params.head", f"{head!r} is not a head number (from 1) or 'mean'")
    if "crystal" in params and params["crystal"] not in load_default_dataset():
        raise Problem("params.crystal", f"the default dataset has no crystal {params['crystal']!r}")
    if "model" in params:
        try:
            config = model_config(params["model"])
        except CGCNNError as exc:
            raise Problem("params.model", str(exc)) from None
        if "layer" in params and int(params["layer"]) > config.n_conv:
            raise Problem("params.layer", f"{params['model']} has {config.n_conv} convolutions, not {params['layer']}")
