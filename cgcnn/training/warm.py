"""What a warm worker keeps in memory between runs: pretrained models and featurised graphs.

Why: the job runner's workers are long-lived processes (:mod:`cgcnn.runs.jobs`). A fresh process spent about
20 s of each classroom run importing torch, reading the dataset, reading the graph cache and loading the
pretrained model before its first epoch. Kept here, the second run of a worker starts training in well under a
second. The embedded dataset is already cached per process by :func:`cgcnn.data.datasets.load_default_dataset`.

What is safe to share between runs:

* a pretrained :class:`~cgcnn.nn.predictor.Predictor` is only read (``prepare_transfer`` copies its weights
  into a new network), so one instance serves every run; file checkpoints are keyed by their modification time
  so a re-saved model is reloaded;
* a :class:`~cgcnn.data.graph.CrystalGraph` is immutable input data, keyed like the disk cache (dataset hash,
  graph parameters, element table).

The memory is bounded by what the server's datasets hold (the default dataset's graphs are a few hundred MB at
most); a worker that is replaced starts empty.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from cgcnn.data.datasets import CrystalDataset, load_default_dataset
from cgcnn.data.elements import original_table
from cgcnn.data.graph import BuildOptions, CrystalGraph, GraphParams
from cgcnn.data.graph_cache import CacheKey, get_graphs
from cgcnn.nn.predictor import Predictor

_LOCK = threading.Lock()
_MODELS: dict[tuple[str, int], Predictor] = {}
_GRAPHS: dict[tuple[str, int], dict[str, CrystalGraph]] = {}
_FAILED: dict[tuple[str, int], dict[str, str]] = {}


def cached_model(name_or_path: str) -> Predictor:
    """:func:`cgcnn.zoo.load_model`, loaded once per process (a file again when it changed on disk)."""
    from cgcnn.zoo import load_model

    path = Path(name_or_path)
    version = path.stat().st_mtime_ns if "/" in name_or_path and path.is_file() else 0
    key = (name_or_path, version)
    with _LOCK:
        model = _MODELS.get(key)
    if model is None:
        model = load_model(name_or_path)
        with _LOCK:
            _MODELS[key] = model
    return model


def cached_graphs(
    dataset: CrystalDataset,
    ids: Iterable[str],
    params: GraphParams,
    progress: Callable[[int, int], None] | None = None,
    options: BuildOptions | None = None,
) -> tuple[dict[str, CrystalGraph], list[tuple[str, str]]]:
    """:func:`cgcnn.data.graph_cache.get_graphs` (same arguments and result) through an in-memory layer."""
    wanted = list(dict.fromkeys(ids))
    options = options or BuildOptions()
    # The atom limit is part of this key (not of the file's): a failure kept here may be a refusal for size.
    key = (CacheKey.of(dataset, params, original_table(), options).filename(), options.max_atoms)
    with _LOCK:
        graphs = _GRAPHS.setdefault(key, {})
        failed = _FAILED.setdefault(key, {})
        missing = [i for i in wanted if i not in graphs and i not in failed]
    if missing:
        new_graphs, new_failures = get_graphs(dataset, missing, params, progress=progress, options=options)
        with _LOCK:
            graphs.update(new_graphs)
            failed.update(dict(new_failures))
    return {i: graphs[i] for i in wanted if i in graphs}, [(i, failed[i]) for i in wanted if i in failed]


def warm_up(models: Iterable[str] | None = None) -> None:
    """Load what most runs need before the first one is claimed: torch, the default dataset, the zoo models.

    Graphs are not built here (a class may never use some parameter sets); the first run that needs them
    reads them from the disk cache, and they stay for the next runs.
    """
    from cgcnn.zoo import original_names

    load_default_dataset()
    for name in original_names() if models is None else models:
        cached_model(name)


def clear() -> None:
    """Forget everything kept (tests; a worker asked to free memory)."""
    with _LOCK:
        _MODELS.clear()
        _GRAPHS.clear()
        _FAILED.clear()
