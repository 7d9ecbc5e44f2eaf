"""A cheap look at an untrusted crystal file before pymatgen builds it: refuse what would hang or exhaust memory.

pymatgen trusts its input. A valid CIF followed by 100k blank lines parses in quadratic time; a 0.05 Å cell
puts millions of periodic images inside the 8 Å cutoff; a 10⁶ Å cell makes the neighbour search allocate a
grid it cannot hold; a few dozen sites in Fm-3m expand to 96k atoms. None of that needs the structure to
detect: this module reads the cell, the sites and the symmetry operations from the text itself (a few
regular expressions, linear time), and :func:`screen_text` refuses the file with a message naming the limit.
:func:`check_structure` repeats the checks on the parsed structure (the screen estimates; this one counts).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from cgcnn.errors import CrystalInputError

#: Smallest cell volume per atom accepted (Å³): real solids have 5-50 (diamond 5.7); less is a broken cell.
MIN_VOLUME_PER_ATOM = 2.0
#: Longest cell edge accepted (Å): a slab or molecule in a box is tens of Å; 10⁶ Å breaks the neighbour search.
MAX_CELL_LENGTH = 1000.0
#: Symmetry operations assumed when a CIF names its space group without listing them (the largest group).
MAX_SYMMETRY_OPERATIONS = 192

_BLANK_RUNS = re.compile(r"\n(?:[ \t\r]*\n)+")
_TOKEN = re.compile(r"'[^']*'|\"[^\"]*\"|\S+")
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


@dataclass(frozen=True)
class ScreenLimits:
    """What one crystal file may be (see :func:`screen_limits` for the server's).

    Its size cap is :data:`cgcnn.data.crystal_io.MAX_FILE_BYTES`, checked before the text is decoded.
    """

    max_atoms: int = 20_000
    min_volume_per_atom: float = MIN_VOLUME_PER_ATOM
    max_cell_length: float = MAX_CELL_LENGTH

    @property
    def max_lines(self) -> int:
        """Lines after blank runs are collapsed: a few per atom site plus a header."""
        return 4 * self.max_atoms + 2000


def screen_limits(max_atoms: int | None = None) -> ScreenLimits:
    """The server's limits (``CGCNN_MAX_ATOMS`` unless ``max_atoms`` is given)."""
    from cgcnn.settings import current_limits

    return ScreenLimits(max_atoms=int(max_atoms or current_limits().max_atoms))


def compact_text(text: str) -> str:
    """The text with every run of blank lines collapsed to one (pymatgen's CIF parse is quadratic in them)."""
    return _BLANK_RUNS.sub("\n\n", text).strip() + "\n"


def screen_text(name: str, text: str, fmt: str, limits: ScreenLimits) -> str:
    """Check a crystal file's text before parsing; returns the text to parse (blank runs collapsed).

    Args:
        name: shown at the start of every message.
        text: the file's text.
        fmt: ``cif``, ``poscar`` or ``json``.
        limits: what is allowed.

    The file's size is checked before it is decoded, by :func:`cgcnn.data.crystal_io.read_crystal_bytes`
    (the one caller).

    Raises:
        CrystalInputError: too many lines, or a cell that is too small, too large, or holds too many atoms once
            its symmetry operations are applied.
    """
    text = compact_text(text)
    lines = text.count("\n")
    if lines > limits.max_lines:
        raise CrystalInputError(
            f"{name}: {lines:,} lines is too many for a crystal of at most {limits.max_atoms:,} atoms "
            "(set by CGCNN_MAX_ATOMS)"
        )
    if fmt == "cif":
        lengths, angles, sites, operations = _cif_cell(text)
    elif fmt == "json":
        lengths, angles, sites, operations = _json_cell(text)
    else:
        lengths, angles, sites, operations = _poscar_cell(text)
    if lengths is None or sites == 0:
        return text  # nothing to estimate from: pymatgen says what is wrong
    _check_cell(name, lengths, angles, sites, sites * max(operations, 1), limits)
    return text


def check_structure(name: str, structure, limits: ScreenLimits) -> None:
    """The same limits on a parsed structure (exact atom count and volume).

    Raises:
        CrystalInputError: too many atoms, a cell edge too long, or too little volume per atom.
    """
    lattice = structure.lattice
    _check_cell(name, lattice.abc, lattice.angles, len(structure), len(structure), limits)


def _check_cell(name: str, lengths, angles, sites: int, atoms: int, limits: ScreenLimits) -> None:
    longest = max(lengths)
    if not all(math.isfinite(x) for x in (*lengths, *angles)) or min(lengths) <= 0:
        raise CrystalInputError(f"{name}: the cell has a zero, negative or non-finite edge")
    if longest > limits.max_cell_length:
        raise CrystalInputError(
            f"{name}: a cell edge of {longest:.3g} Å is longer than the {limits.max_cell_length:g} Å this server "
            "accepts"
        )
    if atoms > limits.max_atoms:
        raise CrystalInputError(
            f"{name}: about {atoms:,} atoms after applying the symmetry operations; the limit is "
            f"{limits.max_atoms:,} (set by CGCNN_MAX_ATOMS, or --max-atoms)"
        )
    volume = _volume(lengths, angles)
    if volume / max(sites, 1) < limits.min_volume_per_atom:  # sites ≤ atoms: a sure lower bound of density
        raise CrystalInputError(
            f"{name}: the cell holds {volume / max(sites, 1):.3g} Å³ per atom, less than the "
            f"{limits.min_volume_per_atom:g} Å³ of any real crystal (a broken or tiny cell)"
        )


def _volume(lengths, angles) -> float:
    a, b, c = lengths
    ca, cb, cg = (math.cos(math.radians(x)) for x in angles)
    inside = 1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg
    return a * b * c * math.sqrt(max(inside, 0.0))


def _number(token: str) -> float | None:
    match = _NUMBER.match(token)  # drops a standard uncertainty, "5.431(2)"
    return float(match.group(0)) if match else None


def _cif_cell(text: str):
    """(lengths, angles, atom sites, symmetry operations) of a CIF's first block, from its text."""
    values: dict[str, float | None] = {}
    for key in ("length_a", "length_b", "length_c", "angle_alpha", "angle_beta", "angle_gamma"):
        match = re.search(rf"(?im)^\s*_cell[._]{key}\s+(\S+)", text)
        values[key] = _number(match.group(1)) if match else None
    lengths = tuple(values[k] for k in ("length_a", "length_b", "length_c"))
    angles = tuple(values[k] if values[k] is not None else 90.0 for k in ("angle_alpha", "angle_beta", "angle_gamma"))
    if any(v is None for v in lengths):
        return None, None, 0, 0
    sites = operations = 0
    for fields, rows in _cif_loops(text):
        if any(f.startswith(("_atom_site_fract_", "_atom_site_cartn_")) for f in fields):
            sites = max(sites, rows)
        if any(f in ("_symmetry_equiv_pos_as_xyz", "_space_group_symop_operation_xyz") for f in fields):
            operations = max(operations, rows)
    if operations == 0 and re.search(r"(?im)^\s*_(symmetry_space_group_name|space_group_name|symmetry_int_tables"
                                     r"|space_group_it_number)", text):  # fmt: skip
        operations = MAX_SYMMETRY_OPERATIONS  # named, not listed: pymatgen generates them; assume the most
    return lengths, angles, sites, operations


def _cif_loops(text: str):
    """(field names, row count) of every ``loop_`` of the text (linear scan, quotes respected per line)."""
    lines = text.splitlines()
    k = 0
    while k < len(lines):
        if lines[k].strip().lower() != "loop_":
            k += 1
            continue
        k += 1
        fields = []
        while k < len(lines) and lines[k].strip().startswith("_"):
            fields.append(lines[k].strip().split()[0].lower())
            k += 1
        tokens = 0
        while k < len(lines):
            line = lines[k].strip()
            low = line.lower()
            if line.startswith("_") or low == "loop_" or low.startswith("data_"):
                break
            if line and not line.startswith("#"):
                tokens += len(_TOKEN.findall(line))
            k += 1
        if fields:
            yield fields, math.ceil(tokens / len(fields))


def _poscar_cell(text: str):
    """(lengths, angles, atoms, 1) of a POSCAR, from its text (None when the header is not numeric)."""
    lines = [line.split() for line in text.splitlines()]
    try:
        scale = float(lines[1][0])
        rows = [[float(x) for x in lines[i][:3]] for i in (2, 3, 4)]
        counts_line = lines[5] if all(_number(t) is not None for t in lines[5]) else lines[6]
        atoms = sum(int(x) for x in counts_line)
    except (IndexError, ValueError):
        return None, None, 0, 0
    if scale < 0:  # a negative scale is the cell volume
        scale = 1.0
    return (*_from_rows([[scale * x for x in r] for r in rows]), atoms, 1)


def _json_cell(text: str):
    """(lengths, angles, atoms, 1) of a pymatgen Structure dict."""
    try:
        data = json.loads(text)
        rows = data["lattice"]["matrix"]
        atoms = len(data["sites"])
        lengths, angles = _from_rows([[float(x) for x in r] for r in rows])
    except (ValueError, KeyError, TypeError, IndexError):
        return None, None, 0, 0
    return lengths, angles, atoms, 1


def _from_rows(rows) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    lengths = tuple(math.sqrt(sum(x * x for x in r)) for r in rows)

    def angle(u, v, lu, lv) -> float:
        if lu == 0 or lv == 0:
            return 90.0
        cos = sum(x * y for x, y in zip(u, v, strict=True)) / (lu * lv)
        return math.degrees(math.acos(max(-1.0, min(1.0, cos))))

    a, b, c = rows
    la, lb, lc = lengths
    return lengths, (angle(b, c, lb, lc), angle(a, c, la, lc), angle(a, b, la, lb))


class ParseTimeout(CrystalInputError):
    """A file took longer to parse than its limit (raised inside :func:`time_limit`)."""


@contextlib.contextmanager
def time_limit(seconds: float | None, name: str) -> Iterator[None]:
    """Raise :class:`ParseTimeout` in this thread if the block runs longer than ``seconds``.

    Uses ``SIGALRM``, so it only acts in the main thread of a process (a parser worker); elsewhere, or with
    ``seconds`` None, it does nothing and the caller's own limit (killing the worker) applies.
    """
    if not seconds or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum, frame):
        raise ParseTimeout(f"{name}: parsing took longer than {seconds:g} s and was stopped (CGCNN_PARSE_SECONDS)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
