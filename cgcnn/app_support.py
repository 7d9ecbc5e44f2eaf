"""What the Streamlit pages compute, as plain functions (no Streamlit here, so it is testable and reusable).

The pages only lay out widgets; every number, table and validation they show comes from here or from the
library modules this wraps: the run store and job runner (fine-tune queue), the zoo and transfer (layer
diagram), the predictor (uploads), per-edge weights of a model (viewer) and the probes (representations).

Job queue: the app never trains in its own process. A launch creates one ``queued`` run per combination in
the :class:`~cgcnn.runs.RunStore`; :func:`start_runner` returns the process-wide
:class:`~cgcnn.jobs.JobRunner` (``get_runner``) that drains the queue in niced worker processes with one
torch thread each. ``CGCNN_WORKERS`` sets how many run at once (default: one per core; ``0``: the app only
queues, and something else drains, e.g. ``python -m cgcnn.jobs drain``).

Atom contributions (viewer): the model's dense head applied to each atom's final feature on its own,
``head(softplus-chain of v_i)`` denormalised, i.e. what the model would predict for a crystal made only of
atoms like this one. The crystal prediction is the head applied to the *mean* of these features, so these
are not an exact additive decomposition, but with a near-linear head their mean is close to the prediction
(:func:`atom_contributions` returns that mean as well so the page can say how close).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import math
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from cgcnn.crystal_io import MAX_FILE_BYTES, read_structure_text
from cgcnn.errors import CGCNNError, CrystalInputError
from cgcnn.experiments import (
    MATCHED_ROW,
    STUDY_BASELINE,
    STUDY_TABLE2,
    STUDY_TABLE3_MATCHED,
    study_row,
)
from cgcnn.runs import RunRecord, RunStore

#: Environment variable: worker processes of the app's job runner (default one per core; 0 = queue only).
WORKERS_ENV = "CGCNN_WORKERS"
#: Largest upload the app accepts (MB); keep ``server.maxUploadSize`` in ``.streamlit/config.toml`` equal.
MAX_UPLOAD_MB = 50
#: Crystal files accepted by the predict page in one go.
MAX_PREDICT_FILES = 500
#: The study's protocol (band gap, 1000/1000/1000), used to group runs for Table 2.
PROTOCOL = {"target": "band_gap", "n_train": 1000, "n_val": 1000, "n_test": 1000}
SCRATCH = "none"


# --------------------------------------------------------------------------------------------------- basics


def run_store() -> RunStore:
    """The app's run store (``$CGCNN_HOME/runs.sqlite``)."""
    return RunStore()


def worker_count() -> int:
    """Worker processes for the app's runner: ``$CGCNN_WORKERS`` or one per core (0 = queue only)."""
    value = os.environ.get(WORKERS_ENV, "").strip()
    if value:
        try:
            return max(0, int(value))
        except ValueError:
            raise CGCNNError(f"{WORKERS_ENV} must be a whole number, got {value!r}") from None
    return os.cpu_count() or 1


def start_runner(store: RunStore):
    """The process-wide job runner of ``store``, started; None when ``CGCNN_WORKERS=0`` (queue only)."""
    from cgcnn.jobs import get_runner

    workers = worker_count()
    if workers == 0:
        return None
    runner = get_runner(store.path, max_workers=workers)
    runner.max_workers = workers
    return runner


def static_dir() -> Path:
    """The app's ``static/`` folder (served at ``/app/static/``)."""
    return Path(__file__).resolve().parent.parent / "static"


def local_3dmol_available() -> bool:
    """Whether the offline copy of 3Dmol.js is installed (``make`` puts it in ``static/``)."""
    return (static_dir() / "3Dmol-min.js").is_file()


def clean_owner(name: str | None) -> str:
    """A display name as stored with runs: trimmed, at most 40 characters, printable."""
    text = "".join(ch for ch in (name or "") if ch.isprintable()).strip()
    return text[:40]


# --------------------------------------------------------------------------------------------------- models


def model_choices(store: RunStore | None = None, include_classifier: bool = False) -> list[str]:
    """Names a user can pick: the zoo's models (originals, own, saved runs)."""
    from cgcnn.zoo import list_cards

    cards = list_cards(store)
    return [c.name for c in cards if include_classifier or c.task != "classification"]


def cards_frame(store: RunStore | None = None) -> pd.DataFrame:
    """The zoo as a table (one row per model)."""
    from cgcnn.zoo import list_cards

    return pd.DataFrame(
        [
            {
                "name": c.name,
                "kind": c.kind,
                "property": c.property,
                "units": c.units,
                "train size": c.train_size,
                "MAE": c.mae,
                "metric": c.mae_metric,
                "task": c.task,
            }
            for c in list_cards(store)
        ]
    )


def layer_frame(predictor, freeze: int) -> tuple[pd.DataFrame, Any]:
    """Per-layer parameters and state (frozen / kept / re-initialised) of a transfer at depth ``freeze``.

    Returns:
        ``(frame with layer, params, state, trainable; FreezeReport)``.

    Raises:
        CGCNNError: a freeze depth this model does not have.
    """
    from cgcnn.transfer import prepare_transfer

    model, report = prepare_transfer(predictor.model, freeze, ["new target"])
    rows = []
    names = ["embedding", *(f"convs.{i}" for i in range(model.config.n_conv)), "conv_to_fc"]
    names += [f"fcs.{i}" for i in range(model.config.n_h - 1)] + ["fc_out"]
    for name in names:
        module = model.get_submodule(name)
        params = sum(p.numel() for p in module.parameters())
        if name in report.frozen_layers:
            state = "frozen"
        elif name in report.pretrained_layers:
            state = "kept"
        else:
            state = "re-initialised"
        rows.append({"layer": name, "params": params, "state": state, "trainable": state != "frozen"})
    return pd.DataFrame(rows), report


# --------------------------------------------------------------------------------------------------- launching


def validate_spec(spec, dataset=None) -> None:
    """Everything that can be checked before a run is queued: model, freeze depth, target, sizes, epochs.

    Args:
        spec: a :class:`~cgcnn.finetune.FinetuneSpec`.
        dataset: the spec's data, if already loaded.

    Raises:
        CGCNNError: with a message naming the bad choice.
    """
    from cgcnn.datasets import make_split
    from cgcnn.finetune import load_data, resolve_target
    from cgcnn.zoo import load_model

    spec.validate()  # split sizes, freezing a scratch model, unknown hyperparameters
    if spec.pretrained not in ("", SCRATCH):
        n_conv = load_model(spec.pretrained).model.config.n_conv
        if spec.freeze > n_conv:
            raise CGCNNError(f"{spec.pretrained} has {n_conv} convolutions: freeze depth {spec.freeze} is too deep")
    epochs = int(spec.hyperparams.get("epochs", 30))
    if not 1 <= epochs <= 500:
        raise CGCNNError(f"epochs must be between 1 and 500, got {epochs}")
    data = dataset if dataset is not None else load_data(spec.data)
    target = resolve_target(data, spec.target)
    make_split(data, target, spec.n_train, spec.n_val, spec.n_test, split_seed=spec.split_seed)


@dataclass
class LaunchResult:
    """What a launch queued, and which combinations were refused (with the reason)."""

    run_ids: list[str]
    refused: list[tuple[str, str]]


def make_specs(
    pretrained: list[str],
    freezes: list[int],
    target: str,
    sizes: tuple[int, int, int],
    epochs: int,
    seeds: list[int],
    data: str | None = None,
) -> list:
    """One :class:`~cgcnn.finetune.FinetuneSpec` per (model, freeze, seed) combination."""
    from cgcnn.finetune import FinetuneSpec

    return [
        FinetuneSpec(
            pretrained=model,
            freeze=int(freeze),
            target=target,
            n_train=int(sizes[0]),
            n_val=int(sizes[1]),
            n_test=int(sizes[2]),
            seed=int(seed),
            data=data,
            hyperparams={"epochs": int(epochs)},
        )
        for model, freeze, seed in itertools.product(pretrained, sorted(set(freezes)), sorted(set(seeds)))
    ]


def describe_spec(spec) -> str:
    """Short label of a spec: ``band-gap, freeze 2, seed 0``."""
    model = "scratch" if spec.pretrained in ("", SCRATCH) else spec.pretrained
    return f"{model}, freeze {spec.freeze}, seed {spec.seed}"


def launch(store: RunStore, specs: list, owner: str) -> LaunchResult:
    """Validate every spec, queue the valid ones (one run each) and wake the runner.

    Raises:
        CGCNNError: no combination at all, or none valid (the message lists why).
    """
    from cgcnn.finetune import load_data

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
            validate_spec(spec, datasets[spec.data])
        except CGCNNError as exc:
            refused.append((describe_spec(spec), str(exc)))
        else:
            valid.append(spec)
    if not valid:
        reasons = "; ".join(f"{label}: {why}" for label, why in refused)
        raise CGCNNError(f"nothing was queued: {reasons}")
    ids = [store.create_run(spec.to_dict(), owner=owner, status="queued") for spec in valid]
    runner = start_runner(store)
    if runner is not None:
        runner.wake()
    return LaunchResult(ids, refused)


MAX_ZIP_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024**2


def save_upload(store: RunStore, data: bytes, filename: str) -> tuple[Path, Any]:
    """Check an uploaded CGCNN-folder zip and keep it as ``<home>/uploads/<sha256>.zip``.

    Returns:
        ``(path to pass as FinetuneSpec.data, the dataset read from it)``.

    Raises:
        CGCNNError: too large, not a zip, or not in the CGCNN folder format (message from the reader).
    """
    from cgcnn.datasets import read_zip

    if len(data) > MAX_ZIP_UPLOAD_BYTES:
        raise CGCNNError(f"{filename} is {len(data) / 1024**2:.1f} MB; uploads are limited to {MAX_UPLOAD_MB} MB")
    if not filename.lower().endswith(".zip"):
        raise CGCNNError(f"{filename}: upload a .zip of a CGCNN data folder (id_prop.csv and <id>.cif files)")
    dataset = read_zip(data, max_bytes=MAX_ZIP_UPLOAD_BYTES)
    if len(dataset) == 0:
        raise CGCNNError(f"{filename}: no usable crystal in the zip")
    folder = store.home / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(data).hexdigest()[:32]}.zip"
    if not path.is_file():
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path, dataset


# --------------------------------------------------------------------------------------------------- run views


def run_label(record: RunRecord) -> str:
    """``a1b2c3d4 · band-gap f2 s0 · band_gap`` (plus the saved name)."""
    model = "scratch" if record.pretrained in (None, "", SCRATCH) else record.pretrained
    name = f" «{record.name}»" if record.name else ""
    return f"{record.id} · {model} f{record.freeze} s{record.seed} · {record.target}{name}"


def run_progress(record: RunRecord, epochs: pd.DataFrame) -> tuple[float, str]:
    """(fraction done, one line: epoch k/N, ETA, or the final state) of a run."""
    total = int((record.spec.get("hyperparams") or {}).get("epochs", 30) or 30)
    done = len(epochs)
    if record.status == "queued":
        return 0.0, "queued"
    if record.status == "running":
        if not done:
            return 0.02, "starting: loading data and building graphs"
        per_epoch = float(epochs["seconds"].dropna().mean()) if epochs["seconds"].notna().any() else math.nan
        eta = (total - done) * per_epoch if not math.isnan(per_epoch) else math.nan
        eta_text = f", about {format_seconds(eta)} left" if not math.isnan(eta) else ""
        return min(done / total, 0.99), f"epoch {done}/{total}{eta_text}"
    if record.status == "done":
        mae = f", test MAE {record.test_mae:.4f}" if record.test_mae is not None else ""
        return 1.0, f"done in {format_seconds(record.seconds or 0)}{mae}"
    return min(done / total, 1.0), f"{record.status}: {record.error or ''}".rstrip(": ")


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``1 h 02 min``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def runs_frame(records: list[RunRecord]) -> pd.DataFrame:
    """A table of runs (newest first) for listings and CSV export."""
    rows = []
    for r in records:
        rows.append(
            {
                "id": r.id,
                "name": r.name or "",
                "owner": r.owner,
                "status": r.status,
                "pretrained": "scratch" if r.pretrained in (None, "", SCRATCH) else r.pretrained,
                "freeze": r.freeze,
                "target": r.target,
                "n_train": r.n_train,
                "n_val": r.n_val,
                "n_test": r.n_test,
                "seed": r.seed,
                "epochs": (r.spec.get("hyperparams") or {}).get("epochs"),
                "data": r.spec.get("data") or "default",
                "test_mae": r.test_mae,
                "seconds": r.seconds,
                "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created_at)),
            }
        )
    return pd.DataFrame(rows)


def table2_cells(records: list[RunRecord] | pd.DataFrame) -> pd.DataFrame:
    """Done band-gap runs of the 1000/1000/1000 protocol (default data), grouped by (pretrained, freeze).

    Args:
        records: run records of the store, or a sweep's ``runs.csv`` frame (see :func:`shipped_runs`).

    Returns:
        columns ``row``, ``pretrained``, ``freeze``, ``mean``, ``std``, ``n`` (std over seeds; NaN for one).
    """
    if isinstance(records, pd.DataFrame):
        frame = records[["pretrained", "freeze", "target", "n_train", "n_val", "n_test", "test_mae"]].dropna()
        rows = frame.rename(columns={"test_mae": "mae"}).to_dict("records")
    else:
        rows = [
            {"pretrained": r.pretrained, "freeze": r.freeze, "target": r.target, "n_train": r.n_train,
             "n_val": r.n_val, "n_test": r.n_test, "mae": r.test_mae}
            for r in records
            if r.status == "done" and r.test_mae is not None and not r.spec.get("data")
        ]  # fmt: skip
    protocol = tuple(PROTOCOL.values())
    rows = [
        {"row": study_row(r["pretrained"]), "pretrained": r["pretrained"], "freeze": int(r["freeze"]), "mae": r["mae"]}
        for r in rows
        if (r["target"], r["n_train"], r["n_val"], r["n_test"]) == protocol
    ]
    if not rows:
        return pd.DataFrame(columns=["row", "pretrained", "freeze", "mean", "std", "n"])
    frame = pd.DataFrame(rows)
    grouped = frame.groupby(["row", "pretrained", "freeze"], sort=True)["mae"].agg(["mean", "std", "count"])
    return grouped.rename(columns={"count": "n"}).reset_index()


def shipped_results_dir() -> Path:
    """Folder of the sweep results that ship with the project (``docs/results``)."""
    return Path(__file__).resolve().parent.parent / "docs" / "results"


def shipped_runs() -> pd.DataFrame:
    """Every run of the shipped sweeps (``docs/results/*/runs.csv``), so a fresh server has Table 2 at once."""
    frames = [pd.read_csv(p) for p in sorted(shipped_results_dir().glob("*/runs.csv"))]
    return pd.concat(frames, ignore_index=True).drop_duplicates("run_id") if frames else pd.DataFrame()


def study_frame() -> pd.DataFrame:
    """The study's Table 2 as rows (``row``, ``freeze``, ``mae``); the scratch baseline at freeze 0."""
    rows = [{"row": "scratch", "freeze": 0, "mae": STUDY_BASELINE}]
    rows += [{"row": row, "freeze": f, "mae": mae} for row, cells in STUDY_TABLE2.items() for f, mae in cells.items()]
    rows += [{"row": MATCHED_ROW, "freeze": f, "mae": mae} for f, mae in STUDY_TABLE3_MATCHED.items()]
    return pd.DataFrame(rows)


def table2_comparison(cells: pd.DataFrame) -> pd.DataFrame:
    """The store's cells beside the study's numbers (for the table and the CSV export)."""
    study = study_frame().rename(columns={"mae": "study_mae"})
    ours = cells.rename(columns={"mean": "mean_mae", "std": "std_mae"})
    merged = study.merge(ours, on=["row", "freeze"], how="outer")
    merged["difference"] = merged["mean_mae"] - merged["study_mae"]
    return merged.sort_values(["row", "freeze"]).reset_index(drop=True)


# --------------------------------------------------------------------------------------------------- crystals


def search_crystals(dataset, query: str = "", limit: int = 200) -> pd.DataFrame:
    """Crystals whose id or formula contains ``query`` (case-insensitive; exact matches first)."""
    ids = dataset.ids.astype(str)
    formulas = dataset.formulas.astype(str)
    sizes = np.diff(dataset.offsets)
    q = query.strip().lower()
    if q:
        mask = np.char.find(np.char.lower(ids), q) >= 0
        mask |= np.char.find(np.char.lower(formulas), q) >= 0
        exact = (np.char.lower(ids) == q) | (np.char.lower(formulas) == q)
        order = np.flatnonzero(mask)
        order = order[np.argsort(~exact[order], kind="stable")]
    else:
        order = np.arange(len(ids))
    order = order[:limit]
    return pd.DataFrame({"id": ids[order], "formula": formulas[order], "atoms": sizes[order]})


def dataset_glance(dataset) -> pd.DataFrame:
    """Crystals per label with units (for the home page)."""
    from cgcnn.datasets import TARGET_UNITS

    return pd.DataFrame(
        [{"label": k, "crystals": v, "units": TARGET_UNITS.get(k, "")} for k, v in dataset.label_counts().items()]
    )


def structure_from_upload(name: str, data: bytes):
    """Parse one uploaded crystal file (CIF, POSCAR/CONTCAR or pymatgen JSON by extension).

    Raises:
        CrystalInputError: too large or unreadable; the message starts with the file name.
    """
    if len(data) > MAX_FILE_BYTES:
        raise CrystalInputError(f"{name}: {len(data) / 1e6:.0f} MB is too large for a crystal file")
    lower = name.lower()
    fmt = "cif" if lower.endswith(".cif") else "json" if lower.endswith(".json") else "poscar"
    return read_structure_text(data.decode("utf-8", errors="replace"), name, fmt)


def expand_uploads(files: list[tuple[str, bytes]]) -> tuple[list[tuple[str, bytes]], list[str]]:
    """Uploaded files with zips opened: ``([(name, bytes)] of crystal files, [errors])``.

    A zip contributes its ``.cif``, ``.json``, ``POSCAR*``/``CONTCAR*``/``.vasp`` members (no ``id_prop.csv``
    needed); a bad zip is one error, and limits apply to the number and size of members.
    """
    out: list[tuple[str, bytes]] = []
    errors: list[str] = []
    for name, data in files:
        if len(data) > MAX_ZIP_UPLOAD_BYTES:
            errors.append(f"{name}: {len(data) / 1024**2:.1f} MB is over the {MAX_UPLOAD_MB} MB upload limit")
            continue
        if not name.lower().endswith(".zip"):
            out.append((name, data))
            continue
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                members = [
                    i
                    for i in archive.infolist()
                    if not i.is_dir()
                    and not PurePosixPath(i.filename).name.startswith((".", "__"))
                    and _is_crystal_name(PurePosixPath(i.filename).name)
                ]
                if not members:
                    errors.append(f"{name}: the zip holds no crystal file (.cif, .json, POSCAR)")
                for info in members:
                    if len(out) >= MAX_PREDICT_FILES:
                        errors.append(f"{name}: only the first {MAX_PREDICT_FILES} crystal files are read")
                        break
                    member = f"{name}/{info.filename}"
                    if info.file_size > MAX_FILE_BYTES:
                        errors.append(f"{member}: {info.file_size / 1e6:.0f} MB is too large for a crystal file")
                        continue
                    out.append((member, archive.read(info)))
        except zipfile.BadZipFile:
            errors.append(f"{name}: not a readable zip file")
    if len(out) > MAX_PREDICT_FILES:
        errors.append(f"only the first {MAX_PREDICT_FILES} of {len(out)} files are predicted")
        out = out[:MAX_PREDICT_FILES]
    return out, errors


def _is_crystal_name(name: str) -> bool:
    lower = name.lower()
    return lower.endswith((".cif", ".json", ".vasp")) or lower.startswith(("poscar", "contcar"))


def predict_uploads(predictors: dict[str, Any], files: list[tuple[str, bytes]]) -> tuple[pd.DataFrame, list[str]]:
    """Predict every uploaded crystal with every model; a bad file is reported by name, the others go on.

    Args:
        predictors: model name → :class:`~cgcnn.predictor.Predictor`.
        files: ``(file name, bytes)``; zips are opened (see :func:`expand_uploads`).

    Returns:
        ``(table with file, formula, atoms and one column per model and target, [error lines])``.
    """
    from cgcnn.graph import structure_to_graph

    crystals, errors = expand_uploads(files)
    parsed = []
    for name, data in crystals:
        try:
            parsed.append((name, structure_from_upload(name, data)))
        except CGCNNError as exc:
            errors.append(str(exc))
    rows = [{"file": n, "formula": s.composition.reduced_formula, "atoms": len(s)} for n, s in parsed]
    bad_rows: set[int] = set()
    for model_name, predictor in predictors.items():
        graphs, where = [], []
        for k, (name, structure) in enumerate(parsed):
            try:
                graphs.append(structure_to_graph(structure, predictor.graph_params))
                where.append(k)
            except CGCNNError as exc:
                msg = str(exc)
                line = msg if msg.startswith(name) else f"{name}: {msg}"
                if line not in errors:
                    errors.append(line)
                bad_rows.add(k)
        values = predictor.predict_graphs(graphs) if graphs else np.zeros((0, len(predictor.targets)))
        units = predictor.card.units
        for k, row_values in zip(where, values, strict=True):
            for t, target in enumerate(predictor.targets):
                column = model_name if len(predictor.targets) == 1 else f"{model_name}:{target}"
                rows[k][f"{column} ({units})" if units else column] = float(row_values[t])
    frame = pd.DataFrame([r for k, r in enumerate(rows) if k not in bad_rows or len(r) > 3])
    return frame, errors


# --------------------------------------------------------------------------------------------------- attention


def _single_batch(predictor, graph):
    from cgcnn.graph import collate

    return collate([graph], predictor.graph_params)


def edge_weight_layers(predictor, graph) -> tuple[list[np.ndarray], str]:
    """Per-edge weights of every convolution for one crystal graph.

    Uses ``model.edge_weights(batch)`` (attention coefficients ``(E, H)``, or for gated layers the mean filter
    gate ``(E, 1)``) when the model has it; otherwise the gated convolutions' filter gate, averaged over
    channels. Returns ``([array (E, H) per layer], kind)`` with kind ``attention`` or ``gate``.
    """
    import torch

    model = predictor.model
    model.eval()
    batch = _single_batch(predictor, graph)
    kind = "attention" if model.config.conv != "gated" else "gate"
    with torch.no_grad():
        if hasattr(model, "edge_weights"):
            layers = [np.asarray(w.detach().double().cpu().numpy()) for w in model.edge_weights(batch)]
            layers = [w[:, None] if w.ndim == 1 else w for w in layers]
            return layers, kind
        atom_fea = model.embedding(batch.node_features)
        layers = []
        for conv in model.convs:
            try:
                atom_fea, gate = conv(atom_fea, batch, return_gates=True)
            except TypeError:
                raise CGCNNError(
                    f"this model's convolution ({model.config.conv}) exposes no per-edge weights yet"
                ) from None
            layers.append(gate.double().mean(dim=1, keepdim=True).cpu().numpy())
    return layers, kind


def atom_contributions(predictor, graph) -> tuple[np.ndarray, float, float]:
    """Each atom's contribution: the head applied to that atom's final feature (see the module docstring).

    Returns:
        ``(per-atom values (n,) in the model's units, their mean, the model's prediction)``; first target.
    """
    import torch

    model = predictor.model
    model.eval()
    batch = _single_batch(predictor, graph)
    with torch.no_grad():
        atom_fea = model.atom_features(batch)
        raw = model.head(atom_fea)
        crystal = model(batch)
        if model.config.classification:
            per_atom = raw.exp()[:, 1].double().numpy()
            prediction = float(crystal.exp()[0, 1])
        else:
            per_atom = predictor.normalizer.denorm(raw.double())[:, 0].numpy()
            prediction = float(predictor.normalizer.denorm(crystal.double())[0, 0])
    return per_atom, float(per_atom.mean()), prediction


# --------------------------------------------------------------------------------------------------- probes


def probe_module():
    """The probe module (:mod:`cgcnn.probe`) or None while it is not installed in this checkout."""
    try:
        from cgcnn import probe
    except ImportError:
        return None
    needed = ("linear_probe", "crystal_map", "depth_names")
    return probe if all(hasattr(probe, n) for n in needed) else None


def probe_frame(model_names: list[str], target: str, n_train: int, n_test: int) -> tuple[pd.DataFrame, list[str]]:
    """Linear-probe test MAE per depth for each model: ``(frame model, depth, mae, baseline; [errors])``."""
    probe = probe_module()
    if probe is None:
        raise CGCNNError("the probe module (cgcnn.probe) is not available in this installation yet")
    rows, errors = [], []
    for name in model_names:
        try:
            result = probe.linear_probe(name, target=target, n_train=n_train, n_test=n_test)
        except CGCNNError as exc:
            errors.append(f"{name}: {exc}")
            continue
        for k, depth in enumerate(result.depths):
            rows.append(
                {"model": name, "depth": k, "depth name": depth.depth, "mae": depth.test_mae,
                 "baseline": result.baseline_mae}
            )  # fmt: skip
    return pd.DataFrame(rows, columns=["model", "depth", "depth name", "mae", "baseline"]), errors


# --------------------------------------------------------------------------------------------------- server


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AppServer:
    """``streamlit run app.py`` on 127.0.0.1 in a child process (for the browser tests and the load bench).

    Use as a context manager; the server is stopped (its process group) on exit.

    Args:
        home: ``CGCNN_HOME`` of the server (its run store and caches).
        port: TCP port (default: a free one).
        env: extra environment variables (e.g. ``CGCNN_WORKERS``).
        startup_timeout: seconds to wait for ``/_stcore/health``.
    """

    def __init__(
        self,
        home: Path | str,
        port: int | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float = 90.0,
    ) -> None:
        self.home = Path(home)
        self.port = port or free_port()
        self.env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.proc = None
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.home / "streamlit.log"

    def __enter__(self) -> AppServer:
        import subprocess
        import sys
        import urllib.request

        root = Path(__file__).resolve().parent.parent
        self.home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "CGCNN_HOME": str(self.home), **self.env}
        cmd = [
            sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
            "--server.address", "127.0.0.1", "--server.port", str(self.port),
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
        ]  # fmt: skip
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CGCNNError(f"the app exited with code {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.__exit__(None, None, None)
        raise CGCNNError(f"the app did not answer within {self.startup_timeout:.0f} s; see {self.log_path}")

    def __exit__(self, *exc: object) -> None:
        import signal
        import subprocess

        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        if getattr(self, "_log", None) is not None:
            self._log.close()
