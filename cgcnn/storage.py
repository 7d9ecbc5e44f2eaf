"""Disk and database faults as one clear message: a read-only home, a full disk, a locked or damaged store.

The run store, the caches and checkpoints all write under ``$CGCNN_HOME``. When that fails the user needs to
know what to fix (free space, a writable folder, another program holding the database), not an
``sqlite3.OperationalError`` traceback. :func:`storage_errors` wraps any block that writes and turns those
failures into :class:`StorageError` (a :class:`~cgcnn.errors.CGCNNError`, so the CLI prints one line and the
app one message).
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from cgcnn.errors import CGCNNError


class StorageError(CGCNNError):
    """The disk or the database refused an operation (read-only, full, locked, damaged)."""


_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}
_FULL = {errno.ENOSPC, errno.EDQUOT} if hasattr(errno, "EDQUOT") else {errno.ENOSPC}


def describe_storage_error(exc: BaseException, path: Path | str | None = None) -> str | None:
    """What went wrong with the storage, in words a user can act on; None if ``exc`` is not a storage fault.

    Args:
        exc: the exception.
        path: where the write went; SQLite reports a full disk as a "disk I/O error", so the free space there
            tells a full disk from a failing one.
    """
    if isinstance(exc, OSError) and exc.errno is not None:
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        if exc.errno in _FULL:
            return f"the disk is full{where}: free some space or set CGCNN_HOME to another disk"
        if exc.errno in _READ_ONLY:
            return f"the folder is read-only{where}: make CGCNN_HOME writable or point it elsewhere"
        return None
    if isinstance(exc, sqlite3.Error):
        text = str(exc).lower()
        if "readonly" in text or "read-only" in text or "unable to open" in text:
            return "the run store is read-only or cannot be opened: make CGCNN_HOME writable or point it elsewhere"
        if "disk is full" in text or "database or disk is full" in text:
            return "the disk is full: free some space or set CGCNN_HOME to another disk"
        if "locked" in text or "busy" in text:
            return "the run store is locked by another program for too long: try again in a minute"
        if "disk i/o" in text:
            if path is not None and _nearly_full(path):
                return "the disk is full: free some space or set CGCNN_HOME to another disk"
            return "the disk refused a write (full or failing): free some space or check the disk"
        if "malformed" in text or "not a database" in text:
            return f"the run store is damaged ({exc}): restore it or point CGCNN_HOME elsewhere"
        return None
    text = str(exc).lower()
    if isinstance(exc, RuntimeError) and _torch_write_failure(text):
        return "the disk is full or refused the write: free some space or set CGCNN_HOME to another disk"
    return None


def _torch_write_failure(text: str) -> bool:
    """Whether a ``RuntimeError`` message is ``torch.save`` failing to write its zip.

    On a full disk torch says "... file write failed", or, when a short write slipped through, "unexpected
    pos N vs M" from its zip writer (``inline_container.cc``): both are the disk, not the model.
    """
    return (
        ("write" in text and ("failed" in text or "no space" in text))
        or "unexpected pos" in text
        or "pytorchstreamwriter" in text
        or "inline_container" in text
    )


@contextlib.contextmanager
def storage_errors(action: str, path: Path | str | None = None) -> Iterator[None]:
    """Turn a storage fault inside the block into ``StorageError("<action>: <what to do>")``; others pass."""
    try:
        yield
    except StorageError:
        raise
    except (OSError, sqlite3.Error, RuntimeError) as exc:
        reason = describe_storage_error(exc, path)
        if reason is None:
            raise
        raise StorageError(f"{action}: {reason}") from exc


def ensure_free_space(path: Path | str, action: str, needed_bytes: int = 0) -> None:
    """Refuse a write before it starts when the disk holding ``path`` has too little room left.

    A write that fills the disk half-way leaves a damaged file or a torch ``unexpected pos`` error; checking
    first gives the cause in words. The floor is ``CGCNN_MIN_FREE_MB`` plus what the write needs.

    Raises:
        StorageError: "<action>: only N MB free ...".
    """
    from cgcnn.settings import current_limits

    floor = current_limits().min_free_mb * 1024**2 + needed_bytes
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < floor:
        raise StorageError(
            f"{action}: only {free / 1024**2:.0f} MB free on the disk of {folder}, less than the "
            f"{floor / 1024**2:.0f} MB kept free (set by CGCNN_MIN_FREE_MB): free some space or set CGCNN_HOME "
            "to another disk"
        )


def _nearly_full(path: Path | str) -> bool:
    """Whether the file system holding ``path`` has less than 1 MB free."""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free < 1024**2
    except OSError:
        return False
