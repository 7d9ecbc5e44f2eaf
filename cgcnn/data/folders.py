"""Datasets on disk: CIF files, the CGCNN folder format (``id_prop.csv`` + CIFs) and zip uploads of it."""

from __future__ import annotations

import functools
import io
import json
import shutil
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from cgcnn.data.crystal_io import read_crystal_bytes, read_file_bytes
from cgcnn.data.datasets import CrystalDataset, DatasetError, dataset_from_structures
from cgcnn.data.elements import original_table_path
from cgcnn.data.screen import time_limit
from cgcnn.data.splits import Split
from cgcnn.errors import CrystalInputError

#: Largest zip file read (compressed bytes); the caps on what is inside come from :func:`zip_caps`.
MAX_ZIP_BYTES = 200 * 1024**2
#: Members smaller than this are not held to the compression-ratio cap (tiny files compress arbitrarily well).
RATIO_FLOOR_BYTES = 64 * 1024


@dataclass(frozen=True)
class ZipCaps:
    """What one uploaded zip may hold (the server's ``CGCNN_ZIP_*`` limits; see :mod:`cgcnn.settings`)."""

    max_members: int = 20_000
    max_total_bytes: int = 500 * 1024**2
    max_member_bytes: int = 20 * 1024**2
    max_ratio: float = 200.0
    max_label_lines: int = 200_000


def zip_caps() -> ZipCaps:
    """The server's zip limits, read from the environment now."""
    from cgcnn.settings import current_limits

    limits = current_limits()
    return ZipCaps(
        max_members=limits.zip_max_members,
        max_total_bytes=int(limits.zip_max_total_mb * 1024**2),
        max_member_bytes=int(limits.zip_max_member_mb * 1024**2),
        max_ratio=limits.zip_max_ratio,
        max_label_lines=limits.zip_max_label_lines,
    )


def check_zip_members(infos: Sequence[zipfile.ZipInfo], label: str, caps: ZipCaps) -> None:
    """Refuse a zip from its directory alone (nothing decompressed): members, sizes, compression ratio.

    Raises:
        DatasetError: naming the cap, its variable and the member that broke it.
    """
    if caps.max_members and len(infos) > caps.max_members:
        raise DatasetError(
            f"{label} holds {len(infos):,} files; the limit is {caps.max_members:,} (CGCNN_ZIP_MAX_MEMBERS)"
        )
    total = sum(i.file_size for i in infos)
    if caps.max_total_bytes and total > caps.max_total_bytes:
        raise DatasetError(
            f"{label} unpacks to {total / 1024**2:,.0f} MB; the limit is {caps.max_total_bytes / 1024**2:,.0f} MB "
            "(CGCNN_ZIP_MAX_TOTAL_MB)"
        )
    for info in infos:
        if caps.max_member_bytes and info.file_size > caps.max_member_bytes:
            raise DatasetError(
                f"{label}: {info.filename} unpacks to {info.file_size / 1024**2:,.1f} MB; the limit per file is "
                f"{caps.max_member_bytes / 1024**2:,.0f} MB (CGCNN_ZIP_MAX_MEMBER_MB)"
            )
        ratio = info.file_size / max(info.compress_size, 1)
        if caps.max_ratio and info.file_size > RATIO_FLOOR_BYTES and ratio > caps.max_ratio:
            raise DatasetError(
                f"{label}: {info.filename} is compressed {ratio:,.0f} to 1, past the limit of {caps.max_ratio:g} "
                "(CGCNN_ZIP_MAX_RATIO): a zip bomb or a file of repeated lines"
            )


def read_zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str, caps: ZipCaps) -> bytes:
    """One member's bytes, read in chunks and never past the per-file cap (a lying header cannot inflate it).

    Raises:
        DatasetError: damaged (bad CRC, truncated) or larger than the cap.
    """
    limit = caps.max_member_bytes or None
    chunks, size = [], 0
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(1 << 20):
                size += len(chunk)
                if limit is not None and size > limit:
                    raise DatasetError(
                        f"{label}: {info.filename} unpacks to more than {limit / 1024**2:,.0f} MB "
                        "(CGCNN_ZIP_MAX_MEMBER_MB)"
                    )
                chunks.append(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError) as exc:
        reason = "bad CRC" if "CRC" in str(exc) else str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DatasetError(
            f"{label}: {info.filename} is damaged ({reason or type(exc).__name__}); zip it again"
        ) from None
    return b"".join(chunks)


# --------------------------------------------------------------------------------------------------------------
# CIF files and the CGCNN folder format
# --------------------------------------------------------------------------------------------------------------


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
    cif_bytes: Callable[[str], bytes | None],
    extra_cif_ids: Iterable[str],
    source: str,
    name: str,
    atom_init: str | None,
    file_seconds: float | None = None,
) -> CrystalDataset:
    """Shared core of the folder, zip and file-list readers: parse CIFs, report every failure.

    Every CIF is checked and parsed by :func:`~cgcnn.data.crystal_io.read_crystal_bytes`, as an upload to the
    Predict page is (the same reason in the same words); with ``file_seconds`` (set in a parser worker) a CIF
    that takes longer is rejected by name and the others go on. ``cif_bytes`` gives a CIF's bytes (None: no
    such file) and may refuse it with a :class:`~cgcnn.errors.CrystalInputError` (too large, unreadable).
    """
    from cgcnn.settings import current_limits, label_range_problem

    max_atoms, max_label = current_limits().max_atoms, current_limits().max_label  # read once per folder
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
        if (np.abs(values) > max_label).any():  # 1e300 passes as finite, then rmse and r2 overflow to null
            rejected.append((cid, label_range_problem(values, max_label)))
            continue
        if np.isnan(values).all():  # a crystal missing one of several labels still teaches the others
            rejected.append((cid, "no label value (NaN or empty)"))
            continue
        name = f"{cid}.cif"
        try:
            data = cif_bytes(cid)
            if data is None:
                rejected.append((cid, f"no CIF file {name}"))
                continue
            with time_limit(file_seconds, name):
                entries.append((cid, read_crystal_bytes(name, data, max_atoms)))
        except CrystalInputError as exc:
            rejected.append((cid, str(exc).removeprefix(f"{name}: ")))
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

    def cif_bytes(cid: str) -> bytes | None:
        path = directory / f"{cid}.cif"
        return read_file_bytes(path) if path.is_file() else None

    extra = [p.stem for p in sorted(directory.glob("*.cif"))]
    return _assemble(frame, cif_bytes, extra, "user_folder", directory.name, atom_init)


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

    def cif_bytes(cid: str) -> bytes | None:
        path = by_id.get(cid)
        return read_file_bytes(path) if path is not None and path.is_file() else None

    return _assemble(frame, cif_bytes, list(by_id), "user_files", labels_path.stem, None)


def read_zip(
    data: Path | str | bytes,
    max_bytes: int = MAX_ZIP_BYTES,
    caps: ZipCaps | None = None,
    file_seconds: float | None = None,
) -> CrystalDataset:
    """Read a zip holding a CGCNN data folder (at the top level or inside one folder), without extracting it.

    Members are read one at a time, when needed, in bounded chunks; every CIF passes the crystal screen
    (:mod:`cgcnn.data.screen`) before pymatgen sees it.

    Args:
        data: path of the zip, or its bytes (an upload).
        max_bytes: refuse larger zips.
        caps: members, uncompressed sizes, compression ratio and label lines (default: :func:`zip_caps`).
        file_seconds: time limit per CIF (only in a process's main thread, see
            :func:`~cgcnn.data.screen.time_limit`).

    Raises:
        DatasetError: not a zip, too large, past a cap, a damaged member, no ``id_prop.csv``, ambiguous layout,
            or no usable crystal.
    """
    caps = caps or zip_caps()
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
        every = [i for i in archive.infolist() if not i.is_dir()]
        check_zip_members(every, label, caps)  # hidden members too: padding in .junk files is still disk
        infos = [i for i in every if not _ignored_member(i.filename)]
        id_props = [i for i in infos if PurePosixPath(i.filename).name == "id_prop.csv"]
        if not id_props:
            raise DatasetError(
                f"{label} has no id_prop.csv (expected the CGCNN folder format: id_prop.csv + <id>.cif files)"
            )
        if len(id_props) > 1:
            raise DatasetError(f"{label} has several id_prop.csv files; put one data folder in the zip")
        root = PurePosixPath(id_props[0].filename).parent
        members = {PurePosixPath(i.filename).name: i for i in infos if PurePosixPath(i.filename).parent == root}

        def read(name: str) -> bytes | None:
            info = members.get(name)
            return read_zip_member(archive, info, label, caps) if info else None

        def read_text(name: str) -> str | None:
            data = read(name)
            return None if data is None else data.decode("utf-8", errors="replace")

        labels_text = read_text("id_prop.csv") or ""
        lines = labels_text.count("\n") + 1
        if caps.max_label_lines and lines > caps.max_label_lines:
            raise DatasetError(
                f"{label}: id_prop.csv has {lines:,} lines; the limit is {caps.max_label_lines:,} "
                "(CGCNN_ZIP_MAX_LABEL_LINES)"
            )
        frame = _read_label_table(labels_text, f"{label}:id_prop.csv", header=False)
        extra = [n[: -len(".cif")] for n in members if n.lower().endswith(".cif")]
        return _assemble(
            frame, lambda cid: read(f"{cid}.cif"), extra, "user_zip", label, read_text("atom_init.json"), file_seconds
        )


def read_zip_once(path: Path | str, file_seconds: float | None = None) -> CrystalDataset:
    """:func:`read_zip` of a zip file, parsed once: the dataset is kept beside it as ``<zip>.dataset.npz``.

    An upload is read when it is saved; reruns of the page and the job workers then load the arrays instead of
    parsing every CIF again. The cache is checked by its content hash (:func:`~cgcnn.data.datasets.read_asset`)
    and rebuilt if it is missing or damaged; a process also keeps the last few in memory.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"zip file not found: {path}")
    stat = path.stat()
    return _read_zip_once(str(path.resolve()), stat.st_mtime_ns, stat.st_size, file_seconds)


@functools.lru_cache(maxsize=8)
def _read_zip_once(path_text: str, mtime_ns: int, size: int, file_seconds: float | None) -> CrystalDataset:
    import dataclasses

    from cgcnn.data.datasets import read_asset, write_asset

    path = Path(path_text)
    cached = path.with_name(path.name + ".dataset.npz")
    if cached.is_file() and cached.stat().st_mtime_ns >= mtime_ns:
        try:
            dataset = read_asset(cached)
        except DatasetError:
            pass  # damaged or from another version: parse again
        else:
            atom_init = dataset.metadata.get("atom_init")
            return dataclasses.replace(dataset, atom_init=atom_init) if atom_init else dataset
    dataset = read_zip(path, file_seconds=file_seconds)
    meta = {"rejected_ids": [list(r) for r in dataset.rejected], "atom_init": dataset.atom_init, "zip": path.name}
    try:
        write_asset(dataset, cached, meta)
    except OSError:  # a read-only or full disk: the parse is still good, only not kept
        cached.with_suffix(".tmp.npz").unlink(missing_ok=True)
    return dataset


def _ignored_member(name: str) -> bool:
    """Skip macOS resource forks and hidden files that zip tools add."""
    parts = PurePosixPath(name).parts
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


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
    shutil.copyfile(original_table_path(), out / "atom_init.json")
    if split is not None:
        (out / "split.json").write_text(json.dumps(split.to_dict(), indent=1) + "\n")
    return out
