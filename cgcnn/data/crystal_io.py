"""Crystal files (CIF, POSCAR, pymatgen JSON) in, ``Structure`` out: the one owner of every rule on the way.

Every surface that takes a crystal file from a person goes through here: ``python -m cgcnn predict``,
``explain``, ``evaluate --data`` and training folders and zips (:mod:`cgcnn.data.folders`), the app's Predict
page and viewer (:mod:`cgcnn.app.uploads`), and the parser workers (:mod:`cgcnn.data.parse_pool`) that run this
module's :func:`read_crystal_bytes` under a time and memory limit. So one file gets one verdict, worded once:

- the format follows the file name (:func:`crystal_format`);
- the size cap (:data:`MAX_FILE_BYTES`, :func:`check_size`) comes before anything is read or decoded;
- the text screen (:mod:`cgcnn.data.screen`: lines, cell, atoms after symmetry) before pymatgen builds anything;
- one parser per format, with one CIF rule set (:func:`parse_structure_text`);
- the structure checks (:func:`check_usable`: atoms, disorder, species) and the screen's limits counted
  on the parsed structure;
- every refusal is a :class:`~cgcnn.errors.CrystalInputError` whose message is ``"<file or zip member>:
  <reason>"`` (:func:`input_error`), so the CLI prints one line, a page one message, and a batch goes on.

pymatgen raises many kinds of exceptions (and prints warnings) on bad files; they all end here as that one
error.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from pymatgen.core import Structure

from cgcnn.data.screen import check_structure, screen_limits, screen_text
from cgcnn.errors import CrystalInputError, UnknownElementError

#: Files larger than this are refused before parsing (a CIF of a real crystal is a few kB).
MAX_FILE_BYTES = 20_000_000

#: Why a disordered structure is refused (and what to do about it).
DISORDER_REASON = (
    "partial occupancies (a disordered crystal); CGCNN needs one species per site: order it first "
    "(e.g. pymatgen's OrderDisorderedStructureTransformation)"
)


def crystal_format(name: str) -> str:
    """The format a file name implies: ``cif``, ``json``, else ``poscar`` (POSCAR, CONTCAR, ``*.vasp``)."""
    lower = name.lower()
    return "cif" if lower.endswith(".cif") else "json" if lower.endswith(".json") else "poscar"


def is_crystal_name(name: str) -> bool:
    """Whether a file name (e.g. a zip member's) is a crystal file: ``.cif``, ``.json``, ``.vasp``, POSCAR, CONTCAR.

    Stricter than :func:`crystal_format`, which reads any other name as POSCAR: a zip also holds notes and
    labels that are not crystals.
    """
    lower = name.lower()
    return lower.endswith((".cif", ".json", ".vasp")) or lower.startswith(("poscar", "contcar"))


def sentence(name: str, reason: str) -> str:
    """``"<name>: <reason>"``, the one form of a file's verdict (a ``reason`` that already names it is kept)."""
    return reason if reason.startswith(f"{name}: ") else f"{name}: {reason}"


def input_error(name: str, reason: str) -> CrystalInputError:
    """The error of one file, worded by :func:`sentence`."""
    return CrystalInputError(sentence(name, reason))


def check_size(name: str, n_bytes: int, limit: int = MAX_FILE_BYTES) -> None:
    """Refuse a file of ``n_bytes`` over ``limit`` before it is read, sent to a worker or decoded.

    Raises:
        CrystalInputError: naming the file, its size and the limit.
    """
    if n_bytes > limit:
        raise input_error(
            name, f"{n_bytes / 1e6:.1f} MB is too large for a crystal file (the limit is {limit / 1e6:g} MB)"
        )


def check_usable(structure: Structure, name: str | None = None) -> None:
    """Refuse a structure that cannot become a CGCNN graph: no atoms, disordered, a species without Z.

    The one disorder check: file input (:func:`parse_structure_text`), the graph builder
    (:func:`cgcnn.data.graph.structure_to_graph`, for structures made in code) and the dataset build tool.

    Raises:
        CrystalInputError: no atoms or partial occupancies; ``"<name>: <reason>"`` when ``name`` is given.
        UnknownElementError: a species without an atomic number (a dummy species such as "X").
    """

    def named(reason: str) -> str:
        return reason if name is None else f"{name}: {reason}"

    if len(structure) == 0:
        raise CrystalInputError(named("the crystal has no atoms"))
    if not structure.is_ordered:
        raise CrystalInputError(named(DISORDER_REASON))
    try:
        [site.specie.Z for site in structure]
    except AttributeError:
        raise UnknownElementError(named("a site has a species without an atomic number")) from None


def structure_problem(structure: Structure) -> str | None:
    """Why :func:`check_usable` refuses ``structure`` (its message), or None: for tallies of refusals."""
    try:
        check_usable(structure)
    except CrystalInputError as exc:
        return str(exc)
    return None


def _first_words(exc: BaseException) -> str:
    """An exception as one short line (pymatgen's messages often put the cause on their second line)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return (text[:200] + "…" if len(text) > 200 else text) or type(exc).__name__


def parse_structure_text(text: str, name: str, fmt: str = "cif") -> Structure:
    """Parse a crystal from text (``fmt``: ``cif``, ``poscar`` or ``json`` for a pymatgen dict): the one rule set.

    A CIF is read with ``CifParser(...).parse_structures(primitive=False, on_error="raise")`` and its first
    data block is the crystal. That is stricter than ``Structure.from_str(text, fmt="cif")``, which is the same
    parser with ``on_error="warn"``: a block that fails is skipped with a warning (which we silence), so a file
    whose first block is broken silently becomes the next block's crystal, and a file with none gives only
    "no structures" instead of the reason. Here the reason reaches the user. The cell is kept as written
    (``primitive=False``), as the original CGCNN reads it. Every format then passes :func:`check_usable`.

    Raises:
        CrystalInputError: empty, malformed, without a structure, disordered or with a dummy species; the
            message starts with ``name``.
    """
    if not text.strip():
        raise input_error(name, "the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fmt == "cif":
                from pymatgen.io.cif import CifParser

                structures = CifParser.from_str(text).parse_structures(primitive=False, on_error="raise")
                if not structures:
                    raise ValueError("no structure in the file")
                structure = structures[0]
            elif fmt == "json":
                structure = Structure.from_dict(json.loads(text))
            else:
                structure = Structure.from_str(text, fmt=fmt)
    except MemoryError:
        raise
    except Exception as exc:  # pymatgen raises ValueError, KeyError, IndexError, ... on malformed files
        raise input_error(name, f"not a readable {fmt.upper()} crystal ({_first_words(exc)})") from None
    check_usable(structure, name)
    return structure


def read_crystal_bytes(name: str, data: bytes, max_atoms: int | None = None) -> Structure:
    """Check and parse one crystal file's bytes: size, screen, parse, limits on the parsed structure.

    What a parser worker runs for an untrusted file (:mod:`cgcnn.data.parse_pool`), and what training folders
    and zips run for each CIF: the same verdict, in the same words, everywhere.

    Args:
        name: the file or zip member (its extension picks the format; every message starts with it).
        data: the file's bytes.
        max_atoms: atom limit (default ``CGCNN_MAX_ATOMS``).

    Raises:
        CrystalInputError: too large, refused by the screen, unreadable, disordered, or over a limit once
            parsed.
    """
    limits = screen_limits(max_atoms)
    check_size(name, len(data))
    fmt = crystal_format(name)
    text = screen_text(name, data.decode("utf-8", errors="replace"), fmt, limits)
    try:
        structure = parse_structure_text(text, name, fmt)
    except MemoryError:
        raise input_error(name, "parsing it needs more memory than a crystal file may use") from None
    check_structure(name, structure, limits)
    return structure


def read_file_bytes(path: str | Path) -> bytes:
    """A crystal file's bytes, its size checked before it is read.

    Raises:
        CrystalInputError: too large (:func:`check_size`) or unreadable; the message starts with the file name.
    """
    path = Path(path)
    try:
        check_size(path.name, path.stat().st_size)
        return path.read_bytes()
    except OSError as exc:
        raise input_error(path.name, f"cannot read the file ({exc.strerror or type(exc).__name__})") from None


def read_structure(path: str | Path, max_atoms: int | None = None) -> Structure:
    """Read a crystal file in this process (a trusted file; the CLI and the app parse in a capped worker).

    The format follows the name (:func:`crystal_format`); the checks are :func:`read_crystal_bytes`'.

    Raises:
        CrystalInputError: unreadable, too large, refused, empty, malformed or disordered.
    """
    path = Path(path)
    return read_crystal_bytes(path.name, read_file_bytes(path), max_atoms)
