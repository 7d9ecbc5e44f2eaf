"""The study's protocol as one call: data → split → graphs → transfer → training → test → run store.

:func:`run_finetune` is what ``python -m cgcnn finetune``, the app's job workers (through
:func:`execute_run`) and the sweeps all call, so a run means the same thing wherever it was launched.
"""

from __future__ import annotations

import _thread
import dataclasses
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cgcnn.data.datasets import TARGET_UNITS, CrystalDataset, load_default_dataset
from cgcnn.data.folders import read_cgcnn_folder, read_zip_once
from cgcnn.data.graph import BuildOptions, GraphParams, GraphSet
from cgcnn.data.splits import Split, make_split
from cgcnn.errors import CGCNNError
from cgcnn.nn.baseline import BASELINE_FILE, BaselinePredictor
from cgcnn.nn.cards import ModelCard
from cgcnn.nn.checkpoint import save_checkpoint
from cgcnn.nn.model import ModelConfig
from cgcnn.nn.predictor import Predictor
from cgcnn.numerics import cpu_capability
from cgcnn.runs.heartbeat import Heartbeat, overtime_message
from cgcnn.runs.store import RunStore
from cgcnn.settings import current_limits
from cgcnn.training.baselines import check_baseline_labels, check_baseline_request, fit_baseline, is_baseline
from cgcnn.training.protocol import STUDY, RunProtocol
from cgcnn.training.strategies import DEFAULT_STRATEGY, check_strategy, keeps_all_convolutions, make_strategy
from cgcnn.training.train import EpochStats, Evaluation, LabelledGraphs, TrainConfig, TrainResult, train_model
from cgcnn.training.transfer import (
    SCRATCH,
    FreezeReport,
    check_freeze,
    check_freeze_request,
    is_scratch,
    prepare_transfer,
)
from cgcnn.training.warm import cached_graphs, cached_model
from cgcnn.zoo import model_config


@dataclass
class FinetuneSpec:
    """Everything that defines a fine-tune (stored as the run's spec; equal specs are the same experiment).

    Attributes:
        pretrained: zoo name, checkpoint path, ``run:ID``, :data:`~cgcnn.training.transfer.SCRATCH` (``"none"``:
            train from scratch), or a baseline (``"mean"``, ``"composition"``: :mod:`cgcnn.training.baselines`;
            freeze 0, and its hyperparameters are dropped).
        freeze: ``k``, convolutions frozen with the embedding (0 = nothing frozen).
        target: label to learn.
        n_train, n_val, n_test: split sizes (prefixes of the canonical split, see :mod:`cgcnn.data.datasets`).
        seed: model initialisation and data order.
        split_seed: which canonical split (kept apart from ``seed`` so seeds share one test set).
        data: a CGCNN folder or zip of the user's (default: the embedded Materials Project dataset).
        warm_start: keep the deeper pretrained layers instead of re-initialising them.
        hyperparams: :class:`~cgcnn.training.train.TrainConfig` fields (epochs, batch_size, optimizer, lr, ...,
            and the strategies' settings ``lr_decay``, ``unfreeze_every``, ``lp_epochs``, ``l2sp_alpha``).
        strategy: how the pretrained layers learn (:data:`~cgcnn.training.strategies.STRATEGIES`; default
            ``freeze``, the study's). Every other strategy keeps all pretrained convolutions.

    The defaults are the study's protocol (:data:`cgcnn.training.protocol.STUDY`; its 30 epochs are
    ``TrainConfig``'s default); :meth:`from_protocol` builds a spec of another :class:`RunProtocol`.
    """

    pretrained: str = SCRATCH
    freeze: int = 0
    target: str = STUDY.target
    n_train: int = STUDY.n_train
    n_val: int = STUDY.n_val
    n_test: int = STUDY.n_test
    seed: int = 0
    split_seed: int = 0
    data: str | None = None
    warm_start: bool = False
    hyperparams: dict[str, Any] = field(default_factory=dict)
    strategy: str = DEFAULT_STRATEGY

    def __post_init__(self) -> None:
        if is_baseline(self.pretrained):
            # A baseline trains no network: epochs, batch size or learning rate change nothing, so they are not part
            # of the experiment (a baseline of a 3-epoch sweep is the one of a 100-epoch sweep, found done).
            self.hyperparams = {}

    @property
    def is_scratch(self) -> bool:
        """Whether this spec trains from scratch (no pretrained model)."""
        return is_scratch(self.pretrained)

    @property
    def epochs(self) -> int:
        """The epochs this spec trains (its hyperparameter, else the training default; 0 for a baseline)."""
        if is_baseline(self.pretrained):
            return 0
        return int(self.hyperparams.get("epochs", TrainConfig.epochs))

    @classmethod
    def from_protocol(cls, protocol: RunProtocol, **fields: Any) -> FinetuneSpec:
        """A spec following ``protocol`` (target, sizes, epochs, patience); ``fields`` set the rest.

        ``hyperparams`` in ``fields`` are merged over the protocol's (which fix only epochs and patience).
        """
        hyper = {**protocol.hyperparams(), **fields.pop("hyperparams", {})}
        return cls(
            target=protocol.target,
            n_train=protocol.n_train,
            n_val=protocol.n_val,
            n_test=protocol.n_test,
            hyperparams=hyper,
            **fields,
        )

    def validate(self, dataset: CrystalDataset | None = None) -> CrystalDataset:
        """Every "can this run" check, before any work starts: the CLI, queue, app, sweep and worker ask here.

        Cheap checks come first (sizes, limits, hyperparameters, the model's header), then the data is loaded
        (unless given) to check the target and that the split fits it.

        Args:
            dataset: the spec's data, if already loaded (a launch of many specs loads it once).

        Returns:
            The dataset checked (loaded here when not given), so a caller that goes on to train reuses it.

        Raises:
            CGCNNError: split sizes the trainer cannot use, epochs below 1, unknown hyperparameters, an unknown
                strategy or a setting out of its range or not its own, ``discriminative`` with a freeze depth,
                ``gradual``/``lp-ft``/``l2sp`` from scratch, an unknown model or a freeze depth beyond it, an
                unknown target, or sizes larger than the dataset.
            LimitExceeded: epochs or crystals past the server's limits (``CGCNN_MAX_EPOCHS``,
                ``CGCNN_MAX_CRYSTALS``).
        """
        if self.n_train < 2 or self.n_val < 1 or self.n_test < 1:
            raise CGCNNError(
                f"split sizes {self.n_train}/{self.n_val}/{self.n_test}: training needs at least 2 crystals "
                "and validation and test at least 1 each"
            )
        baseline = is_baseline(self.pretrained)
        if baseline:
            check_baseline_request(self.pretrained, self.freeze, self.warm_start)
        else:
            check_freeze_request(self.pretrained, self.freeze)
        config = self.train_config()  # unknown hyperparameters
        check_strategy(self.strategy, self.hyperparams, self.pretrained, self.freeze)
        if config.epochs < 1:
            raise CGCNNError(f"epochs must be at least 1, got {config.epochs}")
        # The server's hard limits (CLI, queue and app all come here): LimitExceeded names the variable.
        limits = current_limits()
        limits.check("max_epochs", config.epochs, "epochs")
        limits.check("max_crystals", self.n_train + self.n_val + self.n_test, "crystals (train + validation + test)")
        if not self.is_scratch and not baseline:
            check_freeze(model_config(self.pretrained), self.freeze, self.pretrained)  # reads the header only
        data = dataset if dataset is not None else load_data(self.data)
        target = resolve_target(data, self.target)
        split = make_split(data, target, self.n_train, self.n_val, self.n_test, split_seed=self.split_seed)
        if baseline:
            check_baseline_labels(self.pretrained, target, data.labels.loc[list(split.train), target].to_numpy())
        return data

    def train_config(self, **overrides: Any) -> TrainConfig:
        """The :class:`TrainConfig` of this spec (its seed is the spec's seed)."""
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = set(self.hyperparams) - names
        if unknown:
            raise CGCNNError(f"unknown hyperparameter(s): {', '.join(sorted(unknown))}")
        values = {**self.hyperparams, "seed": self.seed, **overrides}
        if "lr_milestones" in values:
            values["lr_milestones"] = tuple(values["lr_milestones"])
        return TrainConfig(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, with the run store's column names (and the epochs always written out).

        ``model_kind`` is the convolution kind of the model trained: the pretrained model's, read from its
        checkpoint's header (None when the name is unknown: the run then fails with the reason).
        """
        data = {**dataclasses.asdict(self), "model_kind": self.model_kind()}
        # The epochs are written out: the store (a lower layer) estimates durations from them without knowing
        # the training default; the spec key drops values equal to the defaults, so this changes no key.
        # A baseline writes none: it trains no epochs, and the queue's estimates then count its set-up only.
        data["hyperparams"] = {"epochs": self.epochs, **data["hyperparams"]} if self.epochs else {}
        return data

    def model_kind(self) -> str | None:
        """The convolution kind this spec trains (scratch: the default gated layer); None for an unknown model.

        Read from the checkpoint's header (cached per file), so a spec's dict costs no model load.
        """
        if self.is_scratch:
            return ModelConfig().conv
        if is_baseline(self.pretrained):
            return self.pretrained  # no convolution: the baseline's own name
        try:
            return model_config(self.pretrained).conv
        except (CGCNNError, OSError, sqlite3.Error):  # the run itself reports an unusable model with the reason
            return None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneSpec:
        """Inverse of :meth:`to_dict` (extra keys such as ``model_kind`` or ``split_hash`` are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class FinetuneOutcome:
    """What a finished fine-tune produced (a baseline's: a ``BaselinePredictor``, and a result without a model)."""

    run_id: str | None
    predictor: Predictor
    result: TrainResult
    report: FreezeReport
    split: Split
    skipped: list[tuple[str, str]]
    seconds: float
    test_ids: list[str]
    test_true: np.ndarray


ProgressCallback = Callable[[str, float], None]


def load_data(data: str | None) -> CrystalDataset:
    """The dataset of a spec: the embedded default, or a user's CGCNN folder or zip."""
    if data is None:
        return load_default_dataset()
    path = Path(data)
    if path.is_dir():
        return read_cgcnn_folder(path)
    if path.suffix.lower() == ".zip" and path.is_file():
        return read_zip_once(path)  # parsed once, then loaded from the dataset kept beside it
    raise CGCNNError(f"{data}: not a CGCNN data folder (id_prop.csv + CIFs) or a .zip of one")


def run_finetune(
    spec: FinetuneSpec,
    store: RunStore | None = None,
    run_id: str | None = None,
    owner: str = "",
    on_epoch: Callable[[EpochStats], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress: ProgressCallback | None = None,
) -> FinetuneOutcome:
    """Run one fine-tune (or scratch training) end to end.

    Args:
        spec: what to run.
        store: run store to record it in (None: nothing is stored, nothing written to disk but the cache).
        run_id: an existing queued run to execute (the job runner's case); by default a new run is created.
        owner: display name recorded with a new run.
        on_epoch: called after every epoch (progress bars, live curves).
        should_stop: polled after every epoch; True cancels cleanly, keeping the finished epochs.
        progress: ``(stage, fraction)`` while loading data and featurising.

    Raises:
        CGCNNError: invalid choices (unknown model, freeze depth, target, sizes) or unusable data; when a run
            is being recorded it is marked failed with the same message first.
    """
    started = time.perf_counter()
    beat = None
    if store is not None and run_id is None:
        run_id = store.create_run(spec.to_dict(), owner=owner, status="running")
        # A direct run (the CLI) heartbeats from a thread, data loading included, and obeys the time limit;
        # a job runner's worker does both itself. The limit interrupts the main thread, so the import torch's
        # optimiser makes on its first step (torch._dynamo, then sympy: seconds) is done first: an interrupt
        # inside it would leave those modules half-imported for the rest of the process.
        import torch._dynamo  # noqa: F401

        beat = Heartbeat(store, run_id, max_s=current_limits().max_run_seconds, on_overtime=_thread.interrupt_main)
        beat.start()
    elif store is not None and run_id is not None:
        store.mark_running(run_id)

    def stop_check() -> bool:
        # The time limit, checked after every epoch: interrupt_main above cannot reach a process that ignores
        # SIGINT (a job started in the background by a non-interactive shell, as CI does).
        if beat is not None and beat.overtime:
            raise CGCNNError(overtime_message(current_limits().max_run_seconds))
        return bool(should_stop and should_stop())

    try:
        outcome = _run(spec, store, run_id, on_epoch, stop_check, progress, started)
    except BaseException as exc:  # record why the run ended, then let the caller see the error
        if store is not None and run_id is not None:
            message = str(exc) if isinstance(exc, CGCNNError) else f"{type(exc).__name__}: {exc}"
            try:
                cancelled = isinstance(exc, KeyboardInterrupt) or store.cancel_requested(run_id)
                if beat is not None and beat.overtime:
                    cancelled, message = False, overtime_message(current_limits().max_run_seconds)
                store.finish(
                    run_id,
                    "cancelled" if cancelled else "failed",
                    error=message,
                    seconds=time.perf_counter() - started,
                    only_if_active=True,
                )
            except CGCNNError:  # the store itself failed (a full disk): the first error is the one to report
                pass
        if beat is not None and beat.overtime:
            raise CGCNNError(overtime_message(current_limits().max_run_seconds)) from exc
        raise
    finally:
        if beat is not None:
            beat.stop()
    return outcome


def _run(
    spec: FinetuneSpec,
    store: RunStore | None,
    run_id: str | None,
    on_epoch: Callable[[EpochStats], None] | None,
    should_stop: Callable[[], bool] | None,
    progress: ProgressCallback | None,
    started: float,
) -> FinetuneOutcome:
    if progress:
        progress("loading data", 0.0)
    dataset = spec.validate()  # the same checks as the CLI, the queue, the app and the sweep (loads the data)
    if is_baseline(spec.pretrained):
        return _run_baseline(spec, dataset, store, run_id, progress, started)
    config = spec.train_config()
    if config.threads:
        torch.set_num_threads(config.threads)
    pretrained = None if spec.is_scratch else cached_model(spec.pretrained)
    params = pretrained.graph_params if pretrained is not None else GraphParams()
    options = BuildOptions(max_atoms=current_limits().max_atoms)  # the server's atom limit, never saved

    target = resolve_target(dataset, spec.target)
    split = make_split(dataset, target, spec.n_train, spec.n_val, spec.n_test, split_seed=spec.split_seed)
    if store is not None and run_id is not None:
        store.update(
            run_id,
            split_hash=split.content_hash,
            target=target,
            torch_threads=torch.get_num_threads(),
            cpu_capability=cpu_capability(),
            model_kind=pretrained.model.config.conv if pretrained is not None else ModelConfig().conv,
        )

    (train, val, test), failures = labelled_split(
        dataset,
        split,
        [target],
        params,
        progress=(lambda f: progress("featurising", f)) if progress else None,
        options=options,
    )
    skipped = list(dataset.rejected) + list(failures)  # reported, never silently lost
    model, report = prepare_transfer(
        pretrained.model if pretrained is not None else None,
        spec.freeze,
        [target],
        warm_start=spec.warm_start,
        seed=spec.seed,
        keep_all_convs=keeps_all_convolutions(spec.strategy),
    )
    strategy = make_strategy(spec.strategy, model, config, report.freeze, report.pretrained_layers)

    def callback(stats: EpochStats) -> bool:
        if store is not None and run_id is not None:
            store.add_epoch(
                run_id,
                stats.epoch,
                stats.train_loss,
                stats.train_mae,
                stats.val_loss,
                stats.val_mae,
                stats.seconds,
                stats.lr,
            )
            store.heartbeat(run_id)
        if on_epoch is not None:
            on_epoch(stats)
        stop = bool(should_stop and should_stop())
        if store is not None and run_id is not None:
            stop = stop or store.cancel_requested(run_id)
        return stop

    if progress:
        progress("training", 0.0)
    if store is not None and run_id is not None:
        _record_setup(store, run_id)
    result = train_model(
        model, train, val, test, config, callback=callback, frozen_depth=report.freeze, strategy=strategy
    )
    seconds = time.perf_counter() - started
    predictor = Predictor(
        model=result.model,
        normalizer=result.normalizer,
        graph_params=params,
        card=_card(spec, run_id, target, result, report, split, seconds, len(train.ids)),
    )
    if store is not None and run_id is not None:
        path = save_checkpoint(store.run_dir(run_id) / "model.pt", predictor)
        rows = [
            (i, "test", float(t), float(p))
            for i, t, p in zip(test.ids, test.targets[:, 0], result.test.predictions[:, 0], strict=True)
        ]
        store.add_predictions(run_id, rows)
        if not result.cancelled and predictor.model.config.classification is False:
            _calibrate_run(store, run_id, predictor, path, train, val)
        store.finish(
            run_id,
            "cancelled" if result.cancelled else "done",
            test_mae=result.test.mae,
            test_metrics={
                "test_mae": result.test.mae,
                "best_epoch": result.best_epoch,
                "epochs_run": len(result.history),
                "frozen_params": report.frozen_params,
                "trainable_params": report.trainable_params,
                "skipped": len(skipped),
            },
            seconds=seconds,
            checkpoint_path=str(path),
        )
    return FinetuneOutcome(
        run_id=run_id,
        predictor=predictor,
        result=result,
        report=report,
        split=split,
        skipped=skipped,
        seconds=seconds,
        test_ids=test.ids,
        test_true=test.targets[:, 0],
    )


def _run_baseline(
    spec: FinetuneSpec,
    dataset: CrystalDataset,
    store: RunStore | None,
    run_id: str | None,
    progress: ProgressCallback | None,
    started: float,
) -> FinetuneOutcome:
    """A baseline run: the same split and featurised crystals as a network's, a fit instead of epochs.

    The crystals come through the graph cache with the default graph parameters, so a crystal a scratch
    network cannot featurise is left out here too and both score the same test crystals. The run has no
    epochs; its model file is the fit's inputs (:mod:`cgcnn.nn.baseline`), its test predictions are stored
    as every run's are.
    """
    target = resolve_target(dataset, spec.target)
    split = make_split(dataset, target, spec.n_train, spec.n_val, spec.n_test, split_seed=spec.split_seed)
    if store is not None and run_id is not None:
        store.update(run_id, split_hash=split.content_hash, target=target, model_kind=spec.pretrained)
    params = GraphParams()
    options = BuildOptions(max_atoms=current_limits().max_atoms)
    ids = list(split.train) + list(split.val) + list(split.test)
    graphs, failures = cached_graphs(
        dataset, ids, params, progress=(lambda f: progress("featurising", f)) if progress else None, options=options
    )
    skipped = list(dataset.rejected) + list(failures)

    def block(part: list[str]) -> tuple[list[str], list, np.ndarray]:
        keep = [i for i in part if i in graphs]
        return keep, [graphs[i] for i in keep], dataset.labels.loc[keep, target].to_numpy(dtype=np.float64)

    train, val, test = block(split.train), block(split.val), block(split.test)
    if progress:
        progress("fitting", 0.0)
    if store is not None and run_id is not None:
        _record_setup(store, run_id)
    fit_started = time.perf_counter()
    baseline = fit_baseline(spec.pretrained, target, train, val)
    fit_seconds = time.perf_counter() - fit_started
    predictor = BaselinePredictor(baseline=baseline, card=ModelCard("", "run", "", "", None, None, "", ""))
    test_pred = predictor.predict_graphs(test[1])[:, 0]
    test_true = test[2]
    labelled = np.isfinite(test_true)
    mae = float(np.mean(np.abs(test_pred[labelled] - test_true[labelled])))
    seconds = time.perf_counter() - started
    evaluation = Evaluation(loss=float("nan"), mae=mae, mae_per_target={target: mae}, predictions=test_pred[:, None])
    result = TrainResult(
        model=None, normalizer=None, history=[], best_epoch=0, test=evaluation, cancelled=False, seconds=fit_seconds
    )
    report = FreezeReport(0, 0, 0, [], [], [])
    predictor.card = _card(spec, run_id, target, result, report, split, seconds, len(baseline.train_ids))
    predictor.card.details.update({"baseline": spec.pretrained, "fit_seconds": fit_seconds, "n_iter": baseline.n_iter})
    if store is not None and run_id is not None:
        path = baseline.save(store.run_dir(run_id) / BASELINE_FILE, card=predictor.card)
        store.add_predictions(
            run_id, [(i, "test", float(t), float(p)) for i, t, p in zip(test[0], test_true, test_pred, strict=True)]
        )
        store.finish(
            run_id,
            "done",
            test_mae=mae,
            test_metrics={
                "test_mae": mae,
                "best_epoch": 0,
                "epochs_run": 0,
                "frozen_params": 0,
                "trainable_params": 0,
                "skipped": len(skipped),
                "fit_seconds": fit_seconds,
                "n_iter": baseline.n_iter,
            },
            seconds=seconds,
            checkpoint_path=str(path),
        )
    return FinetuneOutcome(
        run_id=run_id,
        predictor=predictor,
        result=result,
        report=report,
        split=split,
        skipped=skipped,
        seconds=seconds,
        test_ids=test[0],
        test_true=test_true,
    )


def _calibrate_run(store: RunStore, run_id: str, predictor: Predictor, path: Path, train, val) -> None:
    """Calibrate a finished run on its validation block (``model.calibration.npz`` beside ``model.pt``).

    The validation predictions go to the store (``split='val'``). A block too small to calibrate leaves the run
    without intervals (its predictions say nothing about it), never without its model.
    """
    from cgcnn.nn.uncertainty import calibration_path, save_uncertainty
    from cgcnn.training.run_calibration import calibrate_run

    labels = val.targets[:, 0]
    try:
        uncertainty, val_pred = calibrate_run(predictor, path, train.graphs, val.graphs, labels)
    except CGCNNError:
        return
    save_uncertainty(calibration_path(path), uncertainty)
    store.add_predictions(
        run_id, [(i, "val", float(t), float(p)) for i, t, p in zip(val.ids, labels, val_pred, strict=True)]
    )


def labelled_split(
    dataset: CrystalDataset,
    split: Split,
    targets: list[str],
    params: GraphParams,
    progress: Callable[[float], None] | None = None,
    options: BuildOptions | None = None,
) -> tuple[tuple[LabelledGraphs, LabelledGraphs, LabelledGraphs], list[tuple[str, str]]]:
    """Train, validation and test sets of ``split`` with their cached graphs and ``targets`` labels.

    ``options`` are the caller's limits (default :class:`~cgcnn.data.graph.BuildOptions`).

    Returns:
        the three sets, and ``(id, reason)`` for each crystal the featuriser refused (left out of its set).
    """
    ids = list(split.train) + list(split.val) + list(split.test)
    graphs, failures = cached_graphs(dataset, ids, params, progress=progress, options=options)

    def labelled(part: list[str]) -> LabelledGraphs:
        keep = [i for i in part if i in graphs]
        values = dataset.labels.loc[keep, targets].to_numpy(dtype=np.float64)
        return LabelledGraphs(keep, GraphSet([graphs[i] for i in keep], params), values)

    return (labelled(split.train), labelled(split.val), labelled(split.test)), list(failures)


def execute_run(run_id: str, store: RunStore) -> None:
    """Job-runner entry point: execute the queued run ``run_id`` from its stored spec."""
    record = store.get(run_id)
    run_finetune(FinetuneSpec.from_dict(record.spec), store=store, run_id=run_id)


def _record_setup(store: RunStore, run_id: str) -> None:
    """Record how long the run took from being claimed (or started) to its first training step.

    A warm worker (:mod:`cgcnn.training.warm`) should take well under a second here; a cold process pays
    for imports, data and graphs. Stored as ``setup_seconds`` so the app and the benches can show it.
    """
    started_at = store.get(run_id).started_at
    if started_at is not None:
        store.update(run_id, setup_seconds=max(0.0, time.time() - started_at))


def resolve_target(dataset: CrystalDataset, target: str) -> str:
    """The label to learn: ``target``, or the only label of a user's one-column dataset, whatever its name."""
    if target in dataset.targets:
        return target
    if len(dataset.targets) == 1:  # a user's folder has one label column, whatever the spec calls it
        return dataset.targets[0]
    raise CGCNNError(f"unknown target {target!r}: this dataset has {', '.join(dataset.targets)}")


def _card(
    spec: FinetuneSpec,
    run_id: str | None,
    target: str,
    result: TrainResult,
    report: FreezeReport,
    split: Split,
    seconds: float,
    n_train: int,
) -> ModelCard:
    if is_baseline(spec.pretrained):
        origin = f"the {spec.pretrained} baseline (no network)"
    else:
        origin = "trained from scratch" if spec.is_scratch else f"fine-tuned from {spec.pretrained}"
    if spec.strategy != DEFAULT_STRATEGY:
        origin += f" ({spec.strategy})"
    return ModelCard(
        name=f"run:{run_id}" if run_id else "unsaved run",
        kind="run",
        property=target.replace("_", " "),
        units=TARGET_UNITS.get(target, ""),
        train_size=n_train,
        mae=result.test.mae if result.test else None,
        mae_metric=f"test MAE on {len(split.test)} crystals",
        source=f"{origin}, freeze {spec.freeze}, on {spec.data or 'the default Materials Project dataset'}",
        targets=[target],
        details={
            "spec": spec.to_dict(),
            "split_hash": split.content_hash,
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "seconds": seconds,
            "frozen_params": report.frozen_params,
            "trainable_params": report.trainable_params,
        },
    )
