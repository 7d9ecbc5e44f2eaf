"""Multi-property pretraining: one network learns several targets at once, for this project's model zoo.

The study pretrains a CGCNN on several Materials Project properties together and transfers it to the band gap.
:func:`pretrain` does that on the default dataset:

- crystals: by default the union, over the targets, of :func:`cgcnn.data.splits.pretraining_ids` (every crystal
  with the target, minus the canonical band-gap test block of the same ``split_seed`` and, with
  ``exclude_twins``, minus every structure twin of a crystal in that block), so no pretrained model has seen a
  crystal on which a band-gap fine-tune is tested; or an explicit id list; or ``matched:NAME``,
  exactly the crystals (and roles) another zoo model was pretrained on (the study's control: one target on the
  data of the combined model);
- a crystal missing some labels still teaches the others (the trainer's masked MSE); each target has its
  own normaliser (fitted ignoring NaN) and its own test MAE;
- its own deterministic validation/test split of those crystals (see :func:`split_ids`), recorded on the card
  with its hash and the test ids, so the card's numbers can be re-evaluated; or a split by chemistry
  (``split="chemistry:iron-triad"``: every crystal containing Fe, Co or Ni is the test block and none is
  trained on) and its random control of the same block sizes (``"random-like:iron-triad"``), whose two test
  MAEs measure how much worse a model does on chemistry it never saw (the cards' ``shift_penalty``);
- resumable: after every epoch the whole training state goes to ``NAME.resume.pt`` beside the output, and a
  second call continues from it (the result is the same as an uninterrupted run).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cgcnn.data.datasets import TARGET_UNITS, CrystalDataset, load_default_dataset
from cgcnn.data.graph import GraphParams
from cgcnn.data.splits import Split, dataset_elements, family_members, parse_split_rule, pretraining_ids, rule_split
from cgcnn.errors import CGCNNError
from cgcnn.nn.cards import ModelCard
from cgcnn.nn.checkpoint import save_checkpoint
from cgcnn.nn.layers import CONV_LAYERS
from cgcnn.nn.model import CrystalGraphConvNet, ModelConfig
from cgcnn.nn.predictor import Predictor
from cgcnn.training.finetune import labelled_split
from cgcnn.training.train import EpochStats, LabelledGraphs, TrainConfig, TrainResult, TrainState, train_model

#: The study's combined pretraining targets available in the default dataset (no total energy there).
DEFAULT_TARGETS = ("formation_energy_per_atom", "log10_K_VRH", "log10_G_VRH")
#: Format tag of the resume file.
RESUME_FORMAT = "cgcnn-pretrain-resume"

#: Caveat written on every card of a model pretrained here.
DATA_NOTE = (
    "Pretrained on this project's default dataset, which is much smaller than the study's Materials Project "
    "data: about 5,300 crystals after removing the band-gap fine-tune test block, elastic moduli on only about "
    "1,000 of them, and no total energy. Errors are therefore larger than the study's and the original CGCNN's."
)


class PretrainStopped(CGCNNError):
    """Training was stopped by the ``on_epoch`` callback; the resume file holds the finished epochs."""


#: Fields of a :class:`PretrainSpec`'s model as specs and cards store them (flat, beside the training fields).
_MODEL_KEYS = ("targets", "conv", "heads", "conv_options", "atom_fea_len", "n_conv", "h_fea_len", "n_h")


@dataclass
class PretrainSpec:
    """Everything that defines a pretraining (stored on the card; equal specs give the same model).

    Attributes:
        model: the architecture, whose ``targets`` are the labels learnt together (one output each); default
            :meth:`~cgcnn.nn.model.ModelConfig.original_checkpoints` on :data:`DEFAULT_TARGETS`. Attention heads
            are ``model.conv_options["heads"]``.
        epochs: passes over the training crystals.
        seed: model initialisation and data order.
        split_seed: the band-gap test block that is excluded *and* the permutation of the validation/test split.
        val_fraction, test_fraction: shares of the crystals in the validation and test blocks.
        ids: ``"pretraining"`` (see the module docstring), ``"matched:NAME"``, or an explicit list of ids.
        split: how those crystals are cut: ``random``, ``chemistry:FAMILY`` or ``random-like:FAMILY`` (see
            :func:`cgcnn.data.splits.rule_split`).
        exclude_twins: with ``ids="pretraining"``, also leave out the structure twins of the band-gap test block
            (:mod:`cgcnn.data.dedup`). True for new pretrainings; a stored spec without the key predates the
            rule (the committed zoo models) and reads as False, so its split is still reproduced. Always False
            for other ``ids`` (an explicit list is used as given; ``matched:`` follows its source).
        hyperparams: further :class:`~cgcnn.training.train.TrainConfig` fields (batch_size, lr, optimizer, threads...).
        name: the model's zoo name (not part of the fingerprint).
    """

    model: ModelConfig = field(default_factory=lambda: ModelConfig.original_checkpoints(targets=list(DEFAULT_TARGETS)))
    epochs: int = 30
    seed: int = 0
    split_seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    ids: str | list[str] = "pretraining"
    split: str = "random"
    exclude_twins: bool = True
    hyperparams: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        if self.ids != "pretraining":
            self.exclude_twins = False  # an explicit list is taken as given; matched: follows its source
        model = self.model
        if not model.targets:
            raise CGCNNError("pretraining needs at least one target")
        if len(set(model.targets)) != len(model.targets):
            raise CGCNNError(f"duplicate targets in {', '.join(model.targets)}")
        if model.conv not in CONV_LAYERS:
            raise CGCNNError(f"unknown convolution {model.conv!r}: choose from {', '.join(CONV_LAYERS)}")
        if self.heads < 1:
            raise CGCNNError(f"heads must be 1 or more, got {self.heads}")
        if model.conv == "gated" and model.conv_options:
            raise CGCNNError("the gated convolution has no heads or options; use --conv attention for heads")
        if model.classification:
            raise CGCNNError("pretraining learns regression targets, not a classifier")
        if not (
            0 < self.val_fraction < 1 and 0 < self.test_fraction < 1 and self.val_fraction + self.test_fraction < 1
        ):
            raise CGCNNError("validation and test fractions must be in (0, 1) and leave crystals for training")
        rule = parse_split_rule(self.split)
        if rule.kind != "random" and isinstance(self.ids, str) and self.ids.startswith("matched:"):
            raise CGCNNError(f"--split {self.split} cannot be combined with {self.ids}, which fixes the roles")

    @property
    def targets(self) -> list[str]:
        """The labels learnt together (the model's outputs)."""
        return self.model.targets

    @property
    def heads(self) -> int:
        """Attention heads (1 for the gated layer)."""
        return int(self.model.conv_options.get("heads", 1))

    def model_config(self) -> ModelConfig:
        """The architecture (saved in the checkpoint, so the zoo and the transfer code rebuild it)."""
        return dataclasses.replace(self.model, targets=list(self.targets), conv_options=dict(self.model.conv_options))

    def train_config(self) -> TrainConfig:
        """The optimisation settings: :class:`TrainConfig` defaults, the spec's hyperparameters, epochs and seed."""
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = set(self.hyperparams) - names
        if unknown:
            raise CGCNNError(f"unknown hyperparameter(s): {', '.join(sorted(unknown))}")
        values = {**self.hyperparams, "epochs": self.epochs, "seed": self.seed}
        if "lr_milestones" in values:
            values["lr_milestones"] = tuple(values["lr_milestones"])
        return TrainConfig(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (stored on the card as ``details.spec``): the model's fields flat beside the others.

        The flat form is the one cards have always stored, so fingerprints and resume files of earlier
        pretrainings still match.
        """
        options = dict(self.model.conv_options)
        heads = options.pop("heads", 1)
        model = {"targets": list(self.targets), "conv": self.model.conv, "heads": heads, "conv_options": options}
        model |= {key: getattr(self.model, key) for key in ("atom_fea_len", "n_conv", "h_fea_len", "n_h")}
        rest = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}
        data = {**model, **copy.deepcopy(rest)}
        data["ids"] = self.ids if isinstance(self.ids, str) else list(self.ids)
        if data["split"] == "random":  # left out, so the specs and fingerprints of earlier cards stay as they were
            del data["split"]
        if not self.exclude_twins:  # the id-only rule: stored as it always was, so old fingerprints still match
            data.pop("exclude_twins")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PretrainSpec:
        """Inverse of :meth:`to_dict` (unknown keys from newer versions are ignored).

        Model fields left out take :meth:`~cgcnn.nn.model.ModelConfig.original_checkpoints`' values, and
        ``targets`` :data:`DEFAULT_TARGETS`; this is also how the command line builds a spec from its flags.
        """
        model = {key: data[key] for key in _MODEL_KEYS if key in data and key not in ("heads", "conv_options")}
        model.setdefault("targets", list(DEFAULT_TARGETS))
        options = dict(data.get("conv_options") or {})
        heads = data.get("heads", 1)
        if model.get("conv", "gated") != "gated" or heads != 1:  # gated with heads is refused by __post_init__
            options["heads"] = heads
        names = {f.name for f in dataclasses.fields(cls)} - {"model"}
        rest = {k: v for k, v in data.items() if k in names}
        rest.setdefault("exclude_twins", False)  # stored before the twin rule: the id-only rule it was trained with
        return cls(model=ModelConfig.original_checkpoints(**model, conv_options=options), **rest)

    def fingerprint(self) -> str:
        """Hash of everything that changes the trained weights (not the name, not the thread count)."""
        data = self.to_dict()
        data.pop("name")
        data["hyperparams"] = {k: v for k, v in data["hyperparams"].items() if k != "threads"}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------------------------
# Crystals and split
# --------------------------------------------------------------------------------------------------------------


def split_ids(
    ids: list[str], split_seed: int, val_fraction: float, test_fraction: float, label: str = "pretraining"
) -> Split:
    """Deterministic split of a pretraining set, the same rule as :func:`cgcnn.data.splits.canonical_order`.

    Sorted ids are permuted by ``default_rng(split_seed)``; the first ``round(n * test_fraction)`` are the
    test block, the next ``round(n * val_fraction)`` validation, the rest training.

    Raises:
        CGCNNError: too few crystals for three non-empty blocks.
    """
    ordered = sorted(set(ids))
    perm = np.random.default_rng(split_seed).permutation(len(ordered))
    order = [ordered[i] for i in perm]
    n_test = round(len(order) * test_fraction)
    n_val = round(len(order) * val_fraction)
    if n_test < 1 or n_val < 1 or len(order) - n_test - n_val < 2:
        raise CGCNNError(f"{len(order)} crystals are too few for a training/validation/test split")
    return Split(
        target=label,
        split_seed=split_seed,
        train=tuple(order[n_test + n_val :]),
        val=tuple(order[n_test : n_test + n_val]),
        test=tuple(order[:n_test]),
    )


def resolve_split(spec: PretrainSpec, dataset: CrystalDataset, zoo_dir: Path | None = None) -> tuple[Split, dict]:
    """The crystals of ``spec`` and their roles, plus a description of where they came from.

    Raises:
        CGCNNError: an unknown target or id, an unknown or inconsistent ``matched:`` source.
    """
    for target in spec.targets:
        if target not in dataset.labels.columns:
            raise CGCNNError(f"no target {target!r} in the dataset; it has: {', '.join(dataset.labels.columns)}")
    label = "+".join(spec.targets)
    labelled = dataset.labels[spec.targets].notna().any(axis=1)
    if spec.ids == "pretraining":
        ids = sorted(
            {cid for t in spec.targets for cid in pretraining_ids(dataset, t, spec.split_seed, spec.exclude_twins)}
        )
        split = split_ids(ids, spec.split_seed, spec.val_fraction, spec.test_fraction, label)
        rule = (
            f"union over the targets of datasets.pretraining_ids(split_seed={spec.split_seed}) (the band-gap "
            f"test block removed{' and its structure twins' if spec.exclude_twins else ''}); sorted, permuted by "
            "default_rng(split_seed); test, validation, training blocks"
        )
        origin: dict[str, Any] = {"rule": rule}
        if spec.exclude_twins:
            by_id = {cid for t in spec.targets for cid in pretraining_ids(dataset, t, spec.split_seed, False)}
            origin["twins_dropped"] = len(by_id) - len(ids)  # twins of the test block the id rule would keep
        return _by_rule(spec, dataset, ids, split, origin, label)
    if isinstance(spec.ids, str) and spec.ids.startswith("matched:"):
        source = spec.ids.split(":", 1)[1]
        card_path = (zoo_dir or _zoo_dir()) / f"{source}.json"
        if not card_path.is_file():
            raise CGCNNError(f"--train-ids {spec.ids}: no card {card_path.name} in {card_path.parent}")
        card = json.loads(card_path.read_text())
        details = card.get("details", {})
        if "spec" not in details:
            raise CGCNNError(f"--train-ids {spec.ids}: {source} was not pretrained here (its card has no spec)")
        source_spec = PretrainSpec.from_dict(details["spec"])
        source_split, _ = resolve_split(source_spec, dataset, zoo_dir)
        if source_split.content_hash != details.get("split", {}).get("hash"):
            raise CGCNNError(f"--train-ids {spec.ids}: the split of {source} cannot be reproduced on this dataset")

        def keep(part: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(cid for cid in part if labelled[cid])

        split = Split(
            label, source_spec.split_seed, keep(source_split.train), keep(source_split.val), keep(source_split.test)
        )
        rule = f"the crystals and roles of {source} (split {source_split.content_hash[:12]}) that have a label"
        return split, {"rule": rule, "matched_to": source, "matched_split_hash": source_split.content_hash}
    if isinstance(spec.ids, str):
        raise CGCNNError(f"ids must be 'pretraining', 'matched:NAME' or a list of crystal ids, not {spec.ids!r}")
    unknown = [cid for cid in spec.ids if cid not in dataset]
    if unknown:
        raise CGCNNError(f"{len(unknown)} id(s) not in the dataset, e.g. {unknown[0]!r}")
    ids = [cid for cid in spec.ids if labelled[cid]]
    split = split_ids(ids, spec.split_seed, spec.val_fraction, spec.test_fraction, label)
    origin = {"rule": f"explicit list of {len(spec.ids)} ids ({len(ids)} with a label); split as above"}
    return _by_rule(spec, dataset, ids, split, origin, label)


def _by_rule(
    spec: PretrainSpec, dataset: CrystalDataset, ids: list[str], random_split: Split, origin: dict, label: str
) -> tuple[Split, dict]:
    """``random_split`` for the random rule (as always), else the split of ``spec.split`` on the same crystals."""
    rule = parse_split_rule(spec.split)
    if rule.kind == "random":
        return random_split, origin
    elements = dataset_elements(dataset, ids)
    split = rule_split(rule, elements, spec.split_seed, spec.val_fraction, spec.test_fraction, label)
    shift = {
        "split_rule": str(rule),
        "family": rule.family,
        "family_elements": sorted(rule.elements),
        "n_family": len(family_members(elements, rule.elements)),
    }
    return split, {**origin, **shift}


# --------------------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------------------


def resume_path(out_path: str | Path) -> Path:
    """Where the resume state of a pretraining writing ``out_path`` lives (beside it)."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.stem + ".resume.pt")


def pretrain(
    spec: PretrainSpec,
    out_path: str | Path,
    resume: bool = True,
    on_epoch: Callable[[EpochStats], bool | None] | None = None,
    dataset: CrystalDataset | None = None,
) -> ModelCard:
    """Pretrain a model on ``spec.targets`` and write ``out_path`` (checkpoint) and its card (``.json`` beside).

    Args:
        spec: what to train.
        out_path: the checkpoint to write, e.g. ``pretrained/own-combined.pt``.
        resume: continue from ``NAME.resume.pt`` beside ``out_path`` if it belongs to the same spec and data,
            or return the existing card if ``out_path`` was already trained from them (False: start over).
        on_epoch: called after every epoch; returning True stops training (the resume file keeps the finished
            epochs) and raises :class:`PretrainStopped`.
        dataset: the crystals (default: the embedded default dataset).

    Returns:
        The model card, also written as JSON beside the checkpoint.

    Raises:
        CGCNNError: invalid spec or data; :class:`PretrainStopped` when ``on_epoch`` stopped training.
    """
    out_path = Path(out_path)
    config = spec.train_config()
    if config.threads:
        torch.set_num_threads(config.threads)
    dataset = dataset or load_default_dataset()
    params = GraphParams()
    split, origin = resolve_split(spec, dataset, out_path.parent)
    (train, val, test), failures = labelled_split(dataset, split, list(spec.targets), params)
    torch.manual_seed(spec.seed)
    model = CrystalGraphConvNet(spec.model_config())

    key = f"{spec.fingerprint()}-{dataset.content_hash[:16]}-{split.content_hash[:16]}"
    done = _finished_card(out_path, spec, dataset.content_hash, split.content_hash) if resume else None
    if done is not None:  # the same spec on the same data and split: already trained, nothing to resume
        return done
    state_file = resume_path(out_path)
    resume_state = _read_resume(state_file, key) if resume else None
    if not resume:
        state_file.unlink(missing_ok=True)

    def on_checkpoint(state: TrainState) -> None:
        state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = state_file.with_suffix(".tmp")
        torch.save({"format": RESUME_FORMAT, "key": key, "state": state}, tmp)
        tmp.replace(state_file)

    result = train_model(
        model, train, val, test, config, callback=on_epoch, resume_state=resume_state, on_checkpoint=on_checkpoint
    )
    if result.cancelled:
        raise PretrainStopped(
            f"pretraining stopped after epoch {result.history[-1].epoch}; run it again to resume from {state_file}"
        )
    card = _card(spec, out_path, dataset, split, origin, failures, result, (train, val, test), resume_state)
    predictor = Predictor(model=result.model, normalizer=result.normalizer, graph_params=params, card=card)
    save_checkpoint(out_path, predictor)
    out_path.with_suffix(".json").write_text(json.dumps(card.to_dict(), indent=2) + "\n")
    state_file.unlink(missing_ok=True)
    return card


def _finished_card(out_path: Path, spec: PretrainSpec, dataset_hash: str, split_hash: str) -> ModelCard | None:
    """The card of an existing ``out_path`` trained from the same spec, data and split, else None."""
    card_path = out_path.with_suffix(".json")
    if not (out_path.is_file() and card_path.is_file()):
        return None
    try:
        card = ModelCard.from_dict(json.loads(card_path.read_text()))
        same = (
            PretrainSpec.from_dict(card.details["spec"]).fingerprint() == spec.fingerprint()
            and card.details["data"]["dataset_hash"] == dataset_hash
            and card.details["split"]["hash"] == split_hash
        )
    except (ValueError, TypeError, KeyError, CGCNNError):
        return None
    return card if same else None


def _read_resume(path: Path, key: str) -> TrainState | None:
    """The saved state if it belongs to this spec, data and split; anything else is ignored with a warning."""
    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: start over rather than fail
        warnings.warn(f"ignoring unreadable resume file {path.name} ({type(exc).__name__})", stacklevel=3)
        return None
    if not isinstance(data, dict) or data.get("format") != RESUME_FORMAT or data.get("key") != key:
        warnings.warn(f"ignoring {path.name}: it belongs to another spec or dataset", stacklevel=3)
        return None
    return data["state"]


def machine_info() -> dict[str, Any]:
    """Where a model was trained (its training time means little without it)."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": str(torch.__version__),
        "python": platform.python_version(),
    }


def _zoo_dir() -> Path:
    from cgcnn.zoo import pretrained_dir

    return pretrained_dir()


def _card(
    spec: PretrainSpec,
    out_path: Path,
    dataset: CrystalDataset,
    split: Split,
    origin: dict,
    failures: list[tuple[str, str]],
    result: TrainResult,
    parts: tuple[LabelledGraphs, LabelledGraphs, LabelledGraphs],
    resume_state: TrainState | None,
) -> ModelCard:
    train, val, test = parts
    assert result.test is not None
    counts = {
        role: {t: int(np.isfinite(part.targets[:, k]).sum()) for k, t in enumerate(spec.targets)}
        for role, part in (("train", train), ("val", val), ("test", test))
    }
    first = spec.targets[0]
    n_params = sum(p.numel() for p in result.model.parameters())
    conv_params = sum(p.numel() for p in result.model.convs[0].parameters())
    return ModelCard(
        name=spec.name or out_path.stem,
        kind="own",
        property=", ".join(t.replace("_", " ") for t in spec.targets),
        units=", ".join(TARGET_UNITS.get(t, "?") for t in spec.targets),
        train_size=len(train.ids),
        mae=result.test.mae_per_target[first],
        mae_metric=f"test MAE of {first} on {counts['test'][first]} crystals (every target: details.test_mae)",
        source="this project: python -m cgcnn pretrain (recipe: pretrained/train_zoo.sh)",
        task="regression",
        targets=list(spec.targets),
        notes=DATA_NOTE,
        details={
            "spec": spec.to_dict(),
            "conv": spec.model.conv,
            "heads": spec.heads,
            "parameters": n_params,
            "parameters_per_conv": conv_params,
            "data": {
                "dataset": dataset.name,
                "dataset_hash": dataset.content_hash,
                "n_crystals": len(train.ids) + len(val.ids) + len(test.ids),
                "labels": counts,
                "skipped": [list(f) for f in failures],
                "overlaps_band_gap_test_block": _band_gap_overlap(dataset, split, spec.split_seed),
                "twins_of_band_gap_test_block": _band_gap_twins(dataset, split, spec.split_seed),
            },
            "split": {
                **origin,
                "split_seed": split.split_seed,
                "sizes": {"train": len(split.train), "val": len(split.val), "test": len(split.test)},
                "hash": split.content_hash,
                "test_ids": list(test.ids),
            },
            "seed": spec.seed,
            "hyperparameters": {
                k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(spec.train_config()).items()
            },
            "epochs": len(result.history),
            "best_epoch": result.best_epoch,
            "test_mae": result.test.mae_per_target,
            "val_mae_history": [
                {"epoch": h.epoch, **{t: round(v, 6) for t, v in h.val_mae_per_target.items()}} for h in result.history
            ],
            "normalizer": result.normalizer.to_dict(),
            "training_seconds": round(sum(h.seconds for h in result.history), 1),
            "resumed_from_epoch": int(resume_state["epoch"]) if resume_state else None,
            "trained_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "machine": machine_info(),
        },
    )


def _band_gap_overlap(dataset: CrystalDataset, split: Split, split_seed: int) -> int:
    """Crystals of the pretraining set inside the band-gap test block (0 for the ``pretraining`` id rule)."""
    from cgcnn.data.splits import PROTOCOL_TARGET, canonical_blocks

    if PROTOCOL_TARGET not in dataset.labels.columns:
        return 0
    blocked = set(canonical_blocks(dataset, PROTOCOL_TARGET, split_seed).test)
    return sum(1 for cid in split.train + split.val + split.test if cid in blocked)


def _band_gap_twins(dataset: CrystalDataset, split: Split, split_seed: int) -> int:
    """Crystals of the pretraining set that are structure twins of the band-gap test block (0 with the twin rule)."""
    from cgcnn.data.splits import PROTOCOL_TARGET, twins_of_test_block

    if PROTOCOL_TARGET not in dataset.labels.columns:
        return 0
    twins = twins_of_test_block(dataset, split_seed)
    return sum(1 for cid in split.train + split.val + split.test if cid in twins)
