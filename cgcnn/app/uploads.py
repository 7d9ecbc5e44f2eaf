"""Crystal files uploaded to the viewer and the predict page: unpacked, parsed and predicted with one message each.

A bad file never stops the others: each is parsed on its own and its error is returned by name. The rules and
their words are :mod:`cgcnn.data.crystal_io`'s (as ``python -m cgcnn predict`` and training zips), the numbers
:func:`cgcnn.nn.predictor.predict_crystals`'; this module unpacks uploads and lays the numbers out as a table.
"""

from __future__ import annotations

import io
import itertools
import zipfile
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

import pandas as pd

from cgcnn.data.crystal_io import check_size, is_crystal_name
from cgcnn.data.parse_pool import shared_pool
from cgcnn.errors import CrystalInputError
from cgcnn.settings import current_limits

#: Largest upload the app accepts (MB); keep ``server.maxUploadSize`` in ``.streamlit/config.toml`` equal.
MAX_UPLOAD_MB = 50
MAX_ZIP_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024**2

#: Crystal files accepted by the predict page in one go.
MAX_PREDICT_FILES = 500
#: Files read from an upload and parsed together (the rest of a zip stays compressed meanwhile).
PARSE_CHUNK = 32


def structure_from_upload(name: str, data: bytes):
    """Parse one uploaded crystal file (CIF, POSCAR/CONTCAR or pymatgen JSON by extension) out of this process.

    The file is screened and parsed by :func:`~cgcnn.data.parse_pool.shared_pool` under the server's time and
    memory limits, so a hostile file cannot stall or exhaust the app.

    Raises:
        CrystalInputError: too large, refused by the screen, too slow, or unreadable; the message starts with
            the file name.
    """
    check_size(name, len(data))  # before the bytes travel to a worker
    return shared_pool().parse(name, data, max_atoms=current_limits().max_atoms)


def graph_builder_for_upload(name: str):
    """How the viewer builds an uploaded crystal's graphs: in the parse pool, never in the page process.

    Returns ``build(structure, params) -> CrystalGraph`` (what :func:`cgcnn.data.graph.structure_to_graph` does,
    under the worker's memory and time caps, with the server's ``CGCNN_MAX_ATOMS``; a refusal names the file).
    """
    from cgcnn.data.graph import BuildOptions

    options = BuildOptions(max_atoms=current_limits().max_atoms)
    return lambda structure, params: shared_pool().build_graph(name, structure, params, options)


def expand_uploads(files: list[tuple[str, bytes]]) -> tuple[list[tuple[str, bytes]], list[str]]:
    """Uploaded files with zips opened: ``([(name, bytes)] of crystal files, [errors])``.

    See :func:`iter_uploads` (this collects it; the predict page streams instead).
    """
    errors: list[str] = []
    return list(iter_uploads(files, errors)), errors


def iter_uploads(files: list[tuple[str, bytes]], errors: list[str]) -> Iterator[tuple[str, bytes]]:
    """The crystal files of an upload, one at a time, zips opened; problems are appended to ``errors``.

    A zip contributes its ``.cif``, ``.json``, ``POSCAR*``/``CONTCAR*``/``.vasp`` members (no ``id_prop.csv``
    needed); a bad zip is one error. The server's zip caps apply (members, sizes, compression ratio), each
    member is read in bounded chunks only when it is its turn, and at most :data:`MAX_PREDICT_FILES` files are
    read at all.
    """
    from cgcnn.data.datasets import DatasetError
    from cgcnn.data.folders import check_zip_members, read_zip_member, zip_caps

    caps = zip_caps()
    count = 0
    for name, data in files:
        if len(data) > MAX_ZIP_UPLOAD_BYTES:
            errors.append(f"{name}: {len(data) / 1024**2:.1f} MB is over the {MAX_UPLOAD_MB} MB upload limit")
            continue
        if not name.lower().endswith(".zip"):
            if count >= MAX_PREDICT_FILES:
                errors.append(f"only the first {MAX_PREDICT_FILES} crystal files are predicted")
                return
            try:
                check_size(name, len(data))
            except CrystalInputError as exc:
                errors.append(str(exc))
                continue
            count += 1
            yield name, data
            continue
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                check_zip_members([i for i in archive.infolist() if not i.is_dir()], name, caps)  # hidden too
                members = [
                    i
                    for i in archive.infolist()
                    if not i.is_dir()
                    and not PurePosixPath(i.filename).name.startswith((".", "__"))
                    and is_crystal_name(PurePosixPath(i.filename).name)
                ]
                check_zip_members(members, name, caps)
                if not members:
                    errors.append(f"{name}: the zip holds no crystal file (.cif, .json, POSCAR)")
                for info in members:
                    if count >= MAX_PREDICT_FILES:
                        errors.append(f"{name}: only the first {MAX_PREDICT_FILES} crystal files are read")
                        return
                    member = f"{name}/{info.filename}"
                    try:
                        check_size(member, info.file_size)  # as its header says; the read is bounded as well
                        content = read_zip_member(archive, info, name, caps)
                    except (CrystalInputError, DatasetError) as exc:
                        errors.append(str(exc))
                        continue
                    count += 1
                    yield member, content
        except zipfile.BadZipFile:
            errors.append(f"{name}: not a readable zip file")
        except DatasetError as exc:
            errors.append(str(exc))


#: What the app calls a seed ensemble's std wherever it is not a calibrated interval.
SPREAD_LABEL = "seed spread (not an error bar)"
#: The badge of a crystal whose distance from the training crystals is above 1 (see :mod:`cgcnn.nn.domain`).
FAR_BADGE = "far from the training data: treat with care"


def predict_uploads(predictors: dict[str, Any], files: list[tuple[str, bytes]]) -> tuple[pd.DataFrame, list[str]]:
    """Predict every uploaded crystal with every model; a bad file is reported by name, the others go on.

    Args:
        predictors: model name → :class:`~cgcnn.nn.predictor.Predictor`, or an
            :class:`~cgcnn.nn.predictor.Ensemble` (a seed ensemble, as ``predict --model run:A,run:B``).
        files: ``(file name, bytes)``; zips are opened (see :func:`expand_uploads`).

    Returns:
        ``(table with file, formula, atoms and one column per model and target, [error lines])``. An
        ensemble gives its mean, then ``± seed spread (not an error bar)`` (the members' std, ddof 1), then
        each member's value; a calibrated model its 90% interval and whether the crystal is far from its
        training data (:data:`FAR_BADGE`): the numbers of :func:`~cgcnn.nn.predictor.predict_crystals`, as
        ``predict`` prints them.
    """
    from cgcnn.nn.predictor import Ensemble, predict_crystals

    max_atoms = current_limits().max_atoms
    in_pool = shared_pool().build_graph  # an upload's neighbour search runs in a capped worker, not the page
    errors: list[str] = []
    parsed: list[tuple[str, Any]] = []
    stream = iter_uploads(files, errors)
    while chunk := list(itertools.islice(stream, PARSE_CHUNK)):  # only a chunk of file bytes in memory at once
        done, failed = shared_pool().parse_many(chunk, max_atoms=max_atoms)
        parsed.extend(done)
        errors.extend(failed)
    rows = [{"file": n, "formula": s.composition.reduced_formula, "atoms": len(s)} for n, s in parsed]
    bad_rows: set[int] = set()
    for model_name, predictor in predictors.items():
        units = (predictor.members[0] if isinstance(predictor, Ensemble) else predictor).card.units
        suffix = f" ({units})" if units else ""
        names = predictor.names if isinstance(predictor, Ensemble) else []
        for k, result in enumerate(predict_crystals(predictor, parsed, max_atoms=max_atoms, build_graph=in_pool)):
            if result.error:
                if result.error not in errors:
                    errors.append(result.error)
                bad_rows.add(k)
                continue
            for t, target in enumerate(predictor.targets):
                column = model_name if len(predictor.targets) == 1 else f"{model_name}:{target}"
                rows[k][f"{column}{suffix}"] = float(result.values[t])
                if result.std is not None and result.members is not None:
                    rows[k][f"{column} ± {SPREAD_LABEL}{suffix}"] = float(result.std[t])
                    for m, member in enumerate(names):
                        rows[k][f"{column} · {member}"] = float(result.members[m, t])
            first = model_name if len(predictor.targets) == 1 else f"{model_name}:{predictor.targets[0]}"
            if result.interval is not None:
                rows[k][f"{first} 90% interval{suffix}"] = f"{result.interval[0]:.3f} … {result.interval[1]:.3f}"
            if result.far is not None:
                rows[k][f"{model_name}: training data"] = FAR_BADGE if result.far else "near"
    frame = pd.DataFrame([r for k, r in enumerate(rows) if k not in bad_rows or len(r) > 3])
    return frame, errors


def far_rows(table: pd.DataFrame) -> list[str]:
    """The files of ``table`` that some model marks :data:`FAR_BADGE` (what the page's badge names)."""
    columns = [c for c in table.columns if str(c).endswith(": training data")]
    if not columns or not len(table):
        return []
    return [str(f) for f, far in zip(table["file"], (table[columns] == FAR_BADGE).any(axis=1), strict=True) if far]


def split_members(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(table without ensemble members' columns, file + members' columns)``: the members go in their own table.

    Member columns are named ``<ensemble> · <member>`` by :func:`predict_uploads`.
    """
    members = [c for c in table.columns if " · " in str(c)]
    main = table.drop(columns=members)
    return main, table[["file", *members]] if members else table.iloc[:, :0]
