"""The yardsticks as models: the training mean, and gradient-boosted trees on the composition alone.

A baseline run (:mod:`cgcnn.training.baselines`) is stored like any run and loads like any run
(``predict --model run:ID``, ``evaluate``), so it needs a model file; but a fitted scikit-learn model can only be
saved with pickle, which runs code on load (the project loads nothing that way). So a baseline file
(``baseline.npz``, read with ``allow_pickle=False``) holds the *inputs* of the fit instead: the training and
validation ids, their features and labels, and the settings; loading it refits the trees. The fit is
deterministic (fixed ``random_state``, early stopping on the stored validation block rather than a random
internal split, one thread), so the refit is the model that was tested, bit for bit, under the same
scikit-learn version; the file records that version, and a load under another one says so on the card.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from cgcnn.data.composition import composition_features, feature_names
from cgcnn.data.graph import BuildOptions, CrystalGraph, GraphParams, structure_to_graph
from cgcnn.errors import CGCNNError, CheckpointError
from cgcnn.nn.cards import ModelCard
from cgcnn.nn.predictor import clamp_nonnegative

#: The file name of a baseline run's model, in its run folder.
BASELINE_FILE = "baseline.npz"

#: The regressor's settings (scikit-learn's ``HistGradientBoostingRegressor``), fixed so refits are identical.
#: Early stopping watches the squared error on our validation block (passed as ``X_val``, not a random split)
#: and stops after 20 rounds without improvement; ``max_iter`` is a ceiling it rarely reaches.
REGRESSOR_SETTINGS: dict[str, Any] = {
    "loss": "squared_error",
    "learning_rate": 0.1,
    "max_iter": 1000,
    "max_leaf_nodes": 31,
    "min_samples_leaf": 20,
    "early_stopping": True,
    "scoring": "loss",
    "n_iter_no_change": 20,
    "random_state": 0,
}

#: The baselines a model file can hold.
KINDS = ("mean", "composition")

#: The version tag of the file layout.
FORMAT = "cgcnn-baseline/1"
_ARRAYS = ("train_ids", "val_ids", "x_train", "y_train", "x_val", "y_val")


def _sklearn_version() -> str:
    import sklearn

    return str(sklearn.__version__)


@dataclass
class BaselineModel:
    """A fitted baseline and everything needed to fit it again.

    Attributes:
        kind: ``mean`` (predicts the training mean) or ``composition`` (trees on :mod:`cgcnn.data.composition`).
        target: the label it predicts.
        train_ids, val_ids: the crystals it was fitted and early-stopped on.
        x_train, y_train, x_val, y_val: their features (``(n, 0)`` for the mean) and labels.
        settings: the regressor's settings (:data:`REGRESSOR_SETTINGS`; empty for the mean).
        sklearn_version: the scikit-learn that fitted it (a refit under another one may differ slightly).
        mean: the training mean (the mean baseline's only number).
        n_iter: boosting rounds kept by early stopping (0 for the mean).
    """

    kind: str
    target: str
    train_ids: list[str]
    val_ids: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)
    sklearn_version: str = ""
    mean: float = float("nan")
    n_iter: int = 0
    regressor: Any = field(default=None, repr=False)

    @classmethod
    def fit(
        cls,
        kind: str,
        target: str,
        train: tuple[list[str], np.ndarray, np.ndarray],
        val: tuple[list[str], np.ndarray, np.ndarray],
    ) -> BaselineModel:
        """Fit ``kind`` on ``train`` = ``(ids, features, labels)``, early-stopping on ``val`` (same form).

        Raises:
            CGCNNError: an unknown kind, or training labels that are not all finite.
        """
        if kind not in KINDS:
            raise CGCNNError(f"unknown baseline {kind!r}: choose one of {', '.join(KINDS)}")
        (train_ids, x_train, y_train), (val_ids, x_val, y_val) = train, val
        y_train = np.asarray(y_train, dtype=np.float64)
        if not len(y_train) or not np.isfinite(y_train).all():
            raise CGCNNError("a baseline needs finite labels for every training crystal")
        model = cls(
            kind=kind,
            target=target,
            train_ids=list(train_ids),
            val_ids=list(val_ids),
            x_train=np.asarray(x_train, dtype=np.float64),
            y_train=y_train,
            x_val=np.asarray(x_val, dtype=np.float64),
            y_val=np.asarray(y_val, dtype=np.float64),
            settings=dict(REGRESSOR_SETTINGS) if kind == "composition" else {},
            sklearn_version=_sklearn_version() if kind == "composition" else "",
        )
        model._refit()
        return model

    def _refit(self) -> None:
        """Fit from the stored inputs: the same inputs and scikit-learn give the same trees."""
        self.mean = float(np.mean(self.y_train))
        if self.kind != "composition":
            return
        from sklearn.ensemble import HistGradientBoostingRegressor
        from threadpoolctl import threadpool_limits

        regressor = HistGradientBoostingRegressor(**self.settings)
        with threadpool_limits(limits=1, user_api="openmp"):  # one order of additions: identical refits
            regressor.fit(self.x_train, self.y_train, X_val=self.x_val, y_val=self.y_val)
        self.regressor, self.n_iter = regressor, int(regressor.n_iter_)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """``(n,)`` predictions of crystals with these features (:func:`composition_features` rows)."""
        n = len(features)
        if self.kind == "mean":
            return np.full(n, self.mean)
        if n == 0:
            return np.zeros(0)
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="openmp"):
            return self.regressor.predict(np.asarray(features, dtype=np.float64)).astype(np.float64)

    def save(self, path: Path | str, card: ModelCard | None = None) -> Path:
        """Write the fit's inputs, its settings and ``card`` (plain arrays and one JSON string: no pickle)."""
        path = Path(path)
        header = {
            "format": FORMAT,
            "card": card.to_dict() if card is not None else None,
            "kind": self.kind,
            "target": self.target,
            "settings": self.settings,
            "sklearn_version": self.sklearn_version,
            "features": feature_names() if self.kind == "composition" else [],
            "n_iter": self.n_iter,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as handle:  # np.savez would append .npz to a name without it
            np.savez(
                handle,
                header=np.array(json.dumps(header)),
                train_ids=np.array(self.train_ids, dtype=str),
                val_ids=np.array(self.val_ids, dtype=str),
                x_train=self.x_train,
                y_train=self.y_train,
                x_val=self.x_val,
                y_val=self.y_val,
            )
        tmp.replace(path)
        return path

    @staticmethod
    def peek(path: Path | str) -> dict[str, Any]:
        """The header of a baseline file (kind, target, settings, card) without refitting.

        Raises:
            CheckpointError: not a baseline file this version can read.
        """
        return _read(path, arrays=False)[0]

    @classmethod
    def load(cls, path: Path | str) -> BaselineModel:
        """Read a baseline file and refit it.

        Raises:
            CheckpointError: not a baseline file this version can read.
        """
        header, arrays = _read(path, arrays=True)
        if header["kind"] == "composition" and header.get("features") != feature_names():
            raise CheckpointError(f"{Path(path).name}: its composition features differ from this version's")
        model = cls(
            kind=header["kind"],
            target=header["target"],
            train_ids=arrays["train_ids"].tolist(),
            val_ids=arrays["val_ids"].tolist(),
            x_train=arrays["x_train"],
            y_train=arrays["y_train"],
            x_val=arrays["x_val"],
            y_val=arrays["y_val"],
            settings=dict(header.get("settings") or {}),
            sklearn_version=str(header.get("sklearn_version", "")),
        )
        model._refit()
        return model


def _read(path: Path | str, arrays: bool) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    name = Path(path).name
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("kind") not in KINDS:
                raise CheckpointError(f"{name}: not a baseline file of this version")
            found = {k: data[k] for k in _ARRAYS} if arrays else {}
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{name}: not a readable baseline file ({type(exc).__name__}: {exc})") from None
    return header, found


def graph_features(graphs: list[CrystalGraph]) -> np.ndarray:
    """The composition features of crystals given as graphs (their atoms' atomic numbers)."""
    return composition_features([g.atomic_numbers for g in graphs])


@dataclass
class BaselinePredictor:
    """A baseline with the interface of :class:`~cgcnn.nn.predictor.Predictor` that predicting and scoring use.

    It reads crystals through the same graphs as a network (``graph_params`` are the default ones), so a
    crystal a network cannot featurise is refused here too and every model scores the same crystals. It has no
    calibration, no applicability domain and no layers: explaining, probing or fine-tuning it is refused by the
    zoo with a message.
    """

    baseline: BaselineModel
    card: ModelCard
    graph_params: GraphParams = field(default_factory=GraphParams)
    uncertainty: None = None
    uncertainty_note: str = ""
    classification: bool = False

    @property
    def targets(self) -> list[str]:
        """The one label it predicts."""
        return [self.baseline.target]

    def graph(self, structure: Structure, options: BuildOptions | None = None) -> CrystalGraph:
        """The crystal's graph (only its atoms are used)."""
        return structure_to_graph(structure, self.graph_params, options=options)

    def predict_graphs(self, graphs: list[CrystalGraph], batch_size: int = 256, clamp: bool = False) -> np.ndarray:
        """``(n, 1)`` predictions in the target's units; ``batch_size`` is accepted for the common interface."""
        composition = self.baseline.kind == "composition"
        values = self.baseline.predict(graph_features(graphs) if composition else np.zeros((len(graphs), 0)))
        values = np.asarray(values, dtype=np.float64).reshape(-1, 1)
        return clamp_nonnegative(values, self.targets) if clamp else values

    def predict_structures(self, structures: list[Structure], batch_size: int = 256, clamp: bool = False) -> np.ndarray:
        """Build graphs and predict (see :meth:`predict_graphs`)."""
        return self.predict_graphs([self.graph(s) for s in structures], batch_size, clamp=clamp)


def load_baseline(path: Path | str, card: ModelCard) -> BaselinePredictor:
    """A baseline file as a predictor with ``card``; a refit under another scikit-learn is noted on the card.

    Raises:
        CheckpointError: see :meth:`BaselineModel.load`.
    """
    model = BaselineModel.load(path)
    if model.kind == "composition" and model.sklearn_version != _sklearn_version():
        card.notes = (
            f"{card.notes} Refitted under scikit-learn {_sklearn_version()}; it was fitted and tested under "
            f"{model.sklearn_version}, so its predictions may differ slightly from the stored ones."
        ).strip()
    return BaselinePredictor(baseline=model, card=card)
