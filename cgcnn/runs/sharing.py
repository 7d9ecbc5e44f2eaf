"""Shared results: entries that reuse another run's computation, and the fair queue's order.

:meth:`~cgcnn.runs.store.RunStore.launch` gives each owner their own entry, but an entry whose spec key matches
a ``done`` run or an identical queued/running one points to it (``source_run_id``) instead of computing again;
its status, results and checkpoint path are copied from the source whenever the source changes state (every
status write calls :func:`sync_followers` in the same transaction), and its epochs and predictions are read
from the source. Entries pointing to a computation are never claimed or reaped. A computation stays while any
entry points to it.

Every function here takes the open connection of the caller's write transaction, so each rule holds
atomically with the write that needs it.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from cgcnn.runs.schema import ACTIVE_STATUSES, FOLLOW_COLUMNS

# The next queued computation for the fair queue (see RunStore.claim_next): fewest runs in progress for its
# owner, then the owner served least recently, then the oldest run. Owners are compared by owner_key, so one
# person signing in as "Alice" and "alice" is one owner here too.
NEXT_QUEUED_SQL = (
    "SELECT q.id FROM runs q WHERE q.status = 'queued' AND q.source_run_id IS NULL ORDER BY "
    "(SELECT COUNT(*) FROM runs p WHERE p.owner_key = q.owner_key AND p.status = 'running' "
    "AND p.source_run_id IS NULL), "
    "COALESCE((SELECT MAX(p.started_at) FROM runs p WHERE p.owner_key = q.owner_key AND p.source_run_id IS NULL), 0), "
    "q.created_at, q.rowid LIMIT 1"
)


def sync_followers(conn: sqlite3.Connection, source_id: str, only: str | None = None) -> None:
    """Copy a computation's state (:data:`FOLLOW_COLUMNS`) to the active entries that reuse it."""
    assignments = ", ".join(f"{c} = s.{c}" for c in FOLLOW_COLUMNS)
    sql = (
        f"UPDATE runs SET {assignments} FROM (SELECT * FROM runs WHERE id = ?) AS s "
        "WHERE runs.source_run_id = s.id AND runs.status IN ('queued', 'running')"
    )
    params: list[Any] = [source_id]
    if only is not None:
        sql += " AND runs.id = ?"
        params.append(only)
    conn.execute(sql, params)


def waiting_followers(conn: sqlite3.Connection, source_id: str) -> int:
    """How many active entries wait for this computation (it must not be cancelled under them)."""
    return int(
        conn.execute(
            "SELECT COUNT(*) FROM runs WHERE source_run_id = ? AND status IN ('queued', 'running')", (source_id,)
        ).fetchone()[0]
    )


def cancel_computation(conn: sqlite3.Connection, run_id: str, status: str, now: float) -> None:
    """Cancel a computation: a queued one (and its waiting entries) at once, a running one by its flag."""
    if status == "queued":
        conn.execute(
            "UPDATE runs SET status = 'cancelled', cancel_requested = 1, finished_at = ?, "
            "error = 'cancelled before it started' WHERE id = ?",
            (now, run_id),
        )
        sync_followers(conn, run_id)
    elif status == "running":
        conn.execute("UPDATE runs SET cancel_requested = 1 WHERE id = ?", (run_id,))


def drop_if_orphaned(conn: sqlite3.Connection, source_id: str) -> list[str]:
    """After an entry stopped pointing to it: end a hidden computation nobody wants any more.

    Returns the ids removed (their run folders are for the caller to delete, after the commit).
    """
    row = conn.execute("SELECT status, hidden FROM runs WHERE id = ?", (source_id,)).fetchone()
    if row is None or not row[1]:
        return []
    status = row[0]
    if status in ACTIVE_STATUSES:
        if not waiting_followers(conn, source_id):
            cancel_computation(conn, source_id, status, time.time())
        return []
    if conn.execute("SELECT 1 FROM runs WHERE source_run_id = ? LIMIT 1", (source_id,)).fetchone():
        return []
    conn.execute("DELETE FROM runs WHERE id = ?", (source_id,))
    return [source_id]
