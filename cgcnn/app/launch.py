"""Launching fine-tunes from the app: specs from the form, checked before anything is queued.

A spec that would fail (unknown model, freeze depth beyond the model, sizes larger than the dataset) is refused
here with one message, so a student never waits in the queue for an error.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cgcnn.app.classroom import start_runner
from cgcnn.app.uploads import MAX_UPLOAD_MB, MAX_ZIP_UPLOAD_BYTES
from cgcnn.errors import CGCNNError
from cgcnn.runs.estimates import format_duration
from cgcnn.runs.store import RunStore, compute_spec_key
from cgcnn.settings import LimitExceeded
from cgcnn.training.finetune import FinetuneSpec, load_data
from cgcnn.training.protocol import RunProtocol
from cgcnn.training.strategies import DEFAULT_STRATEGY, SETTING_DEFAULTS, SETTINGS
from cgcnn.training.transfer import is_scratch
from cgcnn.zoo import model_config


def freeze_choices(
    model_names: list[str], store: RunStore | None = None, strategy: str = DEFAULT_STRATEGY
) -> list[int]:
    """Freeze depths a form can offer for ``model_names``: 0 to the deepest model's ``n_conv``.

    Only 0 when every model is scratch or unreadable, or for ``discriminative`` (every layer trains);
    :meth:`FinetuneSpec.validate` refuses a depth beyond a chosen model's own ``n_conv``.
    """
    if strategy == "discriminative":
        return [0]
    deepest = 0
    for name in model_names:
        if is_scratch(name):
            continue
        try:
            deepest = max(deepest, model_config(name, store).n_conv)
        except CGCNNError:
            continue  # the launch reports an unusable model with its reason
    return list(range(deepest + 1))


@dataclass(frozen=True)
class StrategySetting:
    """The one number a strategy's form asks for, with the widget's bounds (the checks are the spec's)."""

    field: str
    label: str
    help: str
    default: float | int
    min_value: float | int
    max_value: float | int
    step: float | int
    format: str


_SETTING_LABELS = {
    "lr_decay": "Learning-rate factor per block",
    "unfreeze_every": "Unfreeze one more block every (epochs)",
    "lp_epochs": "Epochs of the head alone",
    "l2sp_alpha": "Pull towards the pretrained weights (alpha)",
}


def strategy_setting(strategy: str) -> StrategySetting | None:
    """The setting the form shows for ``strategy`` (None for ``freeze``, whose setting is the freeze depth)."""
    if strategy not in SETTINGS:
        return None
    field, _, meaning = SETTINGS[strategy]
    default = SETTING_DEFAULTS[field]
    label = _SETTING_LABELS[field]
    if isinstance(default, int):
        return StrategySetting(field, label, meaning, default, 1, 500, 1, "%d")
    if field == "lr_decay":
        return StrategySetting(field, label, meaning, default, 0.01, 1.0, 0.05, "%.2f")
    return StrategySetting(field, label, meaning, default, 0.0001, 100.0, 0.005, "%.4f")


# --------------------------------------------------------------------------------------------------- launching


@dataclass
class LaunchResult:
    """What a launch did: entries queued (or joined), answered at once from the store, and refused (why)."""

    run_ids: list[str]
    refused: list[tuple[str, str]]
    reused: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the page: ``Queued 2 run(s): a, b; 1 answered at once from an identical finished run``."""
        queued = [r for r in self.run_ids if r not in self.reused]
        parts = []
        if queued:
            parts.append(f"Queued {len(queued)} run(s): {', '.join(queued)}")
        if self.reused:
            parts.append(
                f"{len(self.reused)} answered at once from an identical finished run: {', '.join(self.reused)}"
            )
        return "; ".join(parts) or "Nothing was queued"


def make_specs(
    pretrained: list[str],
    freezes: list[int],
    protocol: RunProtocol,
    seeds: list[int],
    data: str | None = None,
    strategy: str = DEFAULT_STRATEGY,
    settings: dict[str, Any] | None = None,
) -> list[FinetuneSpec]:
    """One :class:`~cgcnn.training.finetune.FinetuneSpec` of ``protocol`` per (model, freeze, seed) combination.

    ``strategy`` and its ``settings`` (``{"l2sp_alpha": 0.05}``) apply to the pretrained models; a scratch model
    has nothing pretrained and trains as always, as the sweep's baseline does.
    """
    settings = settings or {}

    def spec(model: str, freeze: int, seed: int) -> FinetuneSpec:
        if is_scratch(model):
            return FinetuneSpec.from_protocol(protocol, pretrained=model, freeze=freeze, seed=seed, data=data)
        return FinetuneSpec.from_protocol(
            protocol,
            pretrained=model,
            freeze=freeze,
            seed=seed,
            data=data,
            strategy=strategy,
            hyperparams=dict(settings),
        )

    return [
        spec(model, int(freeze), int(seed))
        for model, freeze, seed in itertools.product(pretrained, sorted(set(freezes)), sorted(set(seeds)))
    ]


@dataclass
class LaunchPreview:
    """What "Queue runs" will do, said before it is clicked."""

    n_runs: int
    n_reused: int
    training_seconds: float

    def summary(self) -> str:
        """One line, e.g. ``Queues 3 runs (1 answered at once ...), about 2 min of training.``."""
        reused = f" ({self.n_reused} answered at once from an identical finished run)" if self.n_reused else ""
        s = "" if self.n_runs == 1 else "s"
        return f"Queues {self.n_runs} run{s}{reused}, about {format_duration(self.training_seconds)} of training."


def preview(store: RunStore, specs: list[FinetuneSpec], force: bool = False) -> LaunchPreview:
    """How many runs ``specs`` queue, how many an identical finished run answers at once, and the training time.

    The time comes from the one speed model (:meth:`RunStore.speed`), as the queue's ETAs and the progress do.
    With ``force`` (*Train again*) nothing is answered at once: every run trains.
    """
    speed = store.speed()
    reused, seconds = 0, 0.0
    for spec in specs:
        if not force and store.find_done(compute_spec_key(spec.to_dict())) is not None:
            reused += 1
            continue
        seconds += speed.run_seconds(spec.n_train + spec.n_val, spec.epochs) - speed.setup_seconds
    return LaunchPreview(n_runs=len(specs), n_reused=reused, training_seconds=seconds)


def describe_spec(spec: FinetuneSpec) -> str:
    """Short label of a spec: ``band-gap, freeze 2, seed 0`` (``band-gap, freeze 0, l2sp, seed 0``)."""
    model = "scratch" if spec.is_scratch else spec.pretrained
    strategy = "" if spec.strategy == DEFAULT_STRATEGY else f", {spec.strategy}"
    return f"{model}, freeze {spec.freeze}{strategy}, seed {spec.seed}"


def launch(store: RunStore, specs: list, owner: str, force: bool = False) -> LaunchResult:
    """Validate every spec (:meth:`FinetuneSpec.validate`), launch the valid ones, and wake the runner.

    The store answers a spec whose identical computation already finished at once (an entry that reuses it),
    joins one queued or running, or queues a new run; ``force`` ("train again") always queues a new one. Past
    the per-user limit the store refuses: what was launched before stays, the rest is listed as refused.

    Raises:
        CGCNNError: no combination at all, or none valid or accepted (the message lists why).
    """
    if not specs:
        raise CGCNNError("choose at least one model, one freeze depth and one seed")
    if len(specs) > 200:
        raise CGCNNError(f"{len(specs)} runs at once is too many (at most 200): choose fewer combinations")
    datasets: dict[str | None, Any] = {}
    refused, valid = [], []
    for spec in specs:
        try:
            if spec.data not in datasets:
                datasets[spec.data] = load_data(spec.data)
            spec.validate(datasets[spec.data])
        except CGCNNError as exc:
            refused.append((describe_spec(spec), str(exc)))
        else:
            valid.append(spec)
    ids, reused = [], []
    for k, spec in enumerate(valid):
        try:
            record = store.launch(spec.to_dict(), owner=owner, force=force)
        except LimitExceeded as exc:
            refused.extend((describe_spec(s), str(exc)) for s in valid[k:])
            break
        ids.append(record.id)
        if record.source_run_id is not None and record.status == "done":
            reused.append(record.id)
    if not ids:
        reasons = "; ".join(f"{label}: {why}" for label, why in refused)
        raise CGCNNError(f"nothing was queued: {reasons}")
    runner = start_runner(store)
    if runner is not None:
        runner.wake()
    return LaunchResult(ids, refused, reused)


def save_upload(store: RunStore, data: bytes, filename: str, owner: str = "") -> tuple[Path, Any]:
    """Check an uploaded CGCNN-folder zip and keep it as ``<home>/uploads/<sha256>.zip``, parsed once.

    The zip is parsed in the capped parser pool (never in the server: a hostile CIF cannot stall the other
    sessions) and its dataset is kept beside it by content hash, so a page rerun, and every job worker that
    trains on it, loads arrays instead of parsing again.

    The disk is guarded (:mod:`cgcnn.app.upload_space`): a new zip past ``owner``'s or the class's upload
    quota, or below the free-space floor, is refused before it is written, and old unused uploads are removed.

    Returns:
        ``(path to pass as FinetuneSpec.data, the dataset read from it)``.

    Raises:
        CGCNNError: too large, not a zip, past a zip cap, a damaged member, not in the CGCNN folder format, or
            the disk refused it (message from the reader or the storage).
    """
    from cgcnn.data.folders import read_zip_once
    from cgcnn.data.parse_pool import shared_pool
    from cgcnn.storage import storage_errors

    if len(data) > MAX_ZIP_UPLOAD_BYTES:
        raise CGCNNError(f"{filename} is {len(data) / 1024**2:.1f} MB; uploads are limited to {MAX_UPLOAD_MB} MB")
    if not filename.lower().endswith(".zip"):
        raise CGCNNError(f"{filename}: upload a .zip of a CGCNN data folder (id_prop.csv and <id>.cif files)")
    from cgcnn.app import upload_space

    folder = store.home / "uploads"
    path = folder / f"{hashlib.sha256(data).hexdigest()[:32]}.zip"
    with storage_errors(f"saving {filename}"):
        upload_space.remove_unused(store)
        upload_space.check_room(store, path, len(data), owner, filename)
        folder.mkdir(parents=True, exist_ok=True)
        if not path.is_file():
            tmp = path.with_suffix(".part")
            try:
                tmp.write_bytes(data)
                tmp.replace(path)
            finally:
                tmp.unlink(missing_ok=True)
    cached = path.with_name(path.name + ".dataset.npz")
    try:
        if not cached.is_file():
            shared_pool().read_zip(path)
        dataset = read_zip_once(path)
    except CGCNNError as exc:
        path.unlink(missing_ok=True)
        raise CGCNNError(str(exc).replace(path.name, filename).replace("uploaded zip", filename)) from None
    if len(dataset) == 0:
        raise CGCNNError(f"{filename}: no usable crystal in the zip")
    with storage_errors(f"saving {filename}"):
        upload_space.record_owner(path, owner)
    return path, dataset
