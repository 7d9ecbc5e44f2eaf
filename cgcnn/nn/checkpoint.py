"""Saving and safely loading checkpoints: this project's versioned format and the original ``.pth.tar``.

Every file is read with ``torch.load(weights_only=True)``: a checkpoint is data, and a pickle that would run
code on load is refused. The only non-tensor global allowed is the NumPy float scalar that the original
classification checkpoint stores as its best AUC.

A file is checked before its weights are read: it is memory-mapped (``mmap=True``, so a tensor's bytes are
not read until used), its config must lie within :data:`CONFIG_LIMITS` and fit the element table and graph
parameters, and every tensor's shape must be the one the config implies (from a model built on the ``meta``
device, which allocates nothing). Only then are the weights read, and NaN or infinite ones are refused.

Our format (a dict): ``format`` (:data:`FORMAT_NAME`), ``format_version``, ``config`` (a
:class:`~cgcnn.nn.model.ModelConfig` dict), ``graph_params``, ``state_dict``, ``normalizer`` and ``card``.
A file of an earlier version is upgraded in memory by the steps registered with :func:`register_migration`,
one per version (version 1 saved the caller's build limits, ``max_atoms`` and ``widen_radius``, inside
``graph_params``; version 2 keeps only the graph's definition there). The original format: ``state_dict``,
``normalizer`` {mean, std}, ``args`` (the original CLI options) and ``best_mae_error``.
"""

from __future__ import annotations

import dataclasses
import pickle
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from numpy._core.multiarray import scalar as _numpy_scalar

from cgcnn.data.elements import original_table
from cgcnn.data.graph import GraphParams
from cgcnn.errors import CGCNNError, CheckpointError
from cgcnn.nn.cards import ModelCard
from cgcnn.nn.layers import CONV_LAYERS
from cgcnn.nn.model import CrystalGraphConvNet, ModelConfig
from cgcnn.nn.normalizer import Normalizer
from cgcnn.nn.predictor import Predictor
from cgcnn.nn.sanity import check_predictor
from cgcnn.storage import ensure_free_space, storage_errors

FORMAT_NAME = "cgcnn-explorer-checkpoint"
FORMAT_VERSION = 2

#: Bounds on a checkpoint's architecture: far above any CGCNN in use (64/128/3 by default), far below what
#: would take a server's memory. ``parameters`` bounds the total, whatever the layer kind and its options.
CONFIG_LIMITS = {"atom_fea_len": 1024, "h_fea_len": 4096, "n_conv": 32, "n_h": 16, "targets": 256}
MAX_PARAMETERS = 50_000_000
#: Graph parameters a checkpoint may ask for (the edge features per neighbour follow from them).
MAX_RADIUS, MAX_NEIGHBORS, MAX_EDGE_FEATURES = 30.0, 128, 1024

Migration = Callable[[dict], dict]
#: Upgrade steps by the version they read: ``_MIGRATIONS[v]`` turns a version ``v`` payload into ``v + 1``.
_MIGRATIONS: dict[int, Migration] = {}


def register_migration(from_version: int) -> Callable[[Migration], Migration]:
    """Decorator: the step that upgrades a payload of format ``from_version`` to ``from_version + 1``.

    Any change to the format bumps :data:`FORMAT_VERSION` and registers the step from the previous version
    here, so every file ever written keeps loading.
    """

    def register(step: Migration) -> Migration:
        _MIGRATIONS[from_version] = step
        return step

    return register


def upgrade(data: dict, name: str) -> dict:
    """``data`` (this project's format, any version) upgraded to :data:`FORMAT_VERSION`, step by step.

    Raises:
        CheckpointError: a version from a newer cgcnn, or one with no registered upgrade step.
    """
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise CheckpointError(f"{name}: checkpoint format version {version!r} is not a version number")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{name}: checkpoint format version {version} was written by a newer cgcnn; this one reads up to "
            f"version {FORMAT_VERSION}"
        )
    while version < FORMAT_VERSION:
        step = _MIGRATIONS.get(version)
        if step is None:
            raise CheckpointError(f"{name}: checkpoint format version {version} has no upgrade to {FORMAT_VERSION}")
        data = {**step(dict(data)), "format_version": version + 1}
        version += 1
    return data


#: Keys of ``graph_params`` that version 1 saved although they are the caller's limits, not the graph's definition
#: (now :class:`~cgcnn.data.graph.BuildOptions`).
_BUILD_OPTION_KEYS = ("max_atoms", "widen_radius")


@register_migration(1)
def _graph_definition_only(payload: dict) -> dict:
    """Version 1 → 2: ``graph_params`` loses ``max_atoms`` and ``widen_radius``.

    A fine-tuned run saved its server's ``CGCNN_MAX_ATOMS`` there, so two runs of one recipe trained on servers
    with different limits looked like different graphs (and an ensemble of them was refused). The graph itself
    never depended on them, so dropping them changes no prediction.
    """
    params = payload.get("graph_params")
    if isinstance(params, dict):
        payload["graph_params"] = {k: v for k, v in params.items() if k not in _BUILD_OPTION_KEYS}
    return payload


# Globals a weights-only load may meet in the original checkpoints: a NumPy float64 scalar (pickled under
# its NumPy 1 module path) and its dtype. Nothing callable beyond constructing these values.
_SAFE_GLOBALS = [(_numpy_scalar, "numpy.core.multiarray.scalar"), np.dtype, np.dtypes.Float64DType]
#: ``torch.serialization.safe_globals`` edits one process-wide list and restores it on exit, so two threads (two
#: students' sessions in one Streamlit server) loading at once could each drop the other's allowance: a valid
#: original checkpoint was then refused. Loads take this lock.
_LOAD_LOCK = threading.Lock()


def safe_torch_load(path: str | Path) -> dict:
    """Load a checkpoint file as plain data, refusing anything that would execute code.

    Raises:
        CheckpointError: unreadable file, not a PyTorch file, or a pickle with disallowed globals.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        # A zip (every torch.save since 1.6) is memory-mapped: tensors are read only when used, after the checks,
        # and a compressed record (gigabytes of zeros in a small file) cannot be mapped and is refused unread.
        # The original checkpoints use the older uncompressed format, whose size is its file's size.
        with _LOAD_LOCK, torch.serialization.safe_globals(_SAFE_GLOBALS):
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        if "GLOBAL" not in str(exc):  # not a pickle of objects at all: random bytes, a text file, ...
            raise CheckpointError(f"{path.name}: not a PyTorch checkpoint (unreadable pickle)") from None
        lines = [line.strip() for line in str(exc).splitlines() if "GLOBAL" in line]
        raise CheckpointError(
            f"{path.name}: refused to load: the file holds Python objects beyond weights, and loading them "
            f"could run code ({lines[0] if lines else 'disallowed global'})"
        ) from None
    except (RuntimeError, EOFError, KeyError, ValueError, zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"{path.name}: not a PyTorch checkpoint ({type(exc).__name__})") from None
    if not isinstance(data, dict) or "state_dict" not in data:
        raise CheckpointError(f"{path.name}: not a CGCNN checkpoint (no 'state_dict' entry)")
    if not isinstance(data["state_dict"], dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data["state_dict"].items()
    ):
        raise CheckpointError(f"{path.name}: not a CGCNN checkpoint (its state_dict is not a dict of named tensors)")
    return data


def save_checkpoint(path: str | Path, predictor: Predictor) -> Path:
    """Write ``predictor`` in this project's format (loadable with ``weights_only=True``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": predictor.model.config.to_dict(),
        "graph_params": dataclasses.asdict(predictor.graph_params),
        "state_dict": {k: v.detach().cpu() for k, v in predictor.model.state_dict().items()},
        "normalizer": predictor.normalizer.to_dict(),
        "card": predictor.card.to_dict(),
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    ensure_free_space(path.parent, f"saving the checkpoint {path}", _payload_bytes(payload))
    try:
        with storage_errors(f"saving the checkpoint {path}"):
            torch.save(payload, tmp)
            tmp.replace(path)  # atomic: a crash mid-write never leaves a half checkpoint under the real name
    finally:
        tmp.unlink(missing_ok=True)  # a full disk leaves no .tmp behind
    return path


def _payload_bytes(payload: dict) -> int:
    """About what ``torch.save`` will write: the state's tensors."""
    return sum(t.numel() * t.element_size() for t in payload["state_dict"].values())


def load_checkpoint(path: str | Path, card: ModelCard | None = None) -> Predictor:
    """Load either format into a :class:`~cgcnn.nn.predictor.Predictor` (on the CPU, in eval mode).

    Args:
        path: checkpoint file.
        card: card to attach (the zoo passes its own); by default the file's card, or a minimal one.

    Raises:
        CheckpointError: unsafe or unreadable, a version with no upgrade, a config out of bounds or not fitting
            the element table or graph, weights of the wrong shape or not finite, a bad normaliser or card,
            negative batch-norm variances or a probe prediction that is not finite (:mod:`cgcnn.nn.sanity`).
    """
    path = Path(path)
    data = safe_torch_load(path)
    config, graph_params = _checked_config(data, path)
    state = _checked_state(data["state_dict"], config, path)
    normalizer = _checked_normalizer(data["normalizer"], config, path)
    if data.get("format") == FORMAT_NAME:
        if card is None:
            if not isinstance(data.get("card"), dict):
                raise CheckpointError(f"{path.name}: the checkpoint has no model card")
            try:
                card = ModelCard.from_dict(data["card"])
            except TypeError as exc:
                raise CheckpointError(f"{path.name}: malformed model card ({exc})") from None
    else:
        card = card or _minimal_card(path, config, data)
    model = CrystalGraphConvNet(config)
    model.load_state_dict(state, strict=True)  # keys and shapes are checked: this cannot fail
    model.eval()
    predictor = Predictor(model=model, normalizer=normalizer, graph_params=graph_params, card=card)
    check_predictor(predictor, path.name)  # finite but broken weights: refused here, not printed as nan
    return predictor


def read_config(path: str | Path) -> tuple[ModelConfig, GraphParams]:
    """The checked architecture and graph parameters of a checkpoint, without reading its weights.

    Raises:
        CheckpointError: as :func:`load_checkpoint`, for everything but the weights themselves.
    """
    path = Path(path)
    data = safe_torch_load(path)
    return _checked_config(data, path)


def _checked_config(data: dict, path: Path) -> tuple[ModelConfig, GraphParams]:
    """Config and graph parameters of either format, upgraded and checked (no tensor data is read)."""
    if data.get("format") == FORMAT_NAME:
        data.update(upgrade(data, path.name))
        try:
            config = ModelConfig.from_dict(data["config"])
            graph_params = GraphParams(**data["graph_params"])
        except (TypeError, KeyError, ValueError, CGCNNError) as exc:
            raise CheckpointError(f"{path.name}: malformed checkpoint metadata ({exc})") from None
    elif "args" in data and "normalizer" in data:
        config, graph_params = _original_config(data, path)
    else:
        raise CheckpointError(f"{path.name}: not a CGCNN checkpoint (neither this project's nor the original format)")
    if "normalizer" not in data:
        raise CheckpointError(f"{path.name}: the checkpoint has no normaliser")
    check_config(config, graph_params, path.name)
    return config, graph_params


def check_config(config: ModelConfig, graph_params: GraphParams, name: str = "checkpoint") -> None:
    """Refuse an architecture that is out of bounds, unknown, or does not fit the element table and graph.

    Raises:
        CheckpointError: naming the first bad field.
    """
    sizes = {"orig_atom_fea_len": config.orig_atom_fea_len, "nbr_fea_len": config.nbr_fea_len}
    sizes |= {key: getattr(config, key) for key in CONFIG_LIMITS if key != "targets"}
    for key, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "n_conv" else 1):
            raise CheckpointError(f"{name}: {key} must be a positive whole number, got {value!r}")
        if value > CONFIG_LIMITS.get(key, value):
            raise CheckpointError(f"{name}: {key} = {value} is beyond the limit of {CONFIG_LIMITS[key]}")
    if not isinstance(config.targets, list) or not all(isinstance(t, str) for t in config.targets):
        raise CheckpointError(f"{name}: targets must be a list of names, got {config.targets!r}")
    if not 1 <= len(config.targets) <= CONFIG_LIMITS["targets"]:
        raise CheckpointError(f"{name}: {len(config.targets)} targets (1 to {CONFIG_LIMITS['targets']} allowed)")
    if config.conv not in CONV_LAYERS:
        raise CheckpointError(f"{name}: unknown convolution kind {config.conv!r} (known: {', '.join(CONV_LAYERS)})")
    if not isinstance(config.conv_options, dict):
        raise CheckpointError(f"{name}: conv_options must be a dict, got {config.conv_options!r}")
    n_elements = original_table().n_features
    if config.orig_atom_fea_len != n_elements:
        raise CheckpointError(
            f"{name}: the model reads {config.orig_atom_fea_len} element features, but the element table has "
            f"{n_elements}"
        )
    radius, neighbors, step = graph_params.radius, graph_params.max_neighbors, graph_params.step
    if not (0 < radius <= MAX_RADIUS and isinstance(neighbors, int) and 1 <= neighbors <= MAX_NEIGHBORS and step > 0):
        raise CheckpointError(f"{name}: graph parameters out of bounds (radius, neighbours, step): {graph_params}")
    if (radius - graph_params.dmin) / step > MAX_EDGE_FEATURES:
        raise CheckpointError(f"{name}: more than {MAX_EDGE_FEATURES} edge features per neighbour")
    if config.nbr_fea_len != graph_params.n_edge_features:
        raise CheckpointError(
            f"{name}: the model reads {config.nbr_fea_len} edge features, but its graph parameters give "
            f"{graph_params.n_edge_features}"
        )


def _skeleton(config: ModelConfig, name: str) -> dict[str, torch.Size]:
    """Parameter shapes of ``config``'s model, from a model on the ``meta`` device (nothing allocated)."""
    try:
        with torch.device("meta"):
            skeleton = CrystalGraphConvNet(config)
    except (TypeError, ValueError, CGCNNError) as exc:
        raise CheckpointError(f"{name}: the convolution options do not fit {config.conv!r} ({exc})") from None
    n_params = sum(p.numel() for p in skeleton.parameters())
    if n_params > MAX_PARAMETERS:
        raise CheckpointError(f"{name}: {n_params:,} parameters is beyond the limit of {MAX_PARAMETERS:,}")
    return {key: value.shape for key, value in skeleton.state_dict().items()}


def _checked_state(state: dict, config: ModelConfig, path: Path) -> dict[str, torch.Tensor]:
    """``state`` if its names and shapes fit ``config`` (before any weight is read) and every weight is finite."""
    expected = _skeleton(config, path.name)
    # batch norms older than PyTorch 0.4.1 (the original checkpoints) have no num_batches_tracked; torch adds it
    optional = {key for key in expected if key.endswith(".num_batches_tracked")}
    missing, unexpected = sorted(set(expected) - set(state) - optional), sorted(set(state) - set(expected))
    if missing or unexpected:
        what = f"missing {', '.join(missing[:3])}" if missing else f"unexpected {', '.join(unexpected[:3])}"
        raise CheckpointError(f"{path.name}: weights do not fit the CGCNN architecture ({what})")
    for key, shape in expected.items():
        if key in state and state[key].shape != shape:
            raise CheckpointError(
                f"{path.name}: weights do not fit the CGCNN architecture ({key} has shape {tuple(state[key].shape)}, "
                f"the config needs {tuple(shape)})"
            )
    for key, value in state.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{path.name}: weight {key} holds NaN or infinite values")
    return state


def _checked_normalizer(data: object, config: ModelConfig, path: Path) -> Normalizer:
    """The normaliser, if it has one finite mean and one positive finite std per target."""
    try:
        normalizer = Normalizer.from_dict(data)  # type: ignore[arg-type]
    except (TypeError, KeyError, ValueError, RuntimeError, IndexError) as exc:
        raise CheckpointError(f"{path.name}: bad normaliser ({type(exc).__name__}: {exc})") from None
    mean, std = normalizer.mean, normalizer.std
    n = 1 if config.classification else len(config.targets)
    if mean.shape != (n,) or std.shape != (n,):
        raise CheckpointError(f"{path.name}: bad normaliser (mean and std need {n} value(s) each)")
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
        raise CheckpointError(f"{path.name}: bad normaliser (mean and std must be finite, std positive)")
    return normalizer


def _original_config(data: dict, path: Path) -> tuple[ModelConfig, GraphParams]:
    """Architecture of an original checkpoint, from its ``args`` and weight shapes."""
    args, state = data["args"], data["state_dict"]
    try:
        emb = state["embedding.weight"]
        atom_fea_len, orig_len = emb.shape
        nbr_fea_len = state["convs.0.fc_full.weight"].shape[1] - 2 * atom_fea_len
        n_conv = len({k.split(".")[1] for k in state if k.startswith("convs.")})
        config = ModelConfig(
            orig_atom_fea_len=int(orig_len),
            nbr_fea_len=int(nbr_fea_len),
            atom_fea_len=int(atom_fea_len),
            n_conv=n_conv,
            h_fea_len=int(state["conv_to_fc.weight"].shape[0]),
            n_h=int(args.get("n_h", 1)),
            targets=[str(args.get("data_options", ["", "", "target"])[-1])],
            classification=args.get("task") == "classification",
        )
        # The original code built every model's graph with its defaults (8 Å, 12 neighbours, 0.2 Å Gaussians).
        params = GraphParams(radius=float(args.get("radius", 8.0)), max_neighbors=int(args.get("max_num_nbr", 12)))
    except (KeyError, AttributeError, IndexError, TypeError, ValueError, CGCNNError) as exc:
        raise CheckpointError(f"{path.name}: not a CGCNN checkpoint (missing or malformed {exc})") from None
    return config, params


def _minimal_card(path: Path, config: ModelConfig, data: dict) -> ModelCard:
    best = data.get("best_mae_error")
    return ModelCard(
        name=path.name,
        kind="file",
        property=config.targets[0],
        units="",
        train_size=data["args"].get("train_size"),
        mae=float(best) if best is not None else None,
        mae_metric="best validation score stored in the checkpoint",
        source=str(path),
        task="classification" if config.classification else "regression",
        targets=list(config.targets),
    )
