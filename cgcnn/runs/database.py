"""The run store's file: one SQLite database written safely by several processes and threads.

Why SQLite through the standard library: the store must survive killed processes (a Streamlit server stopped
with Ctrl-C, a worker killed by the OOM killer) and be written by several processes at once (the app's worker
pool, a CLI sweep in a terminal). SQLite in WAL mode gives durable commits, readers that never block the writer
and a busy timeout that serialises writers, with nothing to install or run.

Rules kept here for every store method built on :class:`StoreFile`:

* one short-lived connection per operation, so a store holds no connection and can be shared by threads
  (Streamlit) and pickled into other processes;
* every write is one ``BEGIN IMMEDIATE`` transaction (it takes the write lock before reading, so two writers
  never deadlock on a lock upgrade), retried a few times if SQLite still answers "locked" after the busy timeout;
* opening a file of an older schema migrates it (:func:`cgcnn.runs.schema.migrate`) in one transaction.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cgcnn.errors import CGCNNError
from cgcnn.runs.schema import FLOAT_FRAME_COLUMNS, SCHEMA_VERSION, migrate
from cgcnn.storage import storage_errors

if TYPE_CHECKING:
    import pandas as pd

STORE_FILENAME = "runs.sqlite"
BUSY_TIMEOUT_S = 30.0

T = TypeVar("T")


class RunStoreError(CGCNNError):
    """A run store operation that cannot be done as asked (the message says why)."""


class StoreVersionError(RunStoreError):
    """The store file was written by a newer cgcnn, whose schema this version does not know."""


def default_home() -> Path:
    """Where runs live: ``$CGCNN_HOME`` if set, else ``~/.local/share/cgcnn`` (created if missing)."""
    env = os.environ.get("CGCNN_HOME")
    home = Path(env).expanduser() if env else Path.home() / ".local" / "share" / "cgcnn"
    home.mkdir(parents=True, exist_ok=True)
    return home


def run_dir(run_id: str, home: Path | None = None) -> Path:
    """The folder of one run's files (checkpoint ``model.pt``, ``worker.log``); not created here."""
    return (home if home is not None else default_home()) / "runs" / run_id


class StoreFile:
    """The SQLite file of a run store: connections, transactions with retries, schema upgrades.

    The object only holds the path: every method opens its own connection.

    Args:
        path: the SQLite file; default ``default_home() / "runs.sqlite"``. Its folder is the store's home
            (run folders go to ``<home>/runs/<run_id>``).
    """

    def __init__(self, path: Path | str | None = None) -> None:
        with storage_errors("opening the run store"):
            self.path = Path(path).expanduser() if path is not None else default_home() / STORE_FILENAME
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._init_db()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]

    @property
    def home(self) -> Path:
        """The folder holding the store file and the run folders."""
        return self.path.parent

    def run_dir(self, run_id: str) -> Path:
        """The folder of one run's files (not created here)."""
        return run_dir(run_id, self.home)

    # ----------------------------------------------------------------------------------------- plumbing

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")  # in WAL mode: durable across process crashes
        return conn

    def _with_retry(self, fn: Callable[[], T]) -> T:
        # busy_timeout already waits 30 s for the lock; this only covers the rare SQLITE_BUSY that SQLite
        # returns without waiting (WAL recovery, a checkpoint racing a new reader).
        for attempt in range(5):
            with storage_errors(f"the run store {self.path}", self.path):  # read-only, full, locked: one message
                try:
                    return fn()
                except sqlite3.OperationalError as exc:
                    msg = str(exc).lower()
                    if attempt == 4 or ("locked" not in msg and "busy" not in msg):
                        raise
            time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        def go() -> list[sqlite3.Row]:
            conn = self._connect()
            try:
                return conn.execute(sql, params).fetchall()
            finally:
                conn.close()

        return self._with_retry(go)

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in one ``BEGIN IMMEDIATE`` transaction; commit, or roll back on error."""

        def go() -> T:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(conn)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return result
            finally:
                conn.close()

        return self._with_retry(go)

    def _init_db(self) -> None:
        conn = self._connect()
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")  # persistent: stored in the file
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        finally:
            conn.close()
        if version > SCHEMA_VERSION:
            raise StoreVersionError(
                f"run store {self.path} has schema version {version}, newer than this cgcnn knows "
                f"({SCHEMA_VERSION}); upgrade cgcnn or use another CGCNN_HOME"
            )
        if version < SCHEMA_VERSION:
            self._write(migrate)

    def schema_version(self) -> int:
        """The ``user_version`` of the file (equals :data:`SCHEMA_VERSION` once opened)."""
        return int(self._read("PRAGMA user_version")[0][0])

    def _frame(self, sql: str, params: Sequence[Any], columns: Sequence[str]) -> pd.DataFrame:
        import pandas as pd  # lazy: worker processes and the CLI's quick commands do not pay for it

        rows = self._read(sql, params) if sql else []
        frame = pd.DataFrame([tuple(r) for r in rows], columns=list(columns))
        for column in columns:  # stable dtypes even when empty or all-NULL (None -> NaN)
            if column == "epoch":
                frame[column] = frame[column].astype("int64")
            elif column in FLOAT_FRAME_COLUMNS:
                frame[column] = frame[column].astype("float64")
        return frame
