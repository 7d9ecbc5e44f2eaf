"""Disk for uploads: per-person and total quotas, and uploads nobody uses removed after a while.

Every accepted dataset zip is kept in ``<home>/uploads/<sha256>.zip`` (with its parsed arrays beside it), so a
class could fill the disk by uploading padded zips. Each zip records who uploaded it in ``<sha256>.zip.owners``
(their :func:`~cgcnn.names.name_key`, one a line; the same content uploaded by two people is one file counted
for both). A new upload is refused when it would take its uploader past ``CGCNN_UPLOAD_MB_PER_PERSON`` or the
folder past ``CGCNN_UPLOADS_TOTAL_MB``, or the disk below ``CGCNN_MIN_FREE_MB``; uploads that no queued or
running run uses and that nobody touched for ``CGCNN_UPLOAD_KEEP_DAYS`` are removed at the next upload.
"""

from __future__ import annotations

import time
from pathlib import Path

from cgcnn.errors import CGCNNError
from cgcnn.names import name_key
from cgcnn.runs.store import RunStore
from cgcnn.settings import current_limits
from cgcnn.storage import ensure_free_space

#: Suffix of the file listing a zip's uploaders.
OWNERS_SUFFIX = ".owners"


class UploadQuotaExceeded(CGCNNError):
    """An upload past a quota; the message names the quota and its variable."""


def upload_files(path: Path) -> list[Path]:
    """A zip and everything kept beside it (parsed arrays, owners)."""
    return [p for p in path.parent.glob(path.name + "*") if p.is_file()]


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in upload_files(path))


def _owners(path: Path) -> set[str]:
    try:
        return {line for line in path.with_name(path.name + OWNERS_SUFFIX).read_text().splitlines() if line}
    except OSError:
        return set()


def usage(folder: Path, owner: str = "") -> tuple[int, int]:
    """``(bytes of the uploads ``owner`` made, bytes of all uploads)`` in ``folder``."""
    key = name_key(owner)
    mine = total = 0
    for zip_path in folder.glob("*.zip") if folder.is_dir() else []:
        size = _size(zip_path)
        total += size
        if key and key in _owners(zip_path):
            mine += size
    return mine, total


def check_room(store: RunStore, path: Path, size: int, owner: str, filename: str) -> None:
    """Refuse a new upload of ``size`` bytes past a quota or the free-space floor (nothing is written then).

    Raises:
        UploadQuotaExceeded: past ``CGCNN_UPLOAD_MB_PER_PERSON`` or ``CGCNN_UPLOADS_TOTAL_MB``.
        StorageError: the disk would fall below ``CGCNN_MIN_FREE_MB``.
    """
    if path.is_file():  # already kept: no new space
        return
    limits = current_limits()
    mine, total = usage(path.parent, owner)
    mb = 1024**2
    if owner and limits.upload_mb_per_person and mine + size > limits.upload_mb_per_person * mb:
        raise UploadQuotaExceeded(
            f"{filename}: your uploads would take {(mine + size) / mb:.0f} MB, over this server's "
            f"{limits.upload_mb_per_person:g} MB per person (set by CGCNN_UPLOAD_MB_PER_PERSON); ask your teacher"
        )
    if limits.uploads_total_mb and total + size > limits.uploads_total_mb * mb:
        raise UploadQuotaExceeded(
            f"{filename}: the class's uploads would take {(total + size) / mb:.0f} MB, over this server's "
            f"{limits.uploads_total_mb:g} MB in all (set by CGCNN_UPLOADS_TOTAL_MB); ask your teacher"
        )
    ensure_free_space(path.parent, f"saving {filename}", size)


def record_owner(path: Path, owner: str) -> None:
    """Count ``path`` for ``owner`` too, and mark it used now (its age is since the last upload of it)."""
    key = name_key(owner)
    owners = _owners(path) | ({key} if key else set())
    # rewritten on every upload: its time is the last use (the zip's own time keys its parsed arrays)
    path.with_name(path.name + OWNERS_SUFFIX).write_text("".join(f"{k}\n" for k in sorted(owners)))


def _last_used(path: Path) -> float:
    owners = path.with_name(path.name + OWNERS_SUFFIX)
    return max(path.stat().st_mtime, owners.stat().st_mtime if owners.is_file() else 0.0)


def remove_unused(store: RunStore, days: float | None = None, now: float | None = None) -> list[str]:
    """Remove uploads no queued or running run uses and nobody uploaded for ``days``; returns their names.

    ``days`` defaults to ``CGCNN_UPLOAD_KEEP_DAYS`` (0: keep everything).
    """
    days = current_limits().upload_keep_days if days is None else days
    folder = store.home / "uploads"
    if not days or not folder.is_dir():
        return []
    in_use = {
        str(Path(r.spec.get("data"))) for r in store.list_runs(status=("queued", "running"), include_hidden=True)
        if isinstance(r.spec, dict) and r.spec.get("data")
    }  # fmt: skip
    cutoff = (time.time() if now is None else now) - days * 86400
    removed = []
    for zip_path in sorted(folder.glob("*.zip")):
        if str(zip_path) in in_use or _last_used(zip_path) > cutoff:
            continue
        for p in upload_files(zip_path):
            p.unlink(missing_ok=True)
        removed.append(zip_path.name)
    return removed
