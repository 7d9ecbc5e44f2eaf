"""Display names claimed by a browser's secret token: the store side of sign-in.

Why here and not in the page: the claim must be one transaction in the shared store, so two browsers typing
the same new name at once cannot both win. Only the token's hash is kept. What a name's key is
(:func:`cgcnn.names.name_key`) and who may claim it is :mod:`cgcnn.app.identity`'s business; this module only
stores and answers.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

Reader = Callable[[str, Sequence[Any]], list[sqlite3.Row]]


def holder(read: Reader, name_key: str) -> str | None:
    """The token hash that holds a display name (its key), or None if nobody claimed it."""
    rows = read("SELECT token_hash FROM name_claims WHERE name_key = ?", (name_key,))
    return str(rows[0][0]) if rows else None


def claimed_as(read: Reader, name_key: str) -> str | None:
    """The display name as its holder typed it (for "looks like ..." messages), or None if unclaimed."""
    rows = read("SELECT name FROM name_claims WHERE name_key = ?", (name_key,))
    return str(rows[0][0]) if rows else None


def name_of(read: Reader, token_hash: str) -> str | None:
    """The display name a token hash holds (a browser coming back with its cookie), or None."""
    rows = read("SELECT name FROM name_claims WHERE token_hash = ? ORDER BY created_at LIMIT 1", (token_hash,))
    return str(rows[0][0]) if rows else None


def rekey(conn: sqlite3.Connection, key_of: Callable[[str], str]) -> None:
    """Recompute every claim's key after the naming rule's key changed (a migration step).

    Claims whose new keys collide are look-alikes of one name: the earliest claim keeps it, the later ones are
    dropped (their browsers can pick another name; the runs stay).
    """
    rows = conn.execute("SELECT name_key, name FROM name_claims ORDER BY created_at, rowid").fetchall()
    kept: set[str] = set()
    for old, name in rows:
        new = key_of(name)
        if new in kept:
            conn.execute("DELETE FROM name_claims WHERE name_key = ?", (old,))
            continue
        kept.add(new)
        if new != old:
            conn.execute("UPDATE name_claims SET name_key = ? WHERE name_key = ?", (new, old))


def claim(conn: sqlite3.Connection, name_key: str, name: str, token_hash: str) -> str:
    """Claim a display name for a token hash unless someone holds it; returns the holder's token hash.

    Call inside the store's write transaction (the check and the insert are one atomic step).
    """
    conn.execute(
        "INSERT OR IGNORE INTO name_claims (name_key, name, token_hash, created_at) VALUES (?, ?, ?, ?)",
        (name_key, name, token_hash, time.time()),
    )
    row = conn.execute("SELECT token_hash FROM name_claims WHERE name_key = ?", (name_key,)).fetchone()
    return str(row[0])


def release(conn: sqlite3.Connection, name_key: str) -> bool:
    """Free a claimed display name (a teacher's action); whether one was held."""
    return bool(conn.execute("DELETE FROM name_claims WHERE name_key = ?", (name_key,)).rowcount)
