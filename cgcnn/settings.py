"""Limits a server sets for everyone: one place, each an environment variable with a default.

A classroom server is shared by 20-30 students, so the library itself (not only the app) refuses work past
these limits: the CLI, the job queue and the pages all obey the same numbers. Read them with
:func:`current_limits`; a test or a teacher sets the variables before the server starts.

=============================  =========  =============================================================
variable                       default    what it bounds
=============================  =========  =============================================================
CGCNN_MAX_QUEUED_PER_USER      8          runs one owner may have queued or running at once
CGCNN_MAX_EPOCHS               200        epochs of one run
CGCNN_MAX_CRYSTALS             0          crystals of one run (train + val + test; 0: the dataset's size)
CGCNN_MAX_RUN_SECONDS          1800       wall time of one run; past it the run is stopped
CGCNN_PARSE_SECONDS            5          wall time to parse one uploaded crystal file
CGCNN_PARSE_MEMORY_MB          1024       memory a file-parsing worker may add to its imports
CGCNN_ZIP_PARSE_SECONDS        60         wall time to read one uploaded dataset zip
CGCNN_PARSE_WAIT_SECONDS       20         wait for a free parsing worker before "the server is busy"
CGCNN_MAX_ATOMS                20000      atoms of one crystal (after symmetry expansion)
CGCNN_MAX_PAIRS                4000000    neighbour pairs one graph build may search (~110 bytes each)
CGCNN_ZIP_MAX_MEMBERS          20000      files in one uploaded zip
CGCNN_ZIP_MAX_TOTAL_MB         500        uncompressed size of one uploaded zip
CGCNN_ZIP_MAX_MEMBER_MB        20         uncompressed size of one file inside a zip
CGCNN_ZIP_MAX_RATIO            200        compression ratio of one zip member (zip bombs)
CGCNN_ZIP_MAX_LABEL_LINES      200000     lines of one id_prop.csv
CGCNN_SIGN_IN_HOURS            4          lifetime of a student's sign-in token (a class-length period)
CGCNN_TEACHER_HOURS            2          teacher mode ends this long after the password was typed
CGCNN_LOGIN_FAILURES           3          wrong passwords (or class codes) before a lockout
CGCNN_LOCKOUT_SECONDS          60         first lockout; each further one doubles, up to an hour
CGCNN_MIN_PASSWORD_LENGTH      8          shortest teacher password or class code the server starts with
CGCNN_MAX_LABEL                1e6        largest absolute label value of a dataset (past it: refused by id)
CGCNN_MIN_FREE_MB              100        disk space kept free: a save or upload that would go below is refused
CGCNN_UPLOAD_MB_PER_PERSON     200        dataset zips one person may keep on the server
CGCNN_UPLOADS_TOTAL_MB         2000       dataset zips the whole class may keep
CGCNN_UPLOAD_KEEP_DAYS         7          an upload no queued or running run uses is removed after this long
=============================  =========  =============================================================
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from cgcnn.errors import CGCNNError


class LimitExceeded(CGCNNError):
    """A request past one of the server's limits; the message names the limit and its variable."""


@dataclass(frozen=True)
class Limits:
    """The server's limits (see the module docstring for the variables and their defaults)."""

    max_queued_per_user: int = 8
    max_epochs: int = 200
    max_crystals: int = 0
    max_run_seconds: float = 1800.0
    parse_seconds: float = 5.0
    parse_memory_mb: float = 1024.0
    zip_parse_seconds: float = 60.0
    parse_wait_seconds: float = 20.0
    max_atoms: int = 20_000
    max_pairs: int = 4_000_000
    zip_max_members: int = 20_000
    zip_max_total_mb: float = 500.0
    zip_max_member_mb: float = 20.0
    zip_max_ratio: float = 200.0
    zip_max_label_lines: int = 200_000
    sign_in_hours: float = 4.0
    teacher_hours: float = 2.0
    login_failures: int = 3
    lockout_seconds: float = 60.0
    min_password_length: int = 8
    max_label: float = 1e6
    min_free_mb: float = 100.0
    upload_mb_per_person: float = 200.0
    uploads_total_mb: float = 2000.0
    upload_keep_days: float = 7.0

    @staticmethod
    def variable(field_name: str) -> str:
        """The environment variable of a field, e.g. ``max_epochs`` → ``CGCNN_MAX_EPOCHS``."""
        return "CGCNN_" + field_name.upper()

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Limits:
        """Defaults overridden by the ``CGCNN_*`` variables that are set (a bad value is a clear error)."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in dataclasses.fields(cls):
            text = environ.get(cls.variable(f.name), "").strip()
            if not text:
                continue
            kind = int if f.type in ("int", int) else float
            try:
                value = kind(text)
            except ValueError:
                noun = "a whole number" if kind is int else "a number"
                raise CGCNNError(f"{cls.variable(f.name)} must be {noun}, got {text!r}") from None
            if value < 0:
                raise CGCNNError(f"{cls.variable(f.name)} must not be negative, got {text!r}")
            values[f.name] = value
        return cls(**values)

    def check(self, field_name: str, value: float, what: str) -> None:
        """Raise :class:`LimitExceeded` if ``value`` is over the limit ``field_name`` (0 means no limit)."""
        limit = getattr(self, field_name)
        if limit and value > limit:
            raise LimitExceeded(
                f"{what} is {value:g}, over this server's limit of {limit:g} (set by {self.variable(field_name)})"
            )


def label_range_problem(values, max_label: float) -> str:
    """The message for labels beyond ``±max_label`` (1e300 is finite, but makes every error metric overflow)."""
    worst = max(values, key=abs)
    return f"label {worst:g} is beyond ±{max_label:g}, the largest this server accepts (set by CGCNN_MAX_LABEL)"


def current_limits() -> Limits:
    """The limits in force now (read from the environment on every call, so a test can change them)."""
    return Limits.from_env()


def atom_limit(value: int | None = None) -> int:
    """A command's ``--max-atoms`` if given, else ``CGCNN_MAX_ATOMS``.

    Raises:
        CGCNNError: a limit below 1.
    """
    max_atoms = current_limits().max_atoms if value is None else int(value)
    if max_atoms < 1:
        raise CGCNNError(f"--max-atoms must be at least 1, got {max_atoms}")
    return max_atoms
