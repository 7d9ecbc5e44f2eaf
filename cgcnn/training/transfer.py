"""Transfer learning: start from a pretrained model, freeze its first layers, re-initialise the rest.

The study's protocol: freeze the embedding and the first ``k`` convolutions (``requires_grad=False`` *and*
batch norms kept in eval mode, or their running statistics drift), re-initialise the deeper convolutions and
the dense head, and train the rest on the new target with a new normaliser. ``k = 0`` is a full fine-tune:
nothing is frozen and every pretrained convolution is kept (re-initialising all of them would be training
from scratch with a pretrained embedding). ``warm_start=True`` keeps the deeper convolutions and the hidden
dense layers too (an option beyond the study); the output layer is always new, since the target is.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from cgcnn.errors import CGCNNError
from cgcnn.nn.model import CrystalGraphConvNet, ModelConfig


@dataclass
class FreezeReport:
    """What a transfer froze and kept, for the run record and the zoo page's layer diagram."""

    freeze: int
    frozen_params: int
    trainable_params: int
    frozen_layers: list[str]
    pretrained_layers: list[str]
    reinitialised_layers: list[str]


#: The ``pretrained`` value of a model trained from scratch, as specs store it (``FinetuneSpec.pretrained``).
SCRATCH = "none"


def is_scratch(pretrained: str | None) -> bool:
    """Whether a spec's ``pretrained`` means "no pretrained model".

    Specs store :data:`SCRATCH`; older specs and callers also wrote ``""`` or None.
    """
    return pretrained in (SCRATCH, "", None)


def check_freeze(config: ModelConfig | None, freeze: int, name: str = "this model") -> None:
    """The one check of a freeze depth ``k``: the embedding and the first ``k`` convolutions of ``config``.

    Args:
        config: the pretrained model's architecture, or None for a model trained from scratch.
        freeze: ``k``.
        name: the model as the message should name it.

    Raises:
        CGCNNError: a negative depth, freezing a scratch model, or more convolutions than the model has.
    """
    if freeze < 0:
        raise CGCNNError(f"freeze depth must be 0 or more, got {freeze}")
    if config is None:
        if freeze:
            raise CGCNNError("a model trained from scratch has nothing pretrained to freeze: use freeze 0")
        return
    if freeze > config.n_conv:
        raise CGCNNError(
            f"freeze depth must be between 0 and {config.n_conv}: {name} has {config.n_conv} convolutions, got {freeze}"
        )


def check_freeze_request(pretrained: str | None, freeze: int) -> None:
    """What can be checked of a freeze depth from a model's name alone (before loading it).

    Raises:
        CGCNNError: freezing a model trained from scratch, or a negative depth.
    """
    # the model is not loaded yet, so its depth is not known: only the lower bound and scratch are checked here
    check_freeze(None if is_scratch(pretrained) else ModelConfig(n_conv=max(freeze, 0)), freeze)


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(frozen, trainable) parameter counts."""
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return frozen, trainable


def freeze_layers(model: CrystalGraphConvNet, freeze: int) -> list[str]:
    """Freeze the embedding and the first ``freeze`` convolutions; returns the frozen layer names."""
    check_freeze(model.config, freeze)
    frozen = model.layer_names()[: 1 + freeze] if freeze else []
    for p in model.parameters():
        p.requires_grad_(True)
    for name in frozen:
        for p in model.get_submodule(name).parameters():
            p.requires_grad_(False)
    model.train(model.training)  # re-applies eval mode to the frozen layers
    return frozen


def prepare_transfer(
    pretrained: CrystalGraphConvNet | None,
    freeze: int,
    targets: list[str],
    warm_start: bool = False,
    seed: int = 0,
    scratch_config: ModelConfig | None = None,
    keep_all_convs: bool = False,
) -> tuple[CrystalGraphConvNet, FreezeReport]:
    """Build the model to fine-tune on ``targets``.

    Args:
        pretrained: the source network, or None to train from scratch (the study's baseline).
        freeze: ``k``, convolutions frozen together with the embedding (0 = none).
        targets: names of the new outputs.
        warm_start: keep the deeper convolutions and hidden dense layers instead of re-initialising them.
        seed: seed of the fresh weights (the same seed gives the same model).
        scratch_config: architecture of a scratch model (default: :meth:`ModelConfig.original_checkpoints`).
        keep_all_convs: keep every pretrained convolution, also those deeper than ``freeze`` (what every
            fine-tuning strategy but ``freeze`` does, see :mod:`cgcnn.training.strategies`).

    Raises:
        CGCNNError: a freeze depth that the architecture does not have, or freezing a scratch model.
    """
    check_freeze(pretrained.config if pretrained is not None else None, freeze)
    base = pretrained.config if pretrained is not None else (scratch_config or ModelConfig.original_checkpoints())
    config = dataclasses.replace(base, targets=list(targets), classification=False)
    torch.manual_seed(seed)
    model = CrystalGraphConvNet(config)

    kept: list[str] = []
    if pretrained is not None:
        keep_convs = config.n_conv if (warm_start or keep_all_convs or freeze == 0) else freeze
        names = model.layer_names()
        kept = names[: 1 + keep_convs]
        if warm_start:
            kept = names[:-1]  # everything but the output layer
        source = pretrained.state_dict()
        state = model.state_dict()
        for key in state:
            if any(key.startswith(prefix + ".") for prefix in kept):
                state[key] = source[key].clone()
        model.load_state_dict(state)

    frozen_layers = freeze_layers(model, freeze)
    frozen, trainable = count_parameters(model)
    return model, FreezeReport(
        freeze=freeze,
        frozen_params=frozen,
        trainable_params=trainable,
        frozen_layers=frozen_layers,
        pretrained_layers=kept,
        reinitialised_layers=[name for name in model.layer_names() if name not in kept],
    )
