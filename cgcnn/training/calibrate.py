"""Calibrate a model (or a shipped ensemble) on its own validation block: ``python -m cgcnn calibrate``.

For one of this project's own models the crystals and roles are those of its card's spec (the same rule that
trained it, reproduced from the dataset and checked against the card's split hash). Its validation block gives
the conformal scores (plain split conformal on its absolute errors) and, with the training block, the
applicability domain. An ensemble's members must share that split; its validation block gives the scores of
the ensemble mean normalised by the ensemble's std. The validation block also chose each model's best epoch, so
coverage on it is slightly optimistic; the test block, which nothing here touches, is where it is measured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cgcnn.data.datasets import CrystalDataset, load_default_dataset
from cgcnn.data.graph import CrystalGraph, GraphParams
from cgcnn.data.splits import make_split
from cgcnn.errors import CGCNNError
from cgcnn.nn.conformal import fit_calibration
from cgcnn.nn.domain import fit_domain
from cgcnn.nn.predictor import Ensemble, Predictor
from cgcnn.nn.uncertainty import Uncertainty, calibration_path, file_sha256, save_uncertainty


@dataclass
class Block:
    """Crystals of one role: their ids, graphs and labels of the model's first target."""

    ids: list[str]
    graphs: list[CrystalGraph]
    labels: np.ndarray


def calibrate_model(model: Predictor, checkpoint: str | Path, train: Block, val: Block) -> Uncertainty:
    """One model's calibration: plain split conformal on ``val`` and the domain of ``train`` (pure: no files).

    Raises:
        CGCNNError: a classifier, or blocks too small to calibrate.
    """
    if model.model.config.classification:
        raise CGCNNError(f"{model.card.name}: a classifier gets no intervals")
    try:
        predictions = model.predict_graphs(val.graphs)[:, 0]
        calibration = fit_calibration(model.targets[0], val.labels, predictions)
        domain = fit_domain(model.pooled_features(train.graphs), model.pooled_features(val.graphs))
    except ValueError as exc:
        raise CGCNNError(f"{model.card.name}: {exc}") from None
    return Uncertainty([file_sha256(checkpoint)], calibration, domain)


def calibrate_ensemble(ensemble: Ensemble, checkpoints: list[str | Path], val: Block) -> Uncertainty:
    """An ensemble's calibration: split conformal on ``val`` normalised by the ensemble's std (pure: no files).

    It has no domain of its own: the members' domains give the distance.

    Raises:
        CGCNNError: blocks too small to calibrate.
    """
    mean, std, _ = ensemble.predict_spread(val.graphs)
    try:
        calibration = fit_calibration(ensemble.targets[0], val.labels, mean[:, 0], std[:, 0])
    except ValueError as exc:
        raise CGCNNError(f"{ensemble.name or 'ensemble'}: {exc}") from None
    return Uncertainty([file_sha256(p) for p in checkpoints], calibration, None)


def own_blocks(card_details: dict, target: str, dataset: CrystalDataset | None = None, zoo: Path | None = None):
    """``(train, val, test)`` :class:`Block` of an own model, from the spec on its card.

    Raises:
        CGCNNError: a card without a spec (not pretrained here) or a split that cannot be reproduced.
    """
    from cgcnn.training.pretrain import PretrainSpec, resolve_split
    from cgcnn.training.warm import cached_graphs
    from cgcnn.zoo import pretrained_dir

    if "spec" not in card_details:
        raise CGCNNError("its card has no pretraining spec: it was not trained here, so it has no validation block")
    dataset = dataset or load_default_dataset()
    spec = PretrainSpec.from_dict(card_details["spec"])
    split, _ = resolve_split(spec, dataset, zoo or pretrained_dir())
    if split.content_hash != card_details.get("split", {}).get("hash"):
        raise CGCNNError("its split cannot be reproduced on this dataset (another dataset version?)")
    params = GraphParams()
    graphs, _ = cached_graphs(dataset, list(split.train) + list(split.val) + list(split.test), params)
    column = dataset.labels[target]

    def block(ids: tuple[str, ...]) -> Block:
        keep = [cid for cid in ids if cid in graphs and np.isfinite(column[cid])]
        return Block(keep, [graphs[cid] for cid in keep], column[keep].to_numpy(dtype=np.float64))

    return block(split.train), block(split.val), block(split.test)


def own_test_dataset(name: str) -> CrystalDataset:
    """The test block of an own model, a shipped ensemble or a run (``run:ID``), as a dataset.

    What ``evaluate --test-block`` scores.

    Raises:
        CGCNNError: not an own model, ensemble or run, or see :func:`own_blocks` and :func:`run_test_dataset`.
    """
    from cgcnn.zoo import ensemble_manifests, pretrained_dir

    if name.startswith("run:"):
        return run_test_dataset(name[4:])
    folder = pretrained_dir()
    manifest = ensemble_manifests().get(name)
    card_name = manifest["members"][0] if manifest and manifest.get("members") else name
    card_path = folder / f"{card_name}.json"
    if not card_path.is_file() or not (folder / f"{card_name}.pt").is_file():
        raise CGCNNError(f"--test-block: {name} is not an own model or shipped ensemble in {folder}")
    card = json.loads(card_path.read_text())
    dataset = load_default_dataset()
    try:
        _, _, test = own_blocks(card.get("details", {}), card["targets"][0], dataset, folder)
    except CGCNNError as exc:
        raise CGCNNError(f"{name}: {exc}") from None
    return dataset.subset(test.ids, name=f"{name} test block")


def run_test_dataset(run_id: str) -> CrystalDataset:
    """The test block of a stored run, rebuilt from its spec (its data, target, sizes and split seed).

    Raises:
        CGCNNError: an unknown run, data that is gone, or a split that no longer matches the one the run was
            tested on (its recorded split hash).
    """
    from cgcnn.runs.store import RunStore
    from cgcnn.training.finetune import FinetuneSpec, load_data, resolve_target

    record = RunStore().get(run_id)
    spec = FinetuneSpec.from_dict(record.spec)
    dataset = load_data(spec.data)
    target = resolve_target(dataset, spec.target)
    split = make_split(dataset, target, spec.n_train, spec.n_val, spec.n_test, split_seed=spec.split_seed)
    if record.split_hash and record.split_hash != split.content_hash:
        raise CGCNNError(f"run {run_id}: its data changed since it ran (the split no longer matches its test block)")
    return dataset.subset(list(split.test), name=f"run:{run_id} test block")


def calibrate_own(name: str, folder: Path | None = None) -> Path:
    """Calibrate the own model ``name`` (``pretrained/NAME.pt``) and write ``NAME.calibration.npz`` beside it.

    Raises:
        CGCNNError: no such own model, or see :func:`own_blocks`.
    """
    from cgcnn.zoo import load_model, pretrained_dir

    folder = folder or pretrained_dir()
    checkpoint = folder / f"{name}.pt"
    if not checkpoint.is_file():
        raise CGCNNError(f"{name}: not an own model in {folder} (only models pretrained here can be calibrated)")
    model = load_model(str(checkpoint))
    card = json.loads(checkpoint.with_suffix(".json").read_text())
    try:
        train, val, _ = own_blocks(card.get("details", {}), model.targets[0], zoo=folder)
    except CGCNNError as exc:
        raise CGCNNError(f"{name}: {exc}") from None
    return save_uncertainty(calibration_path(checkpoint), calibrate_model(model, checkpoint, train, val))


def write_ensemble(name: str, members: list[str], folder: Path | None = None, notes: str = "") -> Path:
    """Write the manifest ``NAME.json`` of a shipped ensemble of own models, calibrate it and its members.

    Every member must be an own model with the same target, graph definition and split (so the validation
    block is one no member trained on). A member without a current calibration is calibrated first.

    Raises:
        CGCNNError: a name that is an own model, fewer than two members, or members that do not fit together.
    """
    from cgcnn.nn.uncertainty import matching_uncertainty
    from cgcnn.zoo import load_model, pretrained_dir

    folder = folder or pretrained_dir()
    if (folder / f"{name}.pt").exists():
        raise CGCNNError(f"{name} is an own model's name; an ensemble needs its own")
    cards = []
    for member in members:
        path = folder / f"{member}.json"
        if not (folder / f"{member}.pt").is_file() or not path.is_file():
            raise CGCNNError(f"{name}: member {member} is not an own model in {folder}")
        cards.append(json.loads(path.read_text()))
    hashes = {c.get("details", {}).get("split", {}).get("hash") for c in cards}
    if len(hashes) != 1:
        raise CGCNNError(f"{name}: its members were trained on different splits, so no validation block is shared")
    for member in members:
        checkpoint = folder / f"{member}.pt"
        found, _ = matching_uncertainty(calibration_path(checkpoint), member, [file_sha256(checkpoint)])
        if found is None:
            calibrate_own(member, folder)
    predictors = [load_model(str(folder / f"{m}.pt")) for m in members]
    ensemble = Ensemble(predictors, name=name)
    _, val, test = own_blocks(cards[0]["details"], ensemble.targets[0], zoo=folder)
    uncertainty = calibrate_ensemble(ensemble, [folder / f"{m}.pt" for m in members], val)
    test_mae = float(np.mean(np.abs(ensemble.predict_graphs(test.graphs)[:, 0] - test.labels)))
    return save_ensemble(folder, name, members, uncertainty, len(test.ids), notes, test_mae)


def save_ensemble(
    folder: Path,
    name: str,
    members: list[str],
    uncertainty: Uncertainty,
    n_test: int,
    notes: str = "",
    test_mae: float | None = None,
) -> Path:
    """Write an ensemble's manifest ``NAME.json`` (a card with ``members``) and its calibration file beside it.

    ``test_mae``: the ensemble mean's MAE on the members' shared test block (None: not measured).
    """
    first = json.loads((folder / f"{members[0]}.json").read_text())
    manifest = {
        "name": name,
        "kind": "ensemble",
        "property": first["property"],
        "units": first["units"],
        "train_size": first["train_size"],
        "mae": test_mae,
        "mae_metric": f"test MAE of the ensemble mean on its members' test block ({n_test} crystals; "
        f"`python -m cgcnn evaluate --model {name} --test-block` adds coverage and distances)",
        "source": f"the mean of {len(members)} own models: {', '.join(members)}",
        "task": "regression",
        "targets": first["targets"],
        "notes": notes,
        "details": {"split": {k: v for k, v in first["details"]["split"].items() if k != "test_ids"}},
        "shift_penalty": first.get("shift_penalty", {}),
        "members": members,
    }
    save_uncertainty(calibration_path(folder / f"{name}.json"), uncertainty)
    out = folder / f"{name}.json"
    out.write_text(json.dumps(manifest, indent=2) + "\n")
    return out
