"""Disk cache of featurised crystal graphs, so a dataset is featurised once per parameter set.

One compressed ``.npz`` per (dataset, graph parameters) under ``$CGCNN_HOME/graphs`` (default
``~/.cache/cgcnn``). Its name and its recorded key hold everything that changes a graph: the dataset's content
hash, ``GraphParams.key()`` (the graph's definition and ``GRAPH_FORMAT_VERSION``), the element table's hash,
whether the radius may widen, and this file format's version; so a changed dataset or parameter never reads a
stale file, it just uses another one.

The atom limit (``BuildOptions.max_atoms``) is not part of the key: it decides whether a crystal gets a graph,
not what the graph is. It is applied on every read (a cached graph over the caller's limit is refused with the
same message as a fresh build), and a crystal refused only for its size is never recorded as a failure, so a
server that raises ``CGCNN_MAX_ATOMS`` builds it next time.

A file that cannot be read, whose key differs from the expected one, or whose arrays do not match their
recorded checksum is rebuilt with a warning. Crystals the featuriser refuses (an atom without neighbours, an
unknown element) are recorded in the file too and returned as ``(id, reason)``: never silently dropped.
Only per-crystal data that cannot be recomputed cheaply is stored (atomic numbers, neighbour indices,
distances, images, masks); element features and centre indices are rebuilt on load, bit-identical.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cgcnn.data.datasets import CrystalDataset
from cgcnn.data.elements import ElementTable, original_table
from cgcnn.data.graph import (
    GRAPH_FORMAT_VERSION,
    BuildOptions,
    CrystalGraph,
    GraphParams,
    TooManyAtomsError,
    check_atom_count,
    structure_to_graph,
)
from cgcnn.errors import CGCNNError

#: Version of this module's file layout; part of every key.
CACHE_FORMAT_VERSION = 1
#: Environment variable of the cache root.
HOME_ENV = "CGCNN_HOME"

#: Stored arrays (concatenated over crystals) and their on-disk dtypes, in checksum order.
_STORED = {
    "n_atoms": np.int32,
    "n_edges": np.int32,
    "radius": np.float64,
    "atomic_numbers": np.int16,
    "edge_src": np.int32,
    "distances": np.float64,
    "images": np.int32,
    "edge_mask": np.bool_,
}

Progress = Callable[[int, int], None]


class GraphCacheWarning(RuntimeWarning):
    """A cache file was unreadable, stale or corrupt and is being rebuilt."""


def cgcnn_home() -> Path:
    """Root of the project's per-user files.

    ``$CGCNN_HOME`` if set, else ``$XDG_CACHE_HOME/cgcnn``, else ``~/.cache/cgcnn``.
    """
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "cgcnn"


@dataclass(frozen=True)
class CacheKey:
    """Everything a cached graph depends on."""

    dataset_hash: str
    params_key: str
    table_hash: str
    graph_format: int = GRAPH_FORMAT_VERSION
    cache_format: int = CACHE_FORMAT_VERSION
    widen_radius: bool = False

    @classmethod
    def of(
        cls, dataset: CrystalDataset, params: GraphParams, table: ElementTable, options: BuildOptions | None = None
    ) -> CacheKey:
        """The key of ``dataset`` featurised with ``params`` and ``table`` (and ``options``' radius rule)."""
        widen = bool(options is not None and options.widen_radius)
        return cls(dataset.content_hash, params.key(), table.sha256, widen_radius=widen)

    def filename(self) -> str:
        """File name: readable prefixes of each hash plus a digest of the whole key."""
        digest = hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()
        return f"graphs-{self.dataset_hash[:12]}-{self.params_key[:12]}-{digest[:12]}.npz"


def cache_path(
    dataset: CrystalDataset,
    params: GraphParams,
    table: ElementTable | None = None,
    cache_dir: Path | None = None,
    options: BuildOptions | None = None,
) -> Path:
    """Where the graphs of ``dataset`` with ``params`` are (or would be) cached."""
    key = CacheKey.of(dataset, params, table or original_table(), options)
    return Path(cache_dir or cgcnn_home() / "graphs") / key.filename()


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name, dtype in _STORED.items():
        a = np.ascontiguousarray(arrays[name], dtype=dtype)
        digest.update(f"{name}:{a.dtype.str}:{a.shape}\n".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def _pack(graphs: dict[str, CrystalGraph]) -> dict[str, np.ndarray]:
    ids = list(graphs)
    gs = [graphs[i] for i in ids]

    def cat(name: str, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
        parts = [np.asarray(getattr(g, name)) for g in gs]
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(shape, dtype=dtype)

    images = cat("images", np.int64, (0, 3))
    if images.size and np.abs(images).max() > np.iinfo(np.int32).max:  # pragma: no cover - absurd cells
        raise ValueError("periodic image index too large to cache")
    return {
        "n_atoms": np.array([g.n_atoms for g in gs], dtype=np.int32),
        "n_edges": np.array([len(g.edge_src) for g in gs], dtype=np.int32),
        "radius": np.array([g.radius for g in gs], dtype=np.float64),
        "atomic_numbers": cat("atomic_numbers", np.int16, (0,)),
        "edge_src": cat("edge_src", np.int32, (0,)),
        "distances": cat("distances", np.float64, (0,)),
        "images": images.astype(np.int32).reshape(-1, 3),
        "edge_mask": cat("edge_mask", np.bool_, (0,)),
    }


def _unpack(ids: list[str], arrays: dict[str, np.ndarray], table: ElementTable) -> dict[str, CrystalGraph]:
    n_atoms, n_edges = arrays["n_atoms"].astype(np.int64), arrays["n_edges"].astype(np.int64)
    atom_off = np.concatenate(([0], np.cumsum(n_atoms)))
    edge_off = np.concatenate(([0], np.cumsum(n_edges)))
    z_all = arrays["atomic_numbers"].astype(np.int64)
    src_all = arrays["edge_src"].astype(np.int64)
    img_all = arrays["images"].astype(np.int64)
    out: dict[str, CrystalGraph] = {}
    for k, cid in enumerate(ids):
        n, e = int(n_atoms[k]), int(n_edges[k])
        if n == 0 or e % n:
            raise ValueError(f"inconsistent sizes for {cid}")
        z = z_all[atom_off[k] : atom_off[k + 1]]
        es = slice(edge_off[k], edge_off[k + 1])
        out[cid] = CrystalGraph(
            atomic_numbers=z,
            node_features=table.lookup(z),
            edge_src=src_all[es],
            edge_dst=np.repeat(np.arange(n, dtype=np.int64), e // n),
            distances=arrays["distances"][es],
            images=img_all[es],
            edge_mask=arrays["edge_mask"][es],
            radius=float(arrays["radius"][k]),
        )
    return out


def _read(path: Path, key: CacheKey, table: ElementTable) -> tuple[dict[str, CrystalGraph], dict[str, str]]:
    """Load a cache file; raise ValueError (with the reason) if it is unusable."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"unreadable ({type(exc).__name__}: {exc})") from None
    if meta.get("key") != dataclasses.asdict(key):
        raise ValueError("stale (it was written for another dataset, parameter set or code version)")
    if any(name not in arrays for name in _STORED) or meta.get("checksum") != _checksum(arrays):
        raise ValueError("corrupt (its arrays do not match their checksum)")
    ids = [str(i) for i in meta["ids"]]
    if len(ids) != len(arrays["n_atoms"]):
        raise ValueError("corrupt (id list and arrays disagree)")
    failures = {str(i): str(r) for i, r in meta.get("failures", [])}
    return _unpack(ids, arrays, table), failures


def _write(path: Path, key: CacheKey, graphs: dict[str, CrystalGraph], failures: dict[str, str]) -> None:
    """Write atomically (temp file + rename), so a crash never leaves a half-written cache behind."""
    arrays = _pack(graphs)
    meta = {
        "key": dataclasses.asdict(key),
        "ids": list(graphs),
        "failures": sorted(failures.items()),
        "checksum": _checksum(arrays),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    try:
        np.savez_compressed(tmp, meta=np.array(json.dumps(meta)), **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a full disk must not leave a half-written temp file behind


def featurize(
    dataset: CrystalDataset,
    ids: Iterable[str],
    params: GraphParams,
    table: ElementTable,
    progress: Progress | None = None,
    options: BuildOptions | None = None,
) -> tuple[dict[str, CrystalGraph], dict[str, str]]:
    """Featurise ``ids`` without any cache; refused crystals go to the returned ``{id: reason}``."""
    graphs, failures, _ = _featurize(dataset, list(ids), params, table, progress, options)
    return graphs, failures


def _featurize(
    dataset: CrystalDataset,
    ids: list[str],
    params: GraphParams,
    table: ElementTable,
    progress: Progress | None,
    options: BuildOptions | None,
) -> tuple[dict[str, CrystalGraph], dict[str, str], set[str]]:
    """:func:`featurize`, plus the ids refused only for their size (the caller's limit, not the crystal's fault)."""
    graphs: dict[str, CrystalGraph] = {}
    failures: dict[str, str] = {}
    too_large: set[str] = set()
    for k, cid in enumerate(ids):
        try:
            # Through the Structure, so cached graphs are bit-identical to structure_to_graph on
            # dataset.structure(cid) (pymatgen's Cartesian coordinates differ from a plain dot in the last bit).
            graphs[cid] = structure_to_graph(dataset.structure(cid), params, table, options)
        except TooManyAtomsError as exc:
            failures[cid] = str(exc)
            too_large.add(cid)
        except (CGCNNError, ValueError) as exc:
            failures[cid] = str(exc)
        if progress is not None:
            progress(k + 1, len(ids))
    return graphs, failures, too_large


def _within_limit(graphs: dict[str, CrystalGraph], options: BuildOptions) -> tuple[dict, dict[str, str]]:
    """``graphs`` split into those within ``options.max_atoms`` and ``{id: reason}`` for the others."""
    kept, refused = {}, {}
    for cid, graph in graphs.items():
        try:
            check_atom_count(graph.n_atoms, options)
        except TooManyAtomsError as exc:
            refused[cid] = str(exc)
        else:
            kept[cid] = graph
    return kept, refused


def get_graphs(
    dataset: CrystalDataset,
    ids: Iterable[str] | None,
    params: GraphParams,
    table: ElementTable | None = None,
    progress: Progress | None = None,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    options: BuildOptions | None = None,
) -> tuple[dict[str, CrystalGraph], list[tuple[str, str]]]:
    """Graphs of ``ids`` (all crystals when None), from the disk cache where possible.

    Crystals not yet cached are featurised and added to the cache file. A corrupt or stale file is rebuilt
    (with a :class:`GraphCacheWarning`); a cache folder that cannot be written only costs the caching.

    Args:
        dataset: the crystals; its content hash is part of the key.
        ids: which crystals; unknown ids raise ``KeyError``.
        params: graph parameters (the model's: ``Predictor.graph_params``).
        table: element feature table (default: the original ``atom_init.json``).
        progress: called as ``progress(done, total)`` while featurising the missing crystals.
        cache_dir: cache folder (default ``$CGCNN_HOME/graphs``).
        use_cache: False featurises everything and touches no file.
        options: the caller's limits (default :class:`~cgcnn.data.graph.BuildOptions`): the atom limit is
            applied to cached graphs too; a widening radius uses its own cache file.

    Returns:
        ``({id: graph}, [(id, reason), ...])``: the graphs in the order of ``ids``, and the crystals the
        featuriser refused, with its message.
    """
    table = table or original_table()
    options = options or BuildOptions()
    wanted = list(dataset.ids) if ids is None else list(dict.fromkeys(ids))
    for cid in wanted:
        dataset.index_of(cid)  # KeyError with a readable message
    if not use_cache:
        graphs, failures = featurize(dataset, wanted, params, table, progress, options)
        return {i: graphs[i] for i in wanted if i in graphs}, [(i, failures[i]) for i in wanted if i in failures]

    key = CacheKey.of(dataset, params, table, options)
    path = Path(cache_dir or cgcnn_home() / "graphs") / key.filename()
    cached: dict[str, CrystalGraph] = {}
    failed: dict[str, str] = {}
    if path.exists():
        try:
            cached, failed = _read(path, key, table)
        except ValueError as exc:
            warnings.warn(f"graph cache {path} is {exc}; rebuilding it", GraphCacheWarning, stacklevel=2)
            cached, failed = {}, {}
    missing = [i for i in wanted if i not in cached and i not in failed]
    too_large: dict[str, str] = {}
    if missing:
        new_graphs, new_failures, size_refused = _featurize(dataset, missing, params, table, progress, options)
        # A crystal refused for its size alone is the caller's limit, not a fact about the crystal: not stored.
        too_large = {i: new_failures.pop(i) for i in size_refused}
        cached.update(new_graphs)
        failed.update(new_failures)
        try:
            _write(path, key, cached, failed)
        except OSError as exc:
            warnings.warn(f"could not write graph cache {path}: {exc}", GraphCacheWarning, stacklevel=2)
    within, over = _within_limit({i: cached[i] for i in wanted if i in cached}, options)
    refused = {**failed, **too_large, **over}
    return within, [(i, refused[i]) for i in wanted if i in refused]
