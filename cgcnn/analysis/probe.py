"""Linear probes: how much of a target a pretrained model already knows, without any fine-tune.

A fine-tune answers "how well can this model be adapted", but it costs minutes and mixes what the pretrained
layers know with what training adds. A linear probe asks the cheaper, sharper question: fit a ridge regression
on the frozen features of each depth (embedding, after each convolution, the pooled crystal feature) and test
it. One forward pass per batch collects every depth, and ridge with a cross-validated penalty has a closed
form, so a probe over all depths takes seconds.

Depths of a model with ``n`` convolutions, in order (see :func:`depth_names`):

- ``embedding``: the embedded element features;
- ``conv1`` … ``convN``: atom features after each convolution;
- ``pooled``: the hidden crystal feature the head reads, ``softplus(conv_to_fc(softplus(mean over atoms)))``.

Atom-level depths become per-crystal features by the mean over the crystal's atoms (the model's own pooling).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from cgcnn.data.datasets import CrystalDataset, load_default_dataset
from cgcnn.data.graph import CrystalGraph, GraphParams, GraphSet
from cgcnn.data.splits import canonical_order, make_split
from cgcnn.errors import CGCNNError
from cgcnn.nn.model import CrystalGraphConvNet, mean_pool
from cgcnn.nn.predictor import Predictor

EMBEDDING = "embedding"
POOLED = "pooled"
#: Default ridge penalties (on standardised features, sum-of-squares loss).
DEFAULT_ALPHAS = np.logspace(-4, 3, 15)


def depth_names(model: CrystalGraphConvNet | Predictor) -> list[str]:
    """The named depths of ``model``, shallow to deep: ``embedding``, ``conv1`` … ``convN``, ``pooled``."""
    net = _network(model)
    return [EMBEDDING, *(f"conv{k}" for k in range(1, len(net.convs) + 1)), POOLED]


def _network(model: CrystalGraphConvNet | Predictor) -> CrystalGraphConvNet:
    return model.model if isinstance(model, Predictor) else model


def _check_depths(model: CrystalGraphConvNet | Predictor, depths: Iterable[str] | None) -> list[str]:
    names = depth_names(model)
    if depths is None:
        return names
    wanted = list(dict.fromkeys(depths))
    unknown = [d for d in wanted if d not in names]
    if unknown:
        raise CGCNNError(f"unknown depth(s) {', '.join(unknown)}: this model has {', '.join(names)}")
    if not wanted:
        raise CGCNNError(f"no depth asked for: this model has {', '.join(names)}")
    return [d for d in names if d in wanted]  # shallow to deep, whatever order was asked


# ---- features ---------------------------------------------------------------------------------------------


@torch.no_grad()
def extract_features(
    model: CrystalGraphConvNet | Predictor,
    graphs: Sequence[CrystalGraph],
    depths: Iterable[str] | None = None,
    batch_size: int = 256,
    params: GraphParams | None = None,
) -> dict[str, np.ndarray]:
    """Per-crystal features of every requested depth, from one forward pass per batch.

    The network runs in eval mode (batch norms use their running statistics, as at prediction time) and only
    as deep as the deepest requested depth; its training mode is restored afterwards. Any convolution with
    the interface ``conv(atom_fea, batch)`` works (gated today, attention later).

    Args:
        model: a :class:`~cgcnn.nn.predictor.Predictor` (its graph parameters are used) or a bare network.
        graphs: the crystals, built with the model's graph parameters.
        depths: names from :func:`depth_names` (default: all of them).
        batch_size: crystals per forward pass.
        params: graph parameters for the Gaussian edge features (default: the predictor's; required with a bare
            network).

    Returns:
        ``{depth: (n_crystals, dim) float64}``, in shallow-to-deep order.
    """
    net = _network(model)
    names = _check_depths(model, depths)
    if params is None:
        if not isinstance(model, Predictor):
            raise ValueError("a bare network has no graph parameters: pass params, or a Predictor")
        params = model.graph_params
    out: dict[str, list[np.ndarray]] = {name: [] for name in names}
    if len(graphs) == 0:
        return {name: np.zeros((0, _depth_dim(net, name))) for name in names}
    deepest = max(depth_names(net).index(name) for name in names)  # 0 = embedding, n_conv + 1 = pooled
    device = next(net.parameters()).device
    graph_set = GraphSet(list(graphs), params)
    was_training = net.training
    net.eval()
    try:
        for start in range(0, len(graphs), batch_size):
            batch = graph_set.batch(np.arange(start, min(start + batch_size, len(graphs)))).to(device)
            for name, value in _forward_depths(net, batch, deepest):
                if name in out:
                    out[name].append(value.double().cpu().numpy())
    finally:
        net.train(was_training)
    return {name: np.concatenate(parts) for name, parts in out.items()}


def _forward_depths(net: CrystalGraphConvNet, batch, deepest: int) -> Iterable[tuple[str, torch.Tensor]]:
    """Yield ``(depth, per-crystal features)`` shallow to deep, stopping at depth index ``deepest``."""
    atom_fea = net.embedding(batch.node_features)
    yield EMBEDDING, mean_pool(atom_fea, batch)
    for k, conv in enumerate(net.convs, start=1):
        if k > deepest:
            return
        atom_fea = conv(atom_fea, batch)
        yield f"conv{k}", mean_pool(atom_fea, batch)
    if deepest > len(net.convs):
        # the head's first step, exactly as CrystalGraphConvNet.head computes it
        yield POOLED, F.softplus(net.conv_to_fc(F.softplus(mean_pool(atom_fea, batch))))


def _depth_dim(net: CrystalGraphConvNet, name: str) -> int:
    return net.conv_to_fc.out_features if name == POOLED else net.embedding.out_features


# ---- ridge regression -------------------------------------------------------------------------------------


@dataclass
class RidgeModel:
    """A fitted ridge regression: ``y = ((X - mean) / scale) @ coef + intercept``.

    Attributes:
        mean, scale: standardisation of each feature (training statistics; constant features get scale 1).
        coef: ``(dim,)`` weights on the standardised features.
        intercept: unpenalised; equals the training mean of ``y`` because the features are centred.
        alpha: the penalty used.
        alphas: the penalties tried by cross-validation (empty when fitted with a fixed alpha).
        cv_mae: mean cross-validated MAE of each tried penalty (the selection criterion).
    """

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    alpha: float
    alphas: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cv_mae: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions ``(n,)`` for features ``(n, dim)``."""
        X = np.asarray(X, dtype=np.float64)
        return ((X - self.mean) / self.scale) @ self.coef + self.intercept


def _standardise(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale = np.where(scale > 1e-12 * np.maximum(1.0, np.abs(mean)), scale, 1.0)
    return (X - mean) / scale, mean, scale


def _ridge_path(Xs: np.ndarray, yc: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Ridge weights ``(dim, n_alphas)`` of centred data for every penalty, from one thin SVD.

    ``argmin ||yc - Xs w||² + alpha ||w||²`` is ``V diag(s / (s² + alpha)) Uᵀ yc``: the SVD is the only
    expensive step, so the whole grid costs about as much as one solve.
    """
    u, s, vt = np.linalg.svd(Xs, full_matrices=False)
    uty = u.T @ yc
    shrink = s[:, None] / (s[:, None] ** 2 + alphas[None, :])
    return vt.T @ (shrink * uty[:, None])


def _as_xy(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).ravel()
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise ValueError(f"X must be (n, dim) and y (n,); got {X.shape} and {y.shape}")
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise ValueError("X and y must be finite")
    return X, y


def fit_ridge(X: np.ndarray, y: np.ndarray, alpha: float) -> RidgeModel:
    """Ridge regression with a fixed penalty on standardised features and an unpenalised intercept."""
    X, y = _as_xy(X, y)
    Xs, mean, scale = _standardise(X)
    y_mean = float(y.mean())
    coef = _ridge_path(Xs, y - y_mean, np.array([float(alpha)]))[:, 0]
    return RidgeModel(mean=mean, scale=scale, coef=coef, intercept=y_mean, alpha=float(alpha))


def fit_ridge_cv(
    X: np.ndarray, y: np.ndarray, alphas: Sequence[float] | np.ndarray = DEFAULT_ALPHAS, folds: int = 5, seed: int = 0
) -> RidgeModel:
    """Ridge regression whose penalty is chosen by k-fold cross-validation, then refitted on all of ``X``.

    The penalty minimising the mean validation **MAE** over the folds is chosen (MAE, not MSE, because MAE is
    what the probe reports; ties go to the smaller penalty). Each fold standardises with its own training
    statistics, so no validation information leaks into the scaling. One SVD per fold covers every penalty.

    Raises:
        CGCNNError: fewer than ``2 * folds`` samples (too few to cross-validate).
    """
    X, y = _as_xy(X, y)
    alphas = np.asarray(alphas, dtype=np.float64).ravel()
    if len(alphas) == 0 or (alphas < 0).any():
        raise ValueError("alphas must be a non-empty list of non-negative penalties")
    n = len(y)
    if folds < 2 or n < 2 * folds:
        raise CGCNNError(f"{n} training crystals are too few for {folds}-fold cross-validation (need {2 * folds})")
    order = np.random.default_rng(seed).permutation(n)
    errors = np.zeros(len(alphas))
    for held in np.array_split(order, folds):
        train = np.setdiff1d(order, held, assume_unique=True)
        Xs, mean, scale = _standardise(X[train])
        y_mean = y[train].mean()
        coefs = _ridge_path(Xs, y[train] - y_mean, alphas)
        pred = ((X[held] - mean) / scale) @ coefs + y_mean  # (n_held, n_alphas)
        errors += np.abs(pred - y[held, None]).mean(axis=0) * len(held) / n
    best = float(alphas[int(np.argmin(errors))])
    model = fit_ridge(X, y, best)
    model.alphas, model.cv_mae = alphas, errors
    return model


# ---- the probe ----------------------------------------------------------------------------------------------


@dataclass
class DepthResult:
    """The probe of one depth: feature width, chosen penalty, cross-validated and test MAE."""

    depth: str
    dim: int
    alpha: float
    test_mae: float
    cv_mae: float


@dataclass
class ProbeResult:
    """A linear probe of every depth of one model on one split.

    Attributes:
        model: the model's name.
        target: the label probed.
        n_train, n_test: crystals actually used (refused crystals are left out and listed in ``skipped``).
        split_seed, split_hash: which canonical split (the hash of the requested train/test ids).
        baseline_mae: test MAE of predicting the training mean, the floor every depth should beat.
        depths: one :class:`DepthResult` per depth, shallow to deep.
        seconds: wall time of the whole probe (data, graphs, forward pass, ridge fits).
        skipped: ``(id, reason)`` of crystals the featuriser refused.
    """

    model: str
    target: str
    n_train: int
    n_test: int
    split_seed: int
    split_hash: str
    baseline_mae: float
    depths: list[DepthResult]
    seconds: float
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        data = asdict(self)
        data["skipped"] = [list(s) for s in self.skipped]
        return data

    def frame(self) -> pd.DataFrame:
        """One row per depth: depth, dim, alpha, cv_mae, test_mae."""
        return pd.DataFrame([asdict(d) for d in self.depths], columns=["depth", "dim", "alpha", "cv_mae", "test_mae"])


def probe_features(
    features: dict[str, np.ndarray],
    y_train: np.ndarray,
    y_test: np.ndarray,
    n_train: int,
    alphas: Sequence[float] | np.ndarray = DEFAULT_ALPHAS,
    folds: int = 5,
    seed: int = 0,
) -> list[DepthResult]:
    """Fit a cross-validated ridge per depth on the first ``n_train`` rows and test it on the rest."""
    results = []
    for name, X in features.items():
        ridge = fit_ridge_cv(X[:n_train], y_train, alphas, folds, seed)
        test_mae = float(np.abs(ridge.predict(X[n_train:]) - y_test).mean())
        cv_mae = float(ridge.cv_mae.min())
        results.append(DepthResult(depth=name, dim=X.shape[1], alpha=ridge.alpha, test_mae=test_mae, cv_mae=cv_mae))
    return results


def linear_probe(
    model_name: str | Predictor,
    target: str = "band_gap",
    n_train: int = 1000,
    n_test: int = 1000,
    split_seed: int = 0,
    depths: Iterable[str] | None = None,
    dataset: CrystalDataset | None = None,
    alphas: Sequence[float] | np.ndarray = DEFAULT_ALPHAS,
    folds: int = 5,
    batch_size: int = 256,
) -> ProbeResult:
    """Probe every depth of a model on the study's canonical split, without training the network.

    The split is :func:`~cgcnn.data.splits.make_split` with no validation crystals (``n_val = 0``): the ridge
    penalty is chosen by cross-validation inside the training crystals, and the test crystals are the same
    ones a fine-tune with this ``split_seed`` is tested on, so probe and fine-tune MAEs compare directly.

    Args:
        model_name: zoo name, ``run:ID``, checkpoint path, or a loaded predictor.
        target: label to probe (a column of the dataset).
        n_train: training crystals (a prefix of the canonical training block).
        n_test: test crystals (a prefix of the canonical test block).
        split_seed: which canonical split.
        depths: which depths (default: all, see :func:`depth_names`).
        dataset: the crystals (default: the embedded Materials Project dataset).
        alphas: the ridge penalty grid.
        folds: number of cross-validation folds.
        batch_size: crystals per forward pass.

    Raises:
        CGCNNError: unknown model, target or depth, sizes larger than the dataset allows, too few crystals.
    """
    from cgcnn.data.graph_cache import get_graphs
    from cgcnn.zoo import load_model

    started = time.perf_counter()
    predictor = load_model(model_name) if isinstance(model_name, str) else model_name
    name = model_name if isinstance(model_name, str) else predictor.card.name
    names = _check_depths(predictor, depths)
    dataset = dataset if dataset is not None else load_default_dataset()
    try:
        split = make_split(dataset, target, n_train, 0, n_test, split_seed)
    except ValueError as exc:
        raise CGCNNError(str(exc)) from None
    if not split.test:
        raise CGCNNError("the probe needs at least one test crystal")
    graphs, skipped = get_graphs(dataset, split.train + split.test, predictor.graph_params)
    train_ids = [i for i in split.train if i in graphs]
    test_ids = [i for i in split.test if i in graphs]
    labels = dataset.labels[target]
    y_train = labels.loc[train_ids].to_numpy(dtype=np.float64)
    y_test = labels.loc[test_ids].to_numpy(dtype=np.float64)
    features = extract_features(predictor, [graphs[i] for i in train_ids + test_ids], names, batch_size)
    depth_results = probe_features(features, y_train, y_test, len(train_ids), alphas, folds, seed=split_seed)
    return ProbeResult(
        model=str(name),
        target=target,
        n_train=len(train_ids),
        n_test=len(test_ids),
        split_seed=split_seed,
        split_hash=split.content_hash,
        baseline_mae=float(np.abs(y_test - y_train.mean()).mean()),
        depths=depth_results,
        seconds=time.perf_counter() - started,
        skipped=list(skipped),
    )


# ---- maps of the feature space ---------------------------------------------------------------------------


@dataclass
class Projection:
    """A low-dimensional map of per-crystal features.

    Attributes:
        coords: ``(n_crystals, n_components)``.
        explained_variance_ratio: ``(n_components,)`` share of the total variance each PCA axis carries
            (they sum to at most 1); empty for UMAP, which has no such notion.
        method: ``"pca"`` or ``"umap"``.
    """

    coords: np.ndarray
    explained_variance_ratio: np.ndarray
    method: str = "pca"


def pca_map(features: np.ndarray, n_components: int = 2) -> Projection:
    """PCA by a thin SVD of the centred features (no scaling: a depth's features share one scale).

    Components are sign-fixed (largest loading positive) so the same features always give the same picture.
    """
    X = np.asarray(features, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 2:
        raise CGCNNError("a map needs at least two crystals")
    if not 1 <= n_components <= min(X.shape):
        raise CGCNNError(f"n_components must be between 1 and {min(X.shape)}, got {n_components}")
    Xc = X - X.mean(axis=0)
    u, s, vt = np.linalg.svd(Xc, full_matrices=False)
    signs = np.sign(vt[np.arange(len(vt)), np.argmax(np.abs(vt), axis=1)])
    signs[signs == 0] = 1.0
    u, vt = u * signs, vt * signs[:, None]
    total = float((s**2).sum())
    ratios = (s**2 / total)[:n_components] if total > 0 else np.zeros(n_components)
    return Projection(coords=u[:, :n_components] * s[:n_components], explained_variance_ratio=ratios)


def umap_available() -> bool:
    """Whether the optional ``umap-learn`` package can be imported."""
    try:
        import umap  # noqa: F401
    except ImportError:
        return False
    return True


def umap_map(features: np.ndarray, n_components: int = 2, seed: int = 0) -> Projection:
    """UMAP of the features (only with the optional ``umap-learn`` package installed).

    Raises:
        CGCNNError: ``umap-learn`` is not installed (PCA always works: :func:`pca_map`).
    """
    try:
        import umap
    except ImportError:
        raise CGCNNError("UMAP needs the optional package umap-learn; use PCA instead") from None
    coords = umap.UMAP(n_components=n_components, random_state=seed).fit_transform(np.asarray(features))
    return Projection(coords=np.asarray(coords, dtype=np.float64), explained_variance_ratio=np.zeros(0), method="umap")


def map_frame(dataset: CrystalDataset, ids: Sequence[str], projection: Projection) -> pd.DataFrame:
    """The map as a table for plotting: id, formula, x, y (z …), then every label of the dataset.

    Colour by any label column; hover shows formula and id. Missing labels are NaN.
    """
    ids = list(ids)
    coords = projection.coords
    if coords.shape[0] != len(ids):
        raise ValueError(f"{len(ids)} ids but {coords.shape[0]} mapped crystals")
    axes = ["x", "y", "z"][: coords.shape[1]] if coords.shape[1] <= 3 else [f"c{k}" for k in range(coords.shape[1])]
    formulas = [str(dataset.formulas[dataset.index_of(i)]) for i in ids]
    frame = pd.DataFrame({"id": ids, "formula": formulas})
    for k, axis in enumerate(axes):
        frame[axis] = coords[:, k]
    labels = dataset.labels.loc[ids].reset_index(drop=True)
    return pd.concat([frame, labels], axis=1)


def select_ids(dataset: CrystalDataset, target: str, n: int, split_seed: int = 0) -> list[str]:
    """The first ``n`` crystals having ``target`` in its canonical order (the test block comes first).

    Raises:
        CGCNNError: ``n`` is not positive.
    """
    if n < 1:
        raise CGCNNError(f"n must be at least 1, got {n}")
    return canonical_order(dataset, target, split_seed)[:n]


def crystal_features(
    model: str | Predictor,
    depth: str,
    ids: Sequence[str],
    dataset: CrystalDataset | None = None,
    batch_size: int = 256,
) -> tuple[list[str], np.ndarray, list[tuple[str, str]]]:
    """Features of one depth for dataset crystals, through the graph cache.

    Returns:
        ``(ids kept, (n_kept, dim) features, [(id, reason) of refused crystals])``.

    Raises:
        CGCNNError: unknown model, depth or crystal id.
    """
    from cgcnn.data.graph_cache import get_graphs
    from cgcnn.zoo import load_model

    predictor = load_model(model) if isinstance(model, str) else model
    _check_depths(predictor, [depth])
    dataset = dataset if dataset is not None else load_default_dataset()
    unknown = [i for i in ids if i not in dataset]
    if unknown:
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        raise CGCNNError(f"unknown crystal id(s) in dataset '{dataset.name}': {', '.join(unknown[:3])}{more}")
    graphs, skipped = get_graphs(dataset, ids, predictor.graph_params)
    kept = [i for i in dict.fromkeys(ids) if i in graphs]
    features = extract_features(predictor, [graphs[i] for i in kept], [depth], batch_size)[depth]
    return kept, features, skipped


def crystal_map(
    model: str | Predictor,
    depth: str,
    ids: Sequence[str],
    dataset: CrystalDataset | None = None,
    method: str = "pca",
) -> tuple[pd.DataFrame, Projection]:
    """Features of one depth mapped to 2-D, as a plotting table (see :func:`map_frame`) and the projection.

    Raises:
        CGCNNError: unknown model, depth, id or method; UMAP without ``umap-learn``.
    """
    dataset = dataset if dataset is not None else load_default_dataset()
    kept, features, _ = crystal_features(model, depth, ids, dataset)
    if method == "pca":
        projection = pca_map(features)
    elif method == "umap":
        projection = umap_map(features)
    else:
        raise CGCNNError(f"unknown map method {method!r}: pca or umap")
    return map_frame(dataset, kept, projection), projection
