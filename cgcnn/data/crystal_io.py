"""Reading crystal files (CIF, POSCAR, pymatgen JSON) with messages a user can act on.

pymatgen raises many kinds of exceptions (and prints warnings) on bad files; this module turns them all into
one :class:`~cgcnn.errors.CrystalInputError` that names the file, so the CLI prints one line and the app one
message, and a batch of files keeps going past a bad one.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from pymatgen.core import Structure

from cgcnn.errors import CrystalInputError

#: Files larger than this are refused before parsing (a CIF of a real crystal is a few kB).
MAX_FILE_BYTES = 20_000_000


def read_structure_text(text: str, name: str, fmt: str = "cif") -> Structure:
    """Parse a crystal from text (``fmt``: ``cif``, ``poscar`` or ``json`` for a pymatgen dict).

    Raises:
        CrystalInputError: empty, malformed, or without any structure; the message starts with ``name``.
    """
    if not text.strip():
        raise CrystalInputError(f"{name}: the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_dict(json.loads(text)) if fmt == "json" else Structure.from_str(text, fmt=fmt)
    except Exception as exc:  # pymatgen raises ValueError, KeyError, IndexError, ... on malformed files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CrystalInputError(f"{name}: not a readable {fmt.upper()} crystal ({reason})") from None
    if len(structure) == 0:
        raise CrystalInputError(f"{name}: the file holds no atoms")
    return structure


def read_structure(path: str | Path) -> Structure:
    """Read a crystal file; the format follows the extension (``.cif``, ``.json``, else POSCAR).

    Raises:
        CrystalInputError: unreadable, too large, empty or malformed (see :func:`read_structure_text`).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise CrystalInputError(f"{path.name}: {size / 1e6:.0f} MB is too large for a crystal file")
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise CrystalInputError(f"{path.name}: cannot read the file ({exc.strerror})") from None
    suffix = path.suffix.lower()
    fmt = "cif" if suffix == ".cif" else "json" if suffix == ".json" else "poscar"
    return read_structure_text(text, path.name, fmt)
