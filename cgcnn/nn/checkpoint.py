"""Saving and safely loading checkpoints: this project's versioned format and the original ``.pth.tar``.

Every file is read with ``torch.load(weights_only=True)``: a checkpoint is data, and a pickle that would run
code on load is refused. The only non-tensor global allowed is the NumPy float scalar that the original
classification checkpoint stores as its best AUC.

Our format (a dict): ``format`` (:data:`FORMAT_NAME`), ``format_version``, ``config`` (a
:class:`~cgcnn.nn.model.ModelConfig` dict), ``graph_params``, ``state_dict``, ``normalizer`` and ``card``.
The original format: ``state_dict``, ``normalizer`` {mean, std}, ``args`` (the original CLI options) and
``best_mae_error``.
"""

from __future__ import annotations

import dataclasses
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch
from numpy._core.multiarray import scalar as _numpy_scalar

from cgcnn.data.graph import GraphParams
from cgcnn.errors import CheckpointError
from cgcnn.nn.cards import ModelCard
from cgcnn.nn.model import CrystalGraphConvNet, ModelConfig
from cgcnn.nn.normalizer import Normalizer
from cgcnn.nn.predictor import Predictor
from cgcnn.storage import storage_errors

FORMAT_NAME = "cgcnn-explorer-checkpoint"
FORMAT_VERSION = 1

# Globals a weights-only load may meet in the original checkpoints: a NumPy float64 scalar (pickled under
# its NumPy 1 module path) and its dtype. Nothing callable beyond constructing these values.
_SAFE_GLOBALS = [(_numpy_scalar, "numpy.core.multiarray.scalar"), np.dtype, np.dtypes.Float64DType]


def safe_torch_load(path: str | Path) -> dict:
    """Load a checkpoint file as plain data, refusing anything that would execute code.

    Raises:
        CheckpointError: unreadable file, not a PyTorch file, or a pickle with disallowed globals.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            data = torch.load(path, map_location="cpu", weights_only=True)
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
    try:
        with storage_errors(f"saving the checkpoint {path}"):
            torch.save(payload, tmp)
            tmp.replace(path)  # atomic: a crash mid-write never leaves a half checkpoint under the real name
    finally:
        tmp.unlink(missing_ok=True)  # a full disk leaves no .tmp behind
    return path


def load_checkpoint(path: str | Path, card: ModelCard | None = None) -> Predictor:
    """Load either format into a :class:`~cgcnn.nn.predictor.Predictor` (on the CPU, in eval mode).

    Args:
        path: checkpoint file.
        card: card to attach (the zoo passes its own); by default the file's card, or a minimal one.

    Raises:
        CheckpointError: unsafe, unreadable, wrong version, or weights that do not fit the architecture.
    """
    path = Path(path)
    data = safe_torch_load(path)
    if data.get("format") == FORMAT_NAME:
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"{path.name}: checkpoint format version {version}; this version of cgcnn reads "
                f"version {FORMAT_VERSION}"
            )
        try:
            config = ModelConfig.from_dict(data["config"])
            graph_params = GraphParams(**data["graph_params"])
        except (TypeError, KeyError) as exc:
            raise CheckpointError(f"{path.name}: malformed checkpoint metadata ({exc})") from None
        normalizer = Normalizer.from_dict(data["normalizer"])
        card = card or ModelCard.from_dict(data["card"])
    elif "args" in data and "normalizer" in data:
        config, graph_params = _original_config(data, path)
        normalizer = Normalizer.from_dict(data["normalizer"])
        card = card or _minimal_card(path, config, data)
    else:
        raise CheckpointError(f"{path.name}: not a CGCNN checkpoint (neither this project's nor the original format)")

    model = CrystalGraphConvNet(config)
    try:
        model.load_state_dict(data["state_dict"], strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{path.name}: weights do not fit the CGCNN architecture ({first})") from None
    model.eval()
    return Predictor(model=model, normalizer=normalizer, graph_params=graph_params, card=card)


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
    except (KeyError, AttributeError, IndexError, TypeError) as exc:
        raise CheckpointError(f"{path.name}: not a CGCNN checkpoint (missing {exc})") from None
    # The original code built every model's graph with its defaults (8 Å, 12 neighbours, 0.2 Å Gaussians).
    params = GraphParams(radius=float(args.get("radius", 8.0)), max_neighbors=int(args.get("max_num_nbr", 12)))
    if params.n_edge_features != nbr_fea_len:
        raise CheckpointError(f"{path.name}: edge feature length {nbr_fea_len} does not fit the graph parameters")
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
