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


def check_freeze_request(pretrained: str | None, freeze: int) -> None:
    """Refuse impossible choices before any work is queued (the app and ``--queue`` call this).

    Raises:
        CGCNNError: freezing a model trained from scratch, or a negative depth.
    """
    if freeze < 0:
        raise CGCNNError(f"freeze depth must be 0 or more, got {freeze}")
    if pretrained in (None, "", "none") and freeze:
        raise CGCNNError("a model trained from scratch has nothing pretrained to freeze: use freeze 0")


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(frozen, trainable) parameter counts."""
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return frozen, trainable


def freeze_layers(model: CrystalGraphConvNet, freeze: int) -> list[str]:
    """Freeze the embedding and the first ``freeze`` convolutions; returns the frozen layer names."""
    if not 0 <= freeze <= model.config.n_conv:
        raise CGCNNError(f"freeze depth must be between 0 and {model.config.n_conv}, got {freeze}")
    model.frozen_depth = freeze
    for p in model.parameters():
        p.requires_grad_(True)
    for module in model.frozen_modules():
        for p in module.parameters():
            p.requires_grad_(False)
    model.train(model.training)  # re-applies eval mode to the frozen layers
    return (["embedding"] + [f"convs.{i}" for i in range(freeze)]) if freeze else []


def prepare_transfer(
    pretrained: CrystalGraphConvNet | None,
    freeze: int,
    targets: list[str],
    warm_start: bool = False,
    seed: int = 0,
    scratch_config: ModelConfig | None = None,
) -> tuple[CrystalGraphConvNet, FreezeReport]:
    """Build the model to fine-tune on ``targets``.

    Args:
        pretrained: the source network, or None to train from scratch (the study's baseline).
        freeze: ``k``, convolutions frozen together with the embedding (0 = none).
        targets: names of the new outputs.
        warm_start: keep the deeper convolutions and hidden dense layers instead of re-initialising them.
        seed: seed of the fresh weights (the same seed gives the same model).
        scratch_config: architecture of a scratch model (default: the original checkpoints' 64/4/32).

    Raises:
        CGCNNError: a freeze depth that the architecture does not have, or freezing a scratch model.
    """
    if pretrained is None:
        check_freeze_request(None, freeze)
        base = scratch_config or ModelConfig(n_conv=4, h_fea_len=32)
    else:
        base = pretrained.config
    config = dataclasses.replace(base, targets=list(targets), classification=False)
    torch.manual_seed(seed)
    model = CrystalGraphConvNet(config)
    if not 0 <= freeze <= config.n_conv:
        raise CGCNNError(f"freeze depth must be between 0 and {config.n_conv} for this model, got {freeze}")

    kept: list[str] = []
    if pretrained is not None:
        keep_convs = config.n_conv if (warm_start or freeze == 0) else freeze
        kept = ["embedding"] + [f"convs.{i}" for i in range(keep_convs)]
        if warm_start:
            kept += ["conv_to_fc"] + [f"fcs.{i}" for i in range(config.n_h - 1)]
        source = pretrained.state_dict()
        state = model.state_dict()
        for key in state:
            if any(key.startswith(prefix + ".") for prefix in kept):
                state[key] = source[key].clone()
        model.load_state_dict(state)

    frozen_layers = freeze_layers(model, freeze)
    frozen, trainable = count_parameters(model)
    all_layers = ["embedding", *(f"convs.{i}" for i in range(config.n_conv)), "conv_to_fc"]
    all_layers += [f"fcs.{i}" for i in range(config.n_h - 1)] + ["fc_out"]
    return model, FreezeReport(
        freeze=freeze,
        frozen_params=frozen,
        trainable_params=trainable,
        frozen_layers=frozen_layers,
        pretrained_layers=kept,
        reinitialised_layers=[name for name in all_layers if name not in kept],
    )
