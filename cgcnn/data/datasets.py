"""Crystal datasets: compact arrays with labels and provenance, and the embedded default set.

A :class:`CrystalDataset` holds crystals as compact arrays (lattice, atomic numbers, fractional coordinates)
plus a labels table with the provenance of every value. Structures are built as pymatgen objects only on
request, so loading the ~6,300-crystal default set takes well under a second. Splits live in
:mod:`cgcnn.data.splits`, files and folders in :mod:`cgcnn.data.folders`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Lattice, Structure

from cgcnn.errors import CGCNNError
from cgcnn.paths import project_path

#: File name of the embedded default dataset inside ``assets/``.
DEFAULT_ASSET_NAME = "mp_default.npz"
#: Environment variable that points :func:`load_default_dataset` at another asset file.
DATASET_ENV = "CGCNN_DATASET"
#: Version of the array layout of the ``.npz`` asset (bump when the layout changes meaning).
ASSET_FORMAT_VERSION = 1
#: Elements heavier than this are dropped by ``drop_heavy=True`` (Hg is 80).
HEAVY_Z = 80

#: Units of the default dataset's targets (cards, tables, axes).
TARGET_UNITS = {
    "band_gap": "eV",
    "formation_energy_per_atom": "eV/atom",
    "log10_K_VRH": "log10(GPa)",
    "log10_G_VRH": "log10(GPa)",
    "poisson_ratio": "dimensionless",
    "e_above_hull": "eV/atom",
    "refractive_index": "dimensionless",
}

#: Arrays that define a dataset's content, in hashing order.
_HASHED_ARRAYS = (
    "ids",
    "formulas",
    "lattices",
    "n_sites",
    "species",
    "frac_coords",
    "label_names",
    "labels",
    "label_source",
    "source_keys",
    "structure_source",
)


class DatasetError(CGCNNError):
    """A dataset, asset or uploaded file that cannot be used; the message is meant for the user."""


def default_asset_path() -> Path:
    """Where the default dataset lives: ``$CGCNN_DATASET`` if set, else ``assets/`` beside ``cgcnn/``."""
    override = os.environ.get(DATASET_ENV)
    if override:
        return Path(override).expanduser()
    return project_path("assets", DEFAULT_ASSET_NAME)


# --------------------------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------------------------


def _canonical_bytes(name: str, array: np.ndarray) -> bytes:
    """Bytes of an array that do not depend on platform, numpy version or memory layout."""
    a = np.asarray(array)
    if a.dtype.kind == "U":
        body = "\x1f".join(a.ravel().tolist()).encode()
        dtype = "str"
    elif a.dtype.kind == "f":
        body = np.ascontiguousarray(a, dtype="<f8").tobytes()
        dtype = "<f8"
    else:
        body = np.ascontiguousarray(a, dtype="<i8").tobytes()
        dtype = "<i8"
    header = json.dumps([name, dtype, list(a.shape)]).encode()
    return header + b"\n" + body + b"\n"


def content_hash_of_arrays(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of a dataset's defining arrays (see ``_HASHED_ARRAYS``).

    Computed from values, not file bytes, so re-compressing the asset keeps the hash and any change of a
    coordinate, label or provenance changes it. Caches and trained models record this hash.
    """
    digest = hashlib.sha256(f"cgcnn-dataset-v{ASSET_FORMAT_VERSION}\n".encode())
    for name in _HASHED_ARRAYS:
        digest.update(_canonical_bytes(name, arrays[name]))
    return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class CrystalDataset:
    """Crystals with labels, stored as flat arrays.

    Attributes:
        ids: ``(N,)`` crystal ids (unique), e.g. Materials Project ids.
        formulas: ``(N,)`` reduced formulas.
        lattices: ``(N, 3, 3)`` lattice vectors as rows, Å.
        offsets: ``(N + 1,)`` site ranges: crystal ``i`` owns sites ``offsets[i]:offsets[i + 1]``.
        species: ``(S,)`` atomic numbers of all sites, concatenated.
        frac_coords: ``(S, 3)`` fractional coordinates, concatenated.
        labels: labels table, index = id, one column per target, NaN where missing.
        label_sources: same shape as ``labels``: the source key of each value, None where missing.
        structure_sources: source key of each structure, index = id.
        sources: description of every source key (dataset, version, citation).
        name: short human name of the dataset.
        metadata: free-form build information (counts, rules), as stored in the asset.
        rejected: ``(id, reason)`` of crystals that could not be read; never silently dropped.
        atom_init: element feature table text shipped with a CGCNN folder (``atom_init.json``), if any.
    """

    ids: np.ndarray
    formulas: np.ndarray
    lattices: np.ndarray
    offsets: np.ndarray
    species: np.ndarray
    frac_coords: np.ndarray
    labels: pd.DataFrame
    label_sources: pd.DataFrame
    structure_sources: pd.Series
    sources: dict[str, str] = field(default_factory=dict)
    name: str = "dataset"
    metadata: dict[str, Any] = field(default_factory=dict)
    rejected: tuple[tuple[str, str], ...] = ()
    atom_init: str | None = None

    def __post_init__(self) -> None:
        n = len(self.ids)
        if len(set(self.ids.tolist())) != n:
            raise DatasetError(f"dataset '{self.name}' has duplicate crystal ids")
        if self.lattices.shape != (n, 3, 3) or len(self.offsets) != n + 1 or len(self.formulas) != n:
            raise DatasetError(f"dataset '{self.name}': inconsistent array shapes")
        if self.species.shape[0] != self.offsets[-1] or self.frac_coords.shape != (self.offsets[-1], 3):
            raise DatasetError(f"dataset '{self.name}': site arrays do not match the offsets")
        object.__setattr__(self, "_index", {cid: i for i, cid in enumerate(self.ids.tolist())})

    def __repr__(self) -> str:
        return (
            f"CrystalDataset(name={self.name!r}, n_crystals={len(self)}, targets={self.targets}, "
            f"n_rejected={len(self.rejected)})"
        )

    # ---- basic queries ------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, crystal_id: object) -> bool:
        return crystal_id in self._index  # type: ignore[attr-defined]

    @property
    def targets(self) -> list[str]:
        """Names of the label columns."""
        return list(self.labels.columns)

    def index_of(self, crystal_id: str) -> int:
        """Row of a crystal id.

        Raises:
            KeyError: with a readable message if the id is unknown.
        """
        try:
            return self._index[crystal_id]  # type: ignore[attr-defined]
        except KeyError:
            raise KeyError(f"no crystal '{crystal_id}' in dataset '{self.name}'") from None

    def arrays(self, crystal_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(lattice (3, 3), atomic_numbers (n,), frac_coords (n, 3))`` of one crystal, without pymatgen."""
        i = self.index_of(crystal_id)
        lo, hi = self.offsets[i], self.offsets[i + 1]
        return self.lattices[i], self.species[lo:hi], self.frac_coords[lo:hi]

    def structure(self, crystal_id: str) -> Structure:
        """The crystal as a pymatgen ``Structure`` (a fresh object each call)."""
        lattice, z, frac = self.arrays(crystal_id)
        return Structure(Lattice(lattice), z.tolist(), frac, coords_are_cartesian=False)

    def structures(self, ids: Iterable[str] | None = None) -> list[Structure]:
        """Structures of ``ids`` (all crystals when None), in the given order."""
        return [self.structure(cid) for cid in (self.ids if ids is None else ids)]

    def with_target(self, target: str) -> list[str]:
        """Ids that have a value for ``target``, in dataset order.

        Raises:
            DatasetError: if the dataset has no such target.
        """
        self._check_target(target)
        mask = self.labels[target].notna().to_numpy()
        return self.ids[mask].tolist()

    def _check_target(self, target: str) -> None:
        if target not in self.labels.columns:
            raise DatasetError(
                f"dataset '{self.name}' has no target '{target}'; it has: {', '.join(self.labels.columns)}"
            )

    # ---- derived datasets ---------------------------------------------------------------------------------

    def subset(self, ids: Iterable[str], name: str | None = None) -> CrystalDataset:
        """A new dataset with only ``ids``, in the given order (its content hash differs).

        Raises:
            KeyError: if an id is not in this dataset.
        """
        rows = np.array([self.index_of(cid) for cid in ids], dtype=np.int64)
        sizes = np.diff(self.offsets)[rows]
        site_rows = (
            np.concatenate([np.arange(self.offsets[r], self.offsets[r + 1]) for r in rows])
            if len(rows)
            else np.zeros(0, dtype=np.int64)
        )
        sub_ids = self.ids[rows]
        rejected_ids = set(sub_ids.tolist())
        return dataclasses.replace(
            self,
            ids=sub_ids,
            formulas=self.formulas[rows],
            lattices=self.lattices[rows],
            offsets=np.concatenate(([0], np.cumsum(sizes))).astype(np.int64),
            species=self.species[site_rows],
            frac_coords=self.frac_coords[site_rows],
            labels=self.labels.loc[sub_ids],
            label_sources=self.label_sources.loc[sub_ids],
            structure_sources=self.structure_sources.loc[sub_ids],
            name=name or f"{self.name} (subset of {len(rows)})",
            rejected=tuple(r for r in self.rejected if r[0] in rejected_ids),
        )

    def without_heavy(self, max_z: int = HEAVY_Z) -> CrystalDataset:
        """Drop crystals containing any element with Z > ``max_z`` (Hg = 80 by default)."""
        heavy = np.maximum.reduceat(self.species, self.offsets[:-1]) > max_z if len(self) else np.zeros(0, bool)
        return self.subset(self.ids[~heavy].tolist(), name=f"{self.name} (Z <= {max_z})")

    # ---- hashing ------------------------------------------------------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The defining arrays (the asset layout): what :func:`content_hash_of_arrays` hashes."""
        label_names = np.array(self.targets, dtype=str)
        source_keys = np.array(sorted(self.sources), dtype=str)
        code = {k: i + 1 for i, k in enumerate(source_keys.tolist())}
        label_source = np.zeros(self.labels.shape, dtype=np.int8)
        for j, col in enumerate(label_names.tolist()):
            values = self.label_sources[col].to_numpy()
            label_source[:, j] = [code.get(v, 0) if isinstance(v, str) else 0 for v in values]
        structure_source = np.array(
            [code.get(v, 0) for v in self.structure_sources.loc[self.ids].tolist()], dtype=np.int8
        )
        return {
            "ids": self.ids.astype(str),
            "formulas": self.formulas.astype(str),
            "lattices": self.lattices,
            "n_sites": np.diff(self.offsets).astype(np.int32),
            "species": self.species.astype(np.uint8),
            "frac_coords": self.frac_coords,
            "label_names": label_names,
            "labels": self.labels.to_numpy(dtype=np.float64),
            "label_source": label_source,
            "source_keys": source_keys,
            "structure_source": structure_source,
        }

    @functools.cached_property
    def content_hash(self) -> str:
        """SHA-256 of structures, labels and provenance; the key of caches and run records."""
        return content_hash_of_arrays(self.to_arrays())

    def label_counts(self) -> dict[str, int]:
        """Number of crystals with a value, per target."""
        return {c: int(self.labels[c].notna().sum()) for c in self.labels.columns}


def dataset_from_arrays(
    arrays: dict[str, np.ndarray],
    sources: dict[str, str] | None = None,
    name: str = "dataset",
    metadata: dict[str, Any] | None = None,
    rejected: Sequence[tuple[str, str]] = (),
) -> CrystalDataset:
    """Build a dataset from the asset layout (see :meth:`CrystalDataset.to_arrays`)."""
    ids = np.asarray(arrays["ids"]).astype(str)
    names = [str(x) for x in np.asarray(arrays["label_names"]).tolist()]
    keys = [str(x) for x in np.asarray(arrays["source_keys"]).tolist()]
    key_of = np.array([None, *keys], dtype=object)
    n_sites = np.asarray(arrays["n_sites"], dtype=np.int64)
    labels = pd.DataFrame(np.asarray(arrays["labels"], dtype=np.float64), index=ids, columns=names)
    labels.index.name = "id"
    label_sources = pd.DataFrame(key_of[np.asarray(arrays["label_source"], dtype=np.int64)], index=ids, columns=names)
    label_sources.index.name = "id"
    structure_sources = pd.Series(
        key_of[np.asarray(arrays["structure_source"], dtype=np.int64)], index=ids, name="structure_source"
    )
    return CrystalDataset(
        ids=ids,
        formulas=np.asarray(arrays["formulas"]).astype(str),
        lattices=np.asarray(arrays["lattices"], dtype=np.float64).reshape(-1, 3, 3),
        offsets=np.concatenate(([0], np.cumsum(n_sites))).astype(np.int64),
        species=np.asarray(arrays["species"], dtype=np.int64),
        frac_coords=np.asarray(arrays["frac_coords"], dtype=np.float64).reshape(-1, 3),
        labels=labels,
        label_sources=label_sources,
        structure_sources=structure_sources,
        sources=dict(sources or {k: k for k in keys}),
        name=name,
        metadata=dict(metadata or {}),
        rejected=tuple((str(a), str(b)) for a, b in rejected),
    )


def dataset_from_structures(
    entries: Sequence[tuple[str, Structure]],
    labels: pd.DataFrame,
    source: str,
    source_description: str,
    name: str,
    rejected: Sequence[tuple[str, str]] = (),
    atom_init: str | None = None,
) -> CrystalDataset:
    """Build a dataset from ``(id, Structure)`` pairs and a labels table (index = id) from one source."""
    ids = np.array([cid for cid, _ in entries], dtype=str)
    structures = [s for _, s in entries]
    n_sites = np.array([len(s) for s in structures], dtype=np.int64)
    lab = labels.reindex(ids).astype(np.float64)
    lab.index.name = "id"
    src = pd.DataFrame(np.where(lab.notna().to_numpy(), source, None), index=lab.index, columns=lab.columns)
    return CrystalDataset(
        ids=ids,
        formulas=np.array([s.composition.reduced_formula for s in structures], dtype=str),
        lattices=np.array([s.lattice.matrix for s in structures], dtype=np.float64).reshape(-1, 3, 3),
        offsets=np.concatenate(([0], np.cumsum(n_sites))).astype(np.int64),
        species=np.array([sp.Z for s in structures for sp in s.species], dtype=np.int64),
        frac_coords=np.array([c for s in structures for c in s.frac_coords], dtype=np.float64).reshape(-1, 3),
        labels=lab,
        label_sources=src,
        structure_sources=pd.Series(source, index=ids, name="structure_source", dtype=object),
        sources={source: source_description},
        name=name,
        rejected=tuple(rejected),
        atom_init=atom_init,
    )


# --------------------------------------------------------------------------------------------------------------
# The embedded default dataset
# --------------------------------------------------------------------------------------------------------------


def read_asset(path: Path) -> CrystalDataset:
    """Read a dataset ``.npz`` written by :func:`write_asset` and check its content hash.

    Raises:
        DatasetError: missing or unreadable file, or content that does not match its recorded hash.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            f"dataset file not found: {path} (build it with `python -m cgcnn data build-default`, "
            f"or point ${DATASET_ENV} at a dataset .npz)"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = json.loads(str(arrays.pop("metadata")))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"cannot read dataset file {path}: {exc}") from None
    missing = [k for k in _HASHED_ARRAYS if k not in arrays]
    if missing:
        raise DatasetError(f"dataset file {path} lacks arrays {missing}; it is not a cgcnn dataset")
    if meta.get("format_version") != ASSET_FORMAT_VERSION:
        raise DatasetError(
            f"dataset file {path} has format version {meta.get('format_version')}, this code reads "
            f"{ASSET_FORMAT_VERSION}"
        )
    actual = content_hash_of_arrays(arrays)
    if actual != meta.get("content_hash"):
        raise DatasetError(
            f"dataset file {path} is corrupt or was modified: content hash {actual[:12]}… does not match the "
            f"recorded {str(meta.get('content_hash'))[:12]}…"
        )
    dataset = dataset_from_arrays(
        arrays,
        sources=meta.get("sources"),
        name=meta.get("name", path.stem),
        metadata=meta,
        rejected=[tuple(r) for r in meta.get("rejected_ids", [])],
    )
    dataset.__dict__["content_hash"] = actual  # already computed: seed the cached property
    return dataset


def write_asset(dataset: CrystalDataset, path: Path, metadata: dict[str, Any]) -> str:
    """Write ``dataset`` as a compressed ``.npz`` with ``metadata`` (JSON) and its content hash; return it."""
    arrays = dataset.to_arrays()
    digest = content_hash_of_arrays(arrays)
    meta = {
        **metadata,
        "format_version": ASSET_FORMAT_VERSION,
        "content_hash": digest,
        "sources": dataset.sources,
        "name": dataset.name,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, metadata=np.array(json.dumps(meta, sort_keys=True)), **arrays)
    os.replace(tmp, path)
    return digest


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int, drop_heavy: bool) -> CrystalDataset:
    dataset = read_asset(Path(path))
    return dataset.without_heavy() if drop_heavy else dataset


def load_default_dataset(drop_heavy: bool = False) -> CrystalDataset:
    """The embedded default dataset (Materials Project crystals; see ``assets/README.md``), cached per process.

    Args:
        drop_heavy: drop crystals with any element Z > 80; this changes the content hash and therefore the
            canonical split, so pretraining and fine-tuning must use the same choice.

    Raises:
        DatasetError: if the asset is missing, unreadable or does not match its recorded content hash.
    """
    path = default_asset_path().resolve()
    mtime = path.stat().st_mtime_ns if path.is_file() else -1
    return _load_cached(str(path), mtime, bool(drop_heavy))
