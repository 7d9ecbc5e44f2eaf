"""Fine-tuning strategies: how the layers of a pretrained model learn the new target.

The study knew one way (``freeze``): freeze the embedding and the first ``k`` convolutions, re-initialise the rest.
Users of other crystal-graph codes ask for finer control (layer-wise learning rates, staged unfreezing), and the
transfer literature has recipes that keep more of what pretraining learned. Each is one small class here, so a
sweep can compare them on the same splits:

- ``freeze`` (default, the study's): the embedding and the first ``k`` convolutions frozen, deeper layers new.
- ``discriminative`` (Howard & Ruder 2018): every layer trains, the learning rate multiplied by ``lr_decay`` per
  block going down from the head, so the general early features move least. Needs freeze 0.
- ``gradual`` (Howard & Ruder 2018): every convolution frozen at first; one more block, from the head down,
  joins the training every ``unfreeze_every`` epochs, so a new random head cannot wreck the deep features with
  its first large gradients.
- ``lp-ft`` (Kumar et al. 2022, "Fine-tuning can distort pretrained features"): ``lp_epochs`` of the head alone
  (a linear probe of the pretrained features), then everything; the head is sensible before the features move.
- ``l2sp`` (Li et al. 2018, "Explicit inductive bias for transfer learning"): everything trains, with the loss
  term ``l2sp_alpha / 2 * ||w - w_pretrained||^2`` pulling the pretrained weights back to where they started
  (the paper's alpha term; the new head is not penalised, its beta = 0).

Every strategy but ``freeze`` keeps all pretrained convolutions (nothing re-initialised below the head). A freeze
depth ``k`` > 0 stays a floor for ``gradual``, ``lp-ft`` and ``l2sp``: those layers are frozen throughout (and
computed once, as for ``freeze``); the strategy acts on the layers above it.

The settings are :class:`~cgcnn.training.train.TrainConfig` fields, so they live in a spec's ``hyperparams``
and drop out of its key at their defaults. The trainer asks a :class:`Strategy` three things: the optimizer's
parameter groups, which layers train in an epoch (:meth:`Strategy.begin_epoch`, a function of the epoch
number only, so a resumed training trains the same layers), and an extra loss term (:meth:`Strategy.penalty`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from cgcnn.errors import CGCNNError
from cgcnn.nn.model import CrystalGraphConvNet
from cgcnn.training.transfer import is_scratch

#: The strategies, in the order a form lists them; the first is the default (the study's protocol).
STRATEGIES = ("freeze", "discriminative", "gradual", "lp-ft", "l2sp")
DEFAULT_STRATEGY = STRATEGIES[0]

#: One line per strategy, for the CLI's help, the Fine-tune page and the docs.
EXPLANATIONS = {
    "freeze": "the embedding and the first k convolutions frozen, the deeper layers re-initialised (the study's)",
    "discriminative": "every layer trains; the learning rate shrinks by the decay factor per block down from the "
    "head, so the early, general features move least (freeze 0 only)",
    "gradual": "all convolutions frozen at first; one more block, from the head down, joins every few epochs",
    "lp-ft": "the new head alone first, on the fixed pretrained features (a probe), then every layer",
    "l2sp": "every layer trains, pulled back towards its pretrained weights by an L2 penalty",
}

#: The setting each strategy reads: the ``TrainConfig`` field, its command-line option, and what it means.
SETTINGS = {
    "discriminative": ("lr_decay", "--lr-decay", "learning-rate factor per block down from the head, in (0, 1]"),
    "gradual": ("unfreeze_every", "--unfreeze-every", "epochs between unfreezing one more block (1 or more)"),
    "lp-ft": ("lp_epochs", "--lp-epochs", "epochs of the head alone before every layer trains (1 or more)"),
    "l2sp": ("l2sp_alpha", "--l2sp-alpha", "strength alpha of the pull towards the pretrained weights (> 0)"),
}
#: Each setting's default (``TrainConfig``'s; a test keeps them equal).
SETTING_DEFAULTS = {"lr_decay": 0.5, "unfreeze_every": 5, "lp_epochs": 5, "l2sp_alpha": 0.01}
#: Strategies that change how pretrained weights train: with nothing pretrained they are meaningless.
NEEDS_PRETRAINED = ("gradual", "lp-ft", "l2sp")


def keeps_all_convolutions(strategy: str) -> bool:
    """Whether ``strategy`` keeps every pretrained convolution (all but ``freeze``: it re-initialises deeper ones)."""
    return strategy != "freeze"


def check_strategy(strategy: str, hyperparams: Mapping[str, Any], pretrained: str | None, freeze: int) -> None:
    """The one check of a strategy and its settings (``FinetuneSpec.validate`` calls it).

    A setting of another strategy is refused when it differs from its default: it would change the run's key
    without changing what is computed.

    Raises:
        CGCNNError: an unknown strategy, a setting out of range or of another strategy, ``discriminative``
            with a freeze depth, or ``gradual``/``lp-ft``/``l2sp`` without a pretrained model. The message
            names the option and the values it takes.
    """
    if strategy not in STRATEGIES:
        raise CGCNNError(f"unknown strategy {strategy!r}: --strategy takes one of {', '.join(STRATEGIES)}")
    for field, value in _given_settings(hyperparams).items():
        _check_setting(field, value)
        owner = next(s for s, (f, _, _) in SETTINGS.items() if f == field)
        if owner != strategy and value != SETTING_DEFAULTS[field]:
            option = SETTINGS[owner][1]
            raise CGCNNError(
                f"{option} is a setting of --strategy {owner}, and this run's strategy is {strategy}: "
                f"use --strategy {owner}, or leave {option} out"
            )
    if strategy == "discriminative" and freeze != 0:
        raise CGCNNError(
            f"--strategy discriminative trains every layer, so it needs --freeze 0 (got --freeze {freeze}); "
            "to keep layers fixed use --strategy freeze, gradual, lp-ft or l2sp"
        )
    if strategy != DEFAULT_STRATEGY and pretrained in ("mean", "composition"):
        raise CGCNNError(
            f"--strategy {strategy} fine-tunes a network, and --pretrained {pretrained} is a baseline without one: "
            f"use --strategy {DEFAULT_STRATEGY}"
        )
    if strategy in NEEDS_PRETRAINED and is_scratch(pretrained):
        raise CGCNNError(
            f"--strategy {strategy} fine-tunes pretrained weights, and --pretrained none has none: use a "
            f"pretrained model, or --strategy {' or '.join(s for s in STRATEGIES if s not in NEEDS_PRETRAINED)}"
        )


def _given_settings(hyperparams: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in hyperparams.items() if k in SETTING_DEFAULTS}


def _check_setting(field: str, value: Any) -> None:
    option = next(o for f, o, _ in SETTINGS.values() if f == field)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CGCNNError(f"{option} must be a number, got {value!r}")
    if field == "lr_decay" and not (0 < value <= 1):
        raise CGCNNError(f"{option} must be in (0, 1] (the learning-rate factor per block), got {value}")
    if field in ("unfreeze_every", "lp_epochs") and (value != int(value) or value < 1):
        raise CGCNNError(f"{option} must be a whole number of epochs, 1 or more, got {value}")
    if field == "l2sp_alpha" and not (math.isfinite(value) and value > 0):
        raise CGCNNError(f"{option} must be a number above 0, got {value}")


# ------------------------------------------------------------------------------------------------ the blocks


def head_layers(model: CrystalGraphConvNet) -> list[str]:
    """The dense layers after pooling (``conv_to_fc``, ``fcs.*``, ``fc_out``): the head, block 0."""
    return model.layer_names()[1 + len(model.convs) :]


def blocks_from_head(model: CrystalGraphConvNet, frozen_depth: int = 0) -> list[list[str]]:
    """The layers that may train, grouped into blocks from the head down: head, last convolution, ..., embedding.

    The embedding and the first ``frozen_depth`` convolutions (frozen throughout) are left out.
    """
    convs = [f"convs.{i}" for i in range(len(model.convs))]
    below = [[name] for name in reversed(convs[frozen_depth:])]
    if frozen_depth == 0:
        below.append(["embedding"])
    return [head_layers(model), *below]


def _params(model: CrystalGraphConvNet, layers: list[str]) -> list[torch.nn.Parameter]:
    return [p for name in layers for p in model.get_submodule(name).parameters()]


def _set_trainable(model: CrystalGraphConvNet, blocks: list[list[str]], n_trainable: int) -> None:
    """The first ``n_trainable`` blocks train, the others wait (``requires_grad``; batch norms follow in train())."""
    for i, block in enumerate(blocks):
        for p in _params(model, block):
            p.requires_grad_(i < n_trainable)


# ------------------------------------------------------------------------------------------------ strategies


class Strategy:
    """``freeze``: train whatever ``requires_grad`` (set by ``transfer.freeze_layers``), one learning rate."""

    name = "freeze"

    def __init__(self, model: CrystalGraphConvNet, frozen_depth: int = 0) -> None:
        self.blocks = blocks_from_head(model, frozen_depth)

    def param_groups(self, model: CrystalGraphConvNet, lr: float) -> list[dict[str, Any]]:
        """The optimizer's parameter groups (one ``lr`` each); the first group's is the one an epoch records."""
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr}]

    def begin_epoch(self, model: CrystalGraphConvNet, epoch: int) -> None:
        """Set which layers train in ``epoch`` (1-based), before the trainer switches the model to training mode."""

    def penalty(self, model: CrystalGraphConvNet) -> torch.Tensor | None:
        """An extra term of the loss (None: none)."""
        return None


class Discriminative(Strategy):
    """Every block trains; block ``i`` from the head (head = 0) at ``lr * lr_decay**i`` (ULMFiT's layer-wise lr)."""

    name = "discriminative"

    def __init__(self, model: CrystalGraphConvNet, lr_decay: float, frozen_depth: int = 0) -> None:
        super().__init__(model, frozen_depth)
        self.lr_decay = lr_decay

    def param_groups(self, model: CrystalGraphConvNet, lr: float) -> list[dict[str, Any]]:
        """One group per block, the head's first (its rate is the one recorded per epoch)."""
        return [{"params": _params(model, block), "lr": lr * self.lr_decay**i} for i, block in enumerate(self.blocks)]


class Gradual(Strategy):
    """The head alone for ``unfreeze_every`` epochs, then one more block from the head down every ``unfreeze_every``.

    Every block is in the optimizer from the start (a block still waiting has no gradient, so Adam skips it).
    """

    name = "gradual"

    def __init__(self, model: CrystalGraphConvNet, unfreeze_every: int, frozen_depth: int = 0) -> None:
        super().__init__(model, frozen_depth)
        self.unfreeze_every = int(unfreeze_every)

    def trainable_blocks(self, epoch: int) -> int:
        """How many blocks (the head counted) train in ``epoch`` (1-based)."""
        return min(len(self.blocks), 1 + (epoch - 1) // self.unfreeze_every)

    def param_groups(self, model: CrystalGraphConvNet, lr: float) -> list[dict[str, Any]]:
        """One group of every block that will ever train."""
        return [{"params": _params(model, [name for block in self.blocks for name in block]), "lr": lr}]

    def begin_epoch(self, model: CrystalGraphConvNet, epoch: int) -> None:
        """Unfreeze the blocks due by ``epoch``."""
        _set_trainable(model, self.blocks, self.trainable_blocks(epoch))


class LinearProbeThenFinetune(Gradual):
    """``lp_epochs`` of the head alone, then every block (Kumar et al. 2022)."""

    name = "lp-ft"

    def __init__(self, model: CrystalGraphConvNet, lp_epochs: int, frozen_depth: int = 0) -> None:
        super().__init__(model, lp_epochs, frozen_depth)
        self.lp_epochs = int(lp_epochs)

    def trainable_blocks(self, epoch: int) -> int:
        """The head alone up to ``lp_epochs``, then every block."""
        return 1 if epoch <= self.lp_epochs else len(self.blocks)


class L2SP(Strategy):
    """Every trainable layer trains; the pretrained ones are pulled back to their starting weights.

    The starting weights are copied when the strategy is made (before any training step, and before a resumed
    training loads its later weights), so the anchor is always the pretrained model.
    """

    name = "l2sp"

    def __init__(
        self, model: CrystalGraphConvNet, l2sp_alpha: float, pretrained_layers: list[str], frozen_depth: int = 0
    ) -> None:
        super().__init__(model, frozen_depth)
        self.alpha = float(l2sp_alpha)
        trainable = {name for block in self.blocks for name in block}
        layers = [name for name in pretrained_layers if name in trainable]
        self.params = _params(model, layers)
        self.anchors = [p.detach().clone() for p in self.params]

    def penalty(self, model: CrystalGraphConvNet) -> torch.Tensor | None:
        """``alpha / 2 * sum((w - w0)^2)`` over the pretrained weights that train (None when there are none)."""
        if not self.params:
            return None
        total = sum(((p - a) ** 2).sum() for p, a in zip(self.params, self.anchors, strict=True))
        return 0.5 * self.alpha * total


def make_strategy(
    strategy: str,
    model: CrystalGraphConvNet,
    settings: Any,
    frozen_depth: int = 0,
    pretrained_layers: list[str] | None = None,
) -> Strategy:
    """The :class:`Strategy` named ``strategy`` for ``model``, after ``transfer.prepare_transfer``.

    Args:
        strategy: one of :data:`STRATEGIES`.
        model: the model about to train (its pretrained weights in place: ``l2sp`` copies them as its anchor).
        settings: a :class:`~cgcnn.training.train.TrainConfig` (its ``lr_decay``, ``unfreeze_every``,
            ``lp_epochs``, ``l2sp_alpha``).
        frozen_depth: ``k``, the layers frozen throughout (``FreezeReport.freeze``).
        pretrained_layers: the layers holding pretrained weights (``FreezeReport.pretrained_layers``).

    Raises:
        CGCNNError: an unknown strategy.
    """
    if strategy == "freeze":
        return Strategy(model, frozen_depth)
    if strategy == "discriminative":
        return Discriminative(model, settings.lr_decay, frozen_depth)
    if strategy == "gradual":
        return Gradual(model, settings.unfreeze_every, frozen_depth)
    if strategy == "lp-ft":
        return LinearProbeThenFinetune(model, settings.lp_epochs, frozen_depth)
    if strategy == "l2sp":
        return L2SP(model, settings.l2sp_alpha, list(pretrained_layers or []), frozen_depth)
    raise CGCNNError(f"unknown strategy {strategy!r}: --strategy takes one of {', '.join(STRATEGIES)}")
