"""Training: MSE on normalised targets, MAE in physical units, best-validation weights, per-epoch records.

Several targets train together with a masked MSE (a crystal missing a label still teaches the others).
Frozen layers (see :mod:`cgcnn.training.transfer`) are computed once per crystal before the first epoch: with frozen
weights and eval-mode batch norm their output never changes, so each epoch only runs the trainable part.

Long trainings (the zoo's pretraining) can be resumed: ``on_checkpoint`` receives a :data:`TrainState` after
every epoch, and passing it back as ``resume_state`` continues from the next epoch with the same weights,
optimizer moments, data order and random state, so an interrupted run ends with the same numbers as an
uninterrupted one.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from cgcnn.data.graph import GraphSet
from cgcnn.errors import CGCNNError
from cgcnn.nn.model import CrystalGraphConvNet
from cgcnn.nn.normalizer import Normalizer
from cgcnn.training.protocol import STUDY
from cgcnn.training.strategies import Strategy


@dataclass
class TrainConfig:
    """Optimisation settings. Defaults: Adam, lr 0.003, batch 64, 30 epochs, no schedule.

    The original CGCNN used SGD (lr 0.01, momentum 0.9) for hundreds of epochs; for the study's 30-epoch
    fine-tunes Adam converges in far fewer steps. ``optimizer="sgd"`` gives the original behaviour.

    Attributes:
        epochs: passes over the training set.
        batch_size: crystals per step.
        optimizer: ``adam`` or ``sgd`` (with momentum).
        lr: learning rate.
        momentum: SGD momentum.
        weight_decay: L2 penalty.
        lr_milestones: epochs at which the learning rate is multiplied by ``lr_gamma`` (MultiStepLR).
        lr_gamma: factor of the schedule.
        patience: stop after this many epochs without a better validation MAE (None: never).
        seed: seeds Python, NumPy, torch and the data order.
        device: ``cpu`` or ``cuda``.
        threads: torch intra-op threads (None: torch's default, all cores).
        eval_batch_size: crystals per batch for validation and test (no gradients, so larger).
        lr_decay: ``discriminative`` fine-tuning: learning-rate factor per block down from the head.
        unfreeze_every: ``gradual`` fine-tuning: epochs between unfreezing one more block.
        lp_epochs: ``lp-ft`` fine-tuning: epochs of the head alone before every layer trains.
        l2sp_alpha: ``l2sp`` fine-tuning: strength of the pull towards the pretrained weights.

    The last four are read only by the strategy that names them (:mod:`cgcnn.training.strategies`); they are
    fields here so that a spec's ``hyperparams`` hold them and its key drops them at their defaults.
    """

    epochs: int = STUDY.epochs
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 0.003
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 0.1
    patience: int | None = None
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None
    eval_batch_size: int = 256
    lr_decay: float = 0.5
    unfreeze_every: int = 5
    lp_epochs: int = 5
    l2sp_alpha: float = 0.01


@dataclass
class LabelledGraphs:
    """Crystals ready for training: their graphs collated once, their labels ``(n, n_targets)`` (NaN = missing)."""

    ids: list[str]
    graphs: GraphSet
    targets: np.ndarray

    def __post_init__(self) -> None:
        self.targets = np.asarray(self.targets, dtype=np.float64).reshape(len(self.ids), -1)
        if len(self.graphs) != len(self.ids):
            raise ValueError("one graph per id is required")


@dataclass
class EpochStats:
    """One epoch of training, as stored in the run store and drawn as curves (MAE in physical units).

    ``seconds`` is the whole epoch (training and validation), ``train_seconds`` the training pass alone.
    """

    epoch: int
    train_loss: float
    train_mae: float
    val_loss: float
    val_mae: float
    seconds: float
    lr: float
    train_seconds: float = 0.0
    val_mae_per_target: dict[str, float] = field(default_factory=dict)


@dataclass
class Evaluation:
    """Loss, MAE and predictions of a model on a set of crystals."""

    loss: float
    mae: float
    mae_per_target: dict[str, float]
    predictions: np.ndarray


@dataclass
class TrainResult:
    """The outcome of :func:`train_model`; ``model`` holds the best-validation weights."""

    model: CrystalGraphConvNet
    normalizer: Normalizer
    history: list[EpochStats]
    best_epoch: int
    test: Evaluation | None
    cancelled: bool
    seconds: float


EpochCallback = Callable[[EpochStats], bool | None]

#: Everything needed to continue a training after an epoch (plain data: tensors, numbers, lists, dicts, so
#: ``torch.save`` / ``torch.load(weights_only=True)`` round-trip it): ``epoch``, ``model``, ``optimizer``,
#: ``scheduler_last_epoch``, ``order_rng`` (NumPy bit-generator state), ``torch_rng``, ``history`` (dicts of
#: :class:`EpochStats`), ``best_score``, ``best_epoch``, ``best_state``, ``stale``.
TrainState = dict
CheckpointCallback = Callable[[TrainState], None]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that the same seed and data give the same numbers."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def masked_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the labels that exist (NaN marks a missing label)."""
    present = ~torch.isnan(target)
    if not present.any():
        return pred.sum() * 0.0
    diff = pred[present] - target[present]
    return (diff * diff).mean()


def train_model(
    model: CrystalGraphConvNet,
    train: LabelledGraphs,
    val: LabelledGraphs,
    test: LabelledGraphs | None = None,
    config: TrainConfig | None = None,
    callback: EpochCallback | None = None,
    normalizer: Normalizer | None = None,
    resume_state: TrainState | None = None,
    on_checkpoint: CheckpointCallback | None = None,
    frozen_depth: int = 0,
    strategy: Strategy | None = None,
) -> TrainResult:
    """Train ``model`` (frozen layers as set by :func:`cgcnn.training.transfer.freeze_layers`) and evaluate it.

    Args:
        model: the network; its ``config.targets`` name the columns of the labels.
        train: training crystals (their labels fit the normaliser unless one is given).
        val: validation crystals; the epoch with the lowest validation MAE gives the final weights.
        test: test crystals, evaluated once with the best weights.
        config: optimisation settings.
        callback: called after every epoch with its :class:`EpochStats`; returning True stops training
            cleanly after that epoch (cancellation), keeping every finished epoch.
        normalizer: target normaliser; fitted on the training labels by default.
        resume_state: a state handed to ``on_checkpoint`` by an earlier call with the same model architecture,
            data and config: training continues after its epoch instead of starting over.
        on_checkpoint: called after every epoch (before ``callback``) with the :data:`TrainState` to resume from.
        frozen_depth: ``k`` of the freeze (``FreezeReport.freeze``): the output of the embedding and the first
            ``k`` convolutions never changes, so it is computed once per crystal and training starts from it.
        strategy: how the trainable layers learn (:func:`cgcnn.training.strategies.make_strategy`: parameter
            groups, the layers each epoch trains, a loss penalty); None: all of them at ``config.lr`` (``freeze``).
            ``EpochStats.lr`` is its first group's rate (the head's).

    Raises:
        CGCNNError: empty or unlabelled training data, NaN-only targets, or a non-finite loss.
        ValueError: ``frozen_depth`` names layers that still have trainable weights.
    """
    config = config or TrainConfig()
    started = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    _check_labels(train, "training")
    _check_labels(val, "validation")
    seed_everything(config.seed)
    device = torch.device(config.device)
    normalizer = normalizer or Normalizer.fit(train.targets)
    names = list(model.config.targets)
    model.to(device)
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])  # before the frozen features are computed from it

    start = frozen_depth
    frozen = [model.get_submodule(name) for name in model.layer_names()[: 1 + start]] if start else []
    if any(p.requires_grad for module in frozen for p in module.parameters()):
        raise ValueError(f"frozen_depth={start}, but those layers are not frozen (see transfer.freeze_layers)")
    # The validation and test blocks' frozen features are computed when first needed (after the first training
    # pass, at the end): a 50-crystal run with 1,000 validation and test crystals starts its first step at once.
    cached = {"train": _frozen_features(model, train, start, device)}

    def features(name: str, data: LabelledGraphs) -> torch.Tensor | None:
        if name not in cached:
            cached[name] = _frozen_features(model, data, start, device)
        return cached[name]

    strategy = strategy or Strategy(model, start)
    optimizer = _optimizer(strategy.param_groups(model, config.lr), config)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.lr_milestones), config.lr_gamma)
    order_rng = np.random.default_rng(config.seed)
    y_train = normalizer.norm(torch.tensor(train.targets, dtype=torch.float32)).to(device)

    history: list[EpochStats] = []
    best_score, best_state, best_epoch = float("inf"), copy.deepcopy(model.state_dict()), 0
    cancelled = False
    stale = 0
    first_epoch = 1
    if resume_state is not None:
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.last_epoch = int(resume_state["scheduler_last_epoch"])  # the lr itself is in the optimizer
        order_rng.bit_generator.state = resume_state["order_rng"]
        torch.set_rng_state(resume_state["torch_rng"])
        history = [EpochStats(**h) for h in resume_state["history"]]
        best_score, best_epoch = float(resume_state["best_score"]), int(resume_state["best_epoch"])
        best_state, stale = resume_state["best_state"], int(resume_state["stale"])
        first_epoch = int(resume_state["epoch"]) + 1
    for epoch in range(first_epoch, config.epochs + 1):
        t0 = time.perf_counter()
        strategy.begin_epoch(model, epoch)
        model.train()  # after begin_epoch: layers that wait this epoch keep their batch norms in eval mode
        order = order_rng.permutation(len(train.ids))
        loss_sum, abs_err, n_err = 0.0, 0.0, 0
        for lo in range(0, len(order), config.batch_size):
            idx = order[lo : lo + config.batch_size]
            if len(idx) < 2 and len(order) > 1:
                continue  # batch norm cannot train on one crystal; it rejoins next epoch's shuffle
            batch = train.graphs.batch(idx, cached["train"]).to(device)
            pred = model.forward_from(batch.node_features, batch, start) if start else model(batch)
            target = y_train[torch.from_numpy(idx).to(device)]
            loss = masked_mse(pred, target)
            penalty = strategy.penalty(model)
            objective = loss if penalty is None else loss + penalty  # the recorded loss stays the data's
            if not torch.isfinite(objective):
                raise CGCNNError(
                    f"training diverged at epoch {epoch} (loss is {objective.item()}): lower the learning rate"
                )
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            optimizer.step()
            with torch.no_grad():
                err = (normalizer.denorm(pred.detach().double()) - normalizer.denorm(target.double())).abs()
                present = ~torch.isnan(err)
                abs_err += err[present].sum().item()
                n_err += int(present.sum())
                loss_sum += loss.item() * len(idx)
        train_seconds = time.perf_counter() - t0
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        val_eval = evaluate(model, val, normalizer, config, device, features("val", val), start)
        stats = EpochStats(
            epoch=epoch,
            train_loss=loss_sum / max(len(order), 1),
            train_mae=abs_err / max(n_err, 1),
            val_loss=val_eval.loss,
            val_mae=val_eval.mae,
            seconds=time.perf_counter() - t0,
            lr=lr,
            train_seconds=train_seconds,
            val_mae_per_target=val_eval.mae_per_target,
        )
        history.append(stats)
        score = _selection_score(val_eval, normalizer, names)
        if score < best_score:
            best_score, best_epoch, stale = score, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
        if on_checkpoint is not None:
            on_checkpoint(
                {
                    "epoch": epoch,
                    "model": copy.deepcopy(model.state_dict()),
                    "optimizer": copy.deepcopy(optimizer.state_dict()),
                    "scheduler_last_epoch": scheduler.last_epoch,
                    "order_rng": order_rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(),
                    "history": [dataclasses.asdict(h) for h in history],
                    "best_score": best_score,
                    "best_epoch": best_epoch,
                    "best_state": best_state,
                    "stale": stale,
                }
            )
        if callback is not None and callback(stats):
            cancelled = True
            break
        if config.patience is not None and stale >= config.patience:
            break

    model.load_state_dict(best_state)
    model.eval()
    test_eval = None
    if test is not None:
        test_eval = evaluate(model, test, normalizer, config, device, features("test", test), start)
    return TrainResult(
        model=model,
        normalizer=normalizer,
        history=history,
        best_epoch=best_epoch,
        test=test_eval,
        cancelled=cancelled,
        seconds=time.perf_counter() - started,
    )


@torch.no_grad()
def evaluate(
    model: CrystalGraphConvNet,
    data: LabelledGraphs,
    normalizer: Normalizer,
    config: TrainConfig | None = None,
    device: torch.device | None = None,
    cached: torch.Tensor | None = None,
    cached_depth: int = 0,
) -> Evaluation:
    """Predict ``data`` in eval mode; loss in normalised units, MAE in physical units (per target too).

    ``cached`` holds the atom features after the first ``cached_depth`` convolutions (see :func:`train_model`).
    """
    config = config or TrainConfig()
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    start = cached_depth if cached is not None else 0
    preds = []
    for lo in range(0, len(data.ids), config.eval_batch_size):
        idx = np.arange(lo, min(lo + config.eval_batch_size, len(data.ids)))
        batch = data.graphs.batch(idx, cached).to(device)
        preds.append(model.forward_from(batch.node_features, batch, start) if start else model(batch))
    model.train(was_training)
    pred_norm = torch.cat(preds).double().cpu()
    truth = torch.tensor(data.targets, dtype=torch.float64)
    loss = masked_mse(pred_norm, normalizer.norm(truth)).item()
    pred = normalizer.denorm(pred_norm).numpy()
    err = np.abs(pred - data.targets)
    per_target = {
        name: float(np.nanmean(err[:, k])) if np.isfinite(err[:, k]).any() else float("nan")
        for k, name in enumerate(model.config.targets)
    }
    finite = [v for v in per_target.values() if np.isfinite(v)]
    return Evaluation(loss, float(np.mean(finite)) if finite else float("nan"), per_target, pred)


@torch.no_grad()
def _frozen_features(
    model: CrystalGraphConvNet, data: LabelledGraphs, depth: int, device: torch.device
) -> torch.Tensor | None:
    """Atom features after the frozen layers for every crystal of ``data`` (None when nothing is frozen)."""
    if depth == 0:
        return None
    was_training = model.training
    model.eval()
    out = []
    for lo in range(0, len(data.ids), 512):
        idx = np.arange(lo, min(lo + 512, len(data.ids)))
        out.append(model.atom_features(data.graphs.batch(idx).to(device), up_to=depth))
    model.train(was_training)
    return torch.cat(out)


def _selection_score(evaluation: Evaluation, normalizer: Normalizer, names: list[str]) -> float:
    """Validation MAE in units of each target's spread, averaged: one number for one or many targets."""
    scaled = [evaluation.mae_per_target[n] / normalizer.std[k] for k, n in enumerate(names)]
    scaled = [v for v in scaled if np.isfinite(v)]
    return float(np.mean(scaled)) if scaled else float("inf")


def _optimizer(groups: list[dict], config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer over ``groups`` (each with its own ``lr``; a strategy's :meth:`Strategy.param_groups`)."""
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise CGCNNError("nothing to train: every layer is frozen")
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    raise CGCNNError(f"unknown optimizer {config.optimizer!r}: use 'adam' or 'sgd'")


def _check_labels(data: LabelledGraphs, role: str) -> None:
    if len(data.ids) == 0:
        raise CGCNNError(f"the {role} set is empty")
    if np.isinf(data.targets).any():
        raise CGCNNError(f"the {role} labels contain infinite values")
    if np.isnan(data.targets).all():
        raise CGCNNError(f"the {role} set has no labels (all NaN)")
