"""The run store: every fine-tuning run, its epochs and its test predictions, in one SQLite file.

Why SQLite through the standard library: the store must survive killed processes (a Streamlit server stopped
with Ctrl-C, a worker killed by the OOM killer) and be written by several processes at once (the app's worker
pool, a CLI sweep in a terminal). SQLite in WAL mode gives durable commits, readers that never block the writer
and a busy timeout that serialises writers, with nothing to install or run. The store is also the job queue
(:mod:`cgcnn.runs.jobs` claims ``queued`` rows atomically), so a run requested from the app and one requested from
the CLI go through the same path.

Layout: ``<home>/runs.sqlite`` holds the tables; ``<home>/runs/<run_id>/`` holds a run's files (``model.pt``,
``worker.log``). ``<home>`` is ``$CGCNN_HOME`` or ``~/.local/share/cgcnn`` (:func:`default_home`).

Concurrency rules, kept by every method here:

* one short-lived connection per operation, so a :class:`RunStore` holds no connection and can be shared by
  threads (Streamlit) and pickled into other processes;
* every write is one ``BEGIN IMMEDIATE`` transaction (it takes the write lock before reading, so two writers
  never deadlock on a lock upgrade), retried a few times if SQLite still answers "locked" after the busy timeout;
* timestamps are unix seconds (floats, UTC by definition); the app formats them.

Stale runs: a worker that dies without a word (SIGKILL, power loss) leaves its run ``running``. Nothing here
notices that on reads; the job runner and the app call :meth:`RunStore.reap_stale` explicitly, which fails
every running run whose heartbeat is older than a timeout. Its finished epochs stay in the store.

Shared results: :meth:`RunStore.launch` gives each owner their own entry, but an entry whose spec key matches a
``done`` run or an identical queued/running one points to it (``source_run_id``) instead of computing again; its
status, results and checkpoint path are copied from the source whenever the source changes state (every status
write calls ``_sync_followers`` in the same transaction), and its epochs and predictions are read from the
source. Entries pointing to a computation are never claimed or reaped. A computation stays while any entry points
to it (:meth:`RunStore.hide`, :meth:`RunStore.delete`).

Fair queue: :meth:`RunStore.claim_next` serves the owner with the fewest runs in progress, then the owner served
least recently, then the oldest run; :meth:`RunStore.launch` enforces ``CGCNN_MAX_QUEUED_PER_USER``.

Schema changes are ordered migrations (:data:`MIGRATIONS`), tracked with SQLite's ``user_version`` pragma;
opening an older file upgrades it in one transaction.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cgcnn.errors import CGCNNError
from cgcnn.paths import PROJECT_ROOT
from cgcnn.storage import storage_errors

if TYPE_CHECKING:
    import pandas as pd

STATUSES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE_STATUSES = ("queued", "running")
FINAL_STATUSES = ("done", "failed", "cancelled")
STORE_FILENAME = "runs.sqlite"
BUSY_TIMEOUT_S = 30.0

# Keys of a spec that say who asked for a run or how it is grouped, not what is computed: they do not enter
# the spec key, so the same cell of two sweeps (or of two users) is recognised as the same computation.
# The thread count is left out too: results at two thread counts differ only by float summation order
# (about 1e-6), so a run at 1 thread answers a request made at 2.
NON_COMPUTE_SPEC_KEYS = frozenset({"owner", "sweep_id", "sweep", "name", "torch_threads", "force"})
NON_COMPUTE_HYPERPARAMS = frozenset({"threads"})

# Spec keys copied into their own columns at creation (so runs can be filtered and compared in SQL).
_SPEC_COLUMNS = (
    "pretrained",
    "model_kind",
    "freeze",
    "target",
    "n_train",
    "n_val",
    "n_test",
    "split_hash",
    "split_seed",
    "seed",
    "torch_threads",
)
_JSON_COLUMNS = frozenset({"hyperparams", "test_metrics", "spec"})
# Columns that update() may set; the others have dedicated methods that keep their invariants.
UPDATABLE_COLUMNS = frozenset(_SPEC_COLUMNS) | {
    "started_at",
    "finished_at",
    "status",
    "heartbeat",
    "owner",
    "sweep_id",
    "hyperparams",
    "test_mae",
    "test_metrics",
    "seconds",
    "checkpoint_path",
    "error",
    "pid",
    "executor",
    "host",
    "setup_seconds",
}
# Columns an entry that reuses a computation copies from it whenever the computation changes state, so that
# lists, filters and the zoo (``run:ID`` loads ``checkpoint_path``) read an entry like any other run.
FOLLOW_COLUMNS = (
    "status",
    "started_at",
    "finished_at",
    "model_kind",
    "split_hash",
    "torch_threads",
    "test_mae",
    "test_metrics",
    "seconds",
    "checkpoint_path",
    "error",
    "executor",
    "host",
    "setup_seconds",
)
EPOCH_COLUMNS = ("epoch", "train_loss", "train_mae", "val_loss", "val_mae", "seconds", "lr")
PREDICTION_COLUMNS = ("crystal_id", "split", "y_true", "y_pred")
_FLOAT_FRAME_COLUMNS = frozenset(EPOCH_COLUMNS[1:] + PREDICTION_COLUMNS[2:])

T = TypeVar("T")


class RunStoreError(CGCNNError):
    """A run store operation that cannot be done as asked (the message says why)."""


class RunNotFound(RunStoreError):
    """No run with this id (deleted, or a typo)."""


class RunStateError(RunStoreError):
    """The run is not in a state that allows the operation (e.g. deleting a running run)."""


class NameTaken(RunStoreError):
    """Another run already carries this name; names identify saved models, so they are unique."""


class StoreVersionError(RunStoreError):
    """The store file was written by a newer cgcnn, whose schema this version does not know."""


# --------------------------------------------------------------------------------------------------- home


def default_home() -> Path:
    """Where runs live: ``$CGCNN_HOME`` if set, else ``~/.local/share/cgcnn`` (created if missing)."""
    env = os.environ.get("CGCNN_HOME")
    home = Path(env).expanduser() if env else Path.home() / ".local" / "share" / "cgcnn"
    home.mkdir(parents=True, exist_ok=True)
    return home


def run_dir(run_id: str, home: Path | None = None) -> Path:
    """The folder of one run's files (checkpoint ``model.pt``, ``worker.log``); not created here."""
    return (home if home is not None else default_home()) / "runs" / run_id


def compute_spec_key(spec: dict[str, Any]) -> str:
    """Sha256 of the canonical JSON of a spec without its owner/sweep fields.

    Two specs with the same key ask for the same computation, so a resumed sweep can skip a cell whose key
    already has a ``done`` run. Canonical means sorted keys and no whitespace; values are compared as JSON
    (``1`` and ``1.0`` differ), so build specs the same way each time.
    """
    clean = {k: v for k, v in spec.items() if k not in NON_COMPUTE_SPEC_KEYS}
    if isinstance(clean.get("hyperparams"), dict):
        clean["hyperparams"] = {k: v for k, v in clean["hyperparams"].items() if k not in NON_COMPUTE_HYPERPARAMS}
    text = json.dumps(clean, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()


@lru_cache(maxsize=1)
def git_commit() -> str:
    """Short commit of the repository holding this package, or '' (not a checkout, or no git).

    Cached for the life of the process: the code running does not change under it.
    """
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=_json_default)


def _loads(text: str | None) -> Any:
    return None if text is None or text == "" else json.loads(text)


def _iso(ts: float | None) -> str:
    if ts is None:
        return "never"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# --------------------------------------------------------------------------------------------------- schema


def _backfill_spec_keys(conn: sqlite3.Connection) -> None:
    rows = conn.execute("SELECT id, spec FROM runs").fetchall()
    conn.executemany(
        "UPDATE runs SET spec_key = ? WHERE id = ?",
        [(compute_spec_key(_loads(spec) or {}), run_id) for run_id, spec in rows],
    )


Migration = str | Callable[[sqlite3.Connection], None]

# Ordered schema migrations: entry i brings user_version from i to i + 1. Each entry is a list of SQL
# statements or Python callables, run inside one transaction. Never edit a released entry; append a new one.
MIGRATIONS: list[list[Migration]] = [
    # 1: runs, epochs, predictions
    [
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
            heartbeat REAL,
            owner TEXT NOT NULL DEFAULT '',
            sweep_id TEXT,
            pretrained TEXT,
            model_kind TEXT,
            freeze INTEGER,
            target TEXT,
            n_train INTEGER,
            n_val INTEGER,
            n_test INTEGER,
            split_hash TEXT,
            split_seed INTEGER,
            seed INTEGER,
            hyperparams TEXT NOT NULL DEFAULT '{}',
            torch_threads INTEGER,
            package_version TEXT NOT NULL DEFAULT '',
            git_commit TEXT NOT NULL DEFAULT '',
            test_mae REAL,
            test_metrics TEXT,
            seconds REAL,
            checkpoint_path TEXT,
            error TEXT,
            spec TEXT NOT NULL DEFAULT '{}',
            name TEXT
        )""",
        "CREATE INDEX runs_status ON runs (status, created_at)",
        "CREATE INDEX runs_owner ON runs (owner, created_at)",
        "CREATE INDEX runs_sweep ON runs (sweep_id)",
        """CREATE TABLE epochs (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            epoch INTEGER NOT NULL,
            train_loss REAL,
            train_mae REAL,
            val_loss REAL,
            val_mae REAL,
            seconds REAL,
            lr REAL,
            PRIMARY KEY (run_id, epoch)
        )""",
        """CREATE TABLE predictions (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            crystal_id TEXT NOT NULL,
            split TEXT NOT NULL,
            y_true REAL,
            y_pred REAL,
            PRIMARY KEY (run_id, split, crystal_id)
        )""",
    ],
    # 2: cancellation flag, worker pid, spec key (resumable sweeps), unique names of saved runs
    [
        "ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE runs ADD COLUMN pid INTEGER",
        "ALTER TABLE runs ADD COLUMN spec_key TEXT",
        _backfill_spec_keys,
        "CREATE INDEX runs_spec_key ON runs (spec_key, status)",
        "CREATE UNIQUE INDEX runs_name ON runs (name) WHERE name IS NOT NULL",
    ],
    # 3 (issue 13): display names claimed by a browser's secret token; only its sha256 is kept
    [
        """CREATE TABLE name_claims (
            name_key TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            token_hash TEXT NOT NULL,
            created_at REAL NOT NULL
        )""",
    ],
    # 4: shared results (an entry pointing to the computed run it reuses; entries hidden by their owner),
    # where a run was trained (executor, host) and how long its worker took to start training (setup).
    # Spec keys are recomputed: they no longer depend on the thread count.
    [
        "ALTER TABLE runs ADD COLUMN source_run_id TEXT",
        "ALTER TABLE runs ADD COLUMN hidden INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE runs ADD COLUMN executor TEXT",
        "ALTER TABLE runs ADD COLUMN host TEXT",
        "ALTER TABLE runs ADD COLUMN setup_seconds REAL",
        "CREATE INDEX runs_source ON runs (source_run_id)",
        _backfill_spec_keys,
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)


# --------------------------------------------------------------------------------------------------- sharing

# The next queued computation for the fair queue (see RunStore.claim_next): fewest runs in progress for its
# owner, then the owner served least recently, then the oldest run.
_NEXT_QUEUED_SQL = (
    "SELECT q.id FROM runs q WHERE q.status = 'queued' AND q.source_run_id IS NULL ORDER BY "
    "(SELECT COUNT(*) FROM runs p WHERE p.owner = q.owner AND p.status = 'running' AND p.source_run_id IS NULL), "
    "COALESCE((SELECT MAX(p.started_at) FROM runs p WHERE p.owner = q.owner AND p.source_run_id IS NULL), 0), "
    "q.created_at, q.rowid LIMIT 1"
)


def _sync_followers(conn: sqlite3.Connection, source_id: str, only: str | None = None) -> None:
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


def _waiting_followers(conn: sqlite3.Connection, source_id: str) -> int:
    return int(
        conn.execute(
            "SELECT COUNT(*) FROM runs WHERE source_run_id = ? AND status IN ('queued', 'running')", (source_id,)
        ).fetchone()[0]
    )


def _cancel_computation(conn: sqlite3.Connection, run_id: str, status: str, now: float) -> None:
    if status == "queued":
        conn.execute(
            "UPDATE runs SET status = 'cancelled', cancel_requested = 1, finished_at = ?, "
            "error = 'cancelled before it started' WHERE id = ?",
            (now, run_id),
        )
        _sync_followers(conn, run_id)
    elif status == "running":
        conn.execute("UPDATE runs SET cancel_requested = 1 WHERE id = ?", (run_id,))


def _drop_if_orphaned(conn: sqlite3.Connection, source_id: str) -> list[str]:
    """After an entry stopped pointing to it: end a hidden computation nobody wants any more.

    Returns the ids removed (their run folders are for the caller to delete, after the commit).
    """
    row = conn.execute("SELECT status, hidden FROM runs WHERE id = ?", (source_id,)).fetchone()
    if row is None or not row[1]:
        return []
    status = row[0]
    if status in ACTIVE_STATUSES:
        if not _waiting_followers(conn, source_id):
            _cancel_computation(conn, source_id, status, time.time())
        return []
    if conn.execute("SELECT 1 FROM runs WHERE source_run_id = ? LIMIT 1", (source_id,)).fetchone():
        return []
    conn.execute("DELETE FROM runs WHERE id = ?", (source_id,))
    return [source_id]


# --------------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class RunRecord:
    """One row of ``runs``, JSON columns decoded (``hyperparams``, ``spec``, ``test_metrics``)."""

    id: str
    created_at: float
    status: str
    started_at: float | None = None
    finished_at: float | None = None
    heartbeat: float | None = None
    owner: str = ""
    sweep_id: str | None = None
    pretrained: str | None = None
    model_kind: str | None = None
    freeze: int | None = None
    target: str | None = None
    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None
    split_hash: str | None = None
    split_seed: int | None = None
    seed: int | None = None
    hyperparams: dict[str, Any] = field(default_factory=dict)
    torch_threads: int | None = None
    package_version: str = ""
    git_commit: str = ""
    test_mae: float | None = None
    test_metrics: dict[str, Any] | None = None
    seconds: float | None = None
    checkpoint_path: str | None = None
    error: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    cancel_requested: bool = False
    pid: int | None = None
    spec_key: str | None = None
    source_run_id: str | None = None
    hidden: bool = False
    executor: str | None = None
    host: str | None = None
    setup_seconds: float | None = None

    @property
    def is_active(self) -> bool:
        """Queued or running: the run may still change."""
        return self.status in ACTIVE_STATUSES

    @property
    def is_reused(self) -> bool:
        """This entry points to another run's computation (its curves and results come from there)."""
        return self.source_run_id is not None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON output and DataFrames)."""
        return asdict(self)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> RunRecord:
        """Decode a ``SELECT * FROM runs`` row."""
        data = dict(row)
        for key in _JSON_COLUMNS:
            data[key] = _loads(data.get(key))
        data["hyperparams"] = data["hyperparams"] or {}
        data["spec"] = data["spec"] or {}
        data["cancel_requested"] = bool(data.get("cancel_requested") or 0)
        data["hidden"] = bool(data.get("hidden") or 0)
        return cls(**data)


# --------------------------------------------------------------------------------------------------- store


class RunStore:
    """Runs, epochs and predictions in one SQLite file, safe for several processes and threads.

    The object only holds the path: every method opens its own connection, so one store can be shared by
    Streamlit's threads and handed (pickled) to worker processes.

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
        return f"RunStore({str(self.path)!r})"

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
            self._write(self._migrate)

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        # Re-read inside the write lock: another process may have migrated since we looked.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number in range(version, SCHEMA_VERSION):
            for step in MIGRATIONS[number]:
                if callable(step):
                    step(conn)
                else:
                    conn.execute(step)
            conn.execute(f"PRAGMA user_version = {number + 1}")

    def schema_version(self) -> int:
        """The ``user_version`` of the file (equals :data:`SCHEMA_VERSION` once opened)."""
        return int(self._read("PRAGMA user_version")[0][0])

    # ----------------------------------------------------------------------------------------- runs

    def create_run(
        self, spec: dict[str, Any], owner: str = "", sweep_id: str | None = None, status: str = "queued"
    ) -> str:
        """Record a new run and return its id (8 hex digits).

        The whole ``spec`` is kept as JSON so a worker can execute it later; its well-known keys (pretrained,
        model_kind, freeze, target, n_train/n_val/n_test, split_hash, split_seed, seed, torch_threads,
        hyperparams) are also copied into columns for filtering. The package version and git commit are
        recorded now, since they say which code the run was meant for.
        """
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
        values = self._run_values(json.dumps(spec, default=_json_default), owner, sweep_id, status)
        return self._write(lambda conn: self._insert_run(conn, values))

    @staticmethod
    def _run_values(spec_json: str, owner: str, sweep_id: str | None, status: str) -> dict[str, Any]:
        spec = json.loads(spec_json)  # what is stored is what the columns are taken from
        from cgcnn import __version__

        values: dict[str, Any] = {key: spec.get(key) for key in _SPEC_COLUMNS}
        if values["pretrained"] is not None:
            values["pretrained"] = str(values["pretrained"])
        if values["freeze"] is not None:
            values["freeze"] = int(values["freeze"])
        now = time.time()
        values.update(
            created_at=now,
            status=status,
            owner=owner or "",
            sweep_id=sweep_id,
            hyperparams=json.dumps(spec.get("hyperparams") or {}),
            package_version=__version__,
            git_commit=git_commit(),
            spec=spec_json,
            spec_key=compute_spec_key(spec),
        )
        if status == "running":
            values.update(started_at=now, heartbeat=now)
        elif status in FINAL_STATUSES:
            values.update(finished_at=now)
        return values

    @staticmethod
    def _insert_run(conn: sqlite3.Connection, values: dict[str, Any]) -> str:
        while True:
            run_id = uuid.uuid4().hex[:8]
            row = {"id": run_id, **values}
            try:
                conn.execute(
                    f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                    list(row.values()),
                )
            except sqlite3.IntegrityError:
                if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone():
                    continue  # 1 in 4 billion: draw another id
                raise
            return run_id

    def get(self, run_id: str) -> RunRecord:
        """The run with this id; raises :class:`RunNotFound`."""
        rows = self._read("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise RunNotFound(f"no run with id {run_id!r} in {self.path}")
        return RunRecord.from_row(rows[0])

    def exists(self, run_id: str) -> bool:
        """Whether a run with this id is stored."""
        return bool(self._read("SELECT 1 FROM runs WHERE id = ?", (run_id,)))

    def list_runs(
        self,
        owner: str | None = None,
        status: str | Iterable[str] | None = None,
        sweep_id: str | None = None,
        limit: int | None = None,
        include_hidden: bool = False,
    ) -> list[RunRecord]:
        """Runs matching every given filter, newest first. ``status`` may be one status or several.

        Entries their owner deleted while others still reuse them (:meth:`hide`) are left out unless
        ``include_hidden``.
        """
        where, params = self._filters(owner=owner, status=status, sweep_id=sweep_id)
        if not include_hidden:
            where += (" AND " if where else " WHERE ") + "hidden = 0"
        sql = f"SELECT * FROM runs{where} ORDER BY created_at DESC, rowid DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [RunRecord.from_row(r) for r in self._read(sql, params)]

    def counts(
        self, owner: str | None = None, sweep_id: str | None = None, computations_only: bool = False
    ) -> dict[str, int]:
        """Number of runs per status (every status present, zero if none).

        With ``computations_only``, entries that reuse another run's computation are not counted (what the
        workers have to do).
        """
        where, params = self._filters(owner=owner, sweep_id=sweep_id)
        if computations_only:
            where += (" AND " if where else " WHERE ") + "source_run_id IS NULL"
        rows = self._read(f"SELECT status, COUNT(*) FROM runs{where} GROUP BY status", params)
        counts = dict.fromkeys(STATUSES, 0)
        counts.update({r[0]: int(r[1]) for r in rows})
        return counts

    @staticmethod
    def _filters(**filters: Any) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in filters.items():
            if value is None:
                continue
            if column == "status" and not isinstance(value, str):
                value = list(value)
                clauses.append(f"status IN ({', '.join('?' * len(value))})")
                params.extend(value)
            else:
                clauses.append(f"{column} = ?")
                params.append(value)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def update(self, run_id: str, **columns: Any) -> None:
        """Set whitelisted columns (:data:`UPDATABLE_COLUMNS`); dicts go to JSON columns as JSON."""
        if not columns:
            return
        unknown = set(columns) - UPDATABLE_COLUMNS
        if unknown:
            raise ValueError(f"update() cannot set {sorted(unknown)}; allowed: {sorted(UPDATABLE_COLUMNS)}")
        if "status" in columns and columns["status"] not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {columns['status']!r}")
        values = [_dumps(v) if k in _JSON_COLUMNS else v for k, v in columns.items()]
        assignments = ", ".join(f"{k} = ?" for k in columns)
        sync = bool(set(columns) & set(FOLLOW_COLUMNS))
        self._update_one(run_id, f"UPDATE runs SET {assignments} WHERE id = ?", [*values, run_id], sync=sync)

    def _update_one(self, run_id: str, sql: str, params: Sequence[Any], sync: bool = False) -> None:
        def go(conn: sqlite3.Connection) -> int:
            changed = conn.execute(sql, params).rowcount
            if changed and sync:
                _sync_followers(conn, run_id)
            return changed

        if not self._write(go):
            raise RunNotFound(f"no run with id {run_id!r} in {self.path}")

    def mark_running(self, run_id: str, pid: int | None = None) -> None:
        """Mark a queued (or already claimed) run as running now, with a fresh heartbeat.

        Idempotent for a run the job runner already claimed: ``started_at`` keeps its first value. Raises
        :class:`RunStateError` if the run already ended (cancelled while queued, reaped, finished).
        """
        now = time.time()
        pid = os.getpid() if pid is None else pid

        def go(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise RunNotFound(f"no run with id {run_id!r} in {self.path}")
            if row[0] not in ACTIVE_STATUSES:
                raise RunStateError(f"run {run_id} is {row[0]}; it cannot start")
            conn.execute(
                "UPDATE runs SET status = 'running', started_at = COALESCE(started_at, ?), heartbeat = ?, "
                "pid = ? WHERE id = ?",
                (now, now, pid, run_id),
            )
            _sync_followers(conn, run_id)

        self._write(go)

    def heartbeat(self, run_id: str) -> None:
        """Say the run's worker is alive (only running runs; a no-op otherwise)."""
        self._write(
            lambda conn: conn.execute(
                "UPDATE runs SET heartbeat = ? WHERE id = ? AND status = 'running'", (time.time(), run_id)
            )
        )

    def claim_next(
        self,
        pid: int | None = None,
        torch_threads: int | None = None,
        executor: str | None = None,
        host: str | None = None,
    ) -> str | None:
        """Take the next queued computation for execution: it becomes running, atomically; None if none.

        Fair share: the run goes to the owner with the fewest runs in progress, then to the owner served
        least recently (round robin: one student's 50 queued runs do not hold back a classmate's one), then
        to the oldest run. Entries that reuse another run's computation are never claimed. One
        ``UPDATE ... WHERE status = 'queued'`` under the write lock, so two runners (threads or processes)
        never take the same run.

        Args:
            pid: the process executing it (recorded; the runner's own pid for a warm worker pool).
            torch_threads: the thread count it will train with, fixed now and recorded with the run.
            executor: ``local`` or ``ray`` (recorded).
            host: the machine that trains it (recorded).
        """
        now = time.time()

        def go(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "UPDATE runs SET status = 'running', started_at = ?, heartbeat = ?, pid = ?, "
                "torch_threads = COALESCE(?, torch_threads), executor = COALESCE(?, executor), "
                "host = COALESCE(?, host) "
                f"WHERE id = ({_NEXT_QUEUED_SQL}) AND status = 'queued' RETURNING id",
                (now, now, pid, torch_threads, executor, host),
            ).fetchone()
            if row is None:
                return None
            _sync_followers(conn, str(row[0]))
            return str(row[0])

        return self._write(go)

    def finish(
        self,
        run_id: str,
        status: str,
        test_mae: float | None = None,
        test_metrics: dict[str, Any] | None = None,
        seconds: float | None = None,
        checkpoint_path: str | Path | None = None,
        error: str | None = None,
        only_if_active: bool = False,
    ) -> bool:
        """End a run: status done, failed or cancelled, with its results.

        Args:
            run_id: the run.
            status: 'done', 'failed' or 'cancelled'.
            test_mae: the headline number (kept in its own column so runs sort by it).
            test_metrics: any other metrics (JSON).
            seconds: training time; default the wall time since the run started.
            checkpoint_path: where the trained model was saved (normally ``run_dir(run_id) / "model.pt"``).
            error: one line for the user when the run failed or was cancelled.
            only_if_active: leave an already ended run as it is (used by supervisors, which must not turn a
                run the worker finished as 'done' into 'failed').

        Returns:
            Whether the row was changed (always True unless ``only_if_active`` found the run ended).
        """
        if status not in FINAL_STATUSES:
            raise ValueError(f"finish() status must be one of {FINAL_STATUSES}, not {status!r}")
        now = time.time()
        values = (
            status,
            now,
            test_mae if test_mae is None else float(test_mae),
            _dumps(test_metrics),
            seconds,
            now,
            None if checkpoint_path is None else str(checkpoint_path),
            error,
            run_id,
        )
        guard = " AND status IN ('queued', 'running')" if only_if_active else ""

        def go(conn: sqlite3.Connection) -> bool:
            if not conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone():
                raise RunNotFound(f"no run with id {run_id!r} in {self.path}")
            cur = conn.execute(
                "UPDATE runs SET status = ?, finished_at = ?, test_mae = COALESCE(?, test_mae), "
                "test_metrics = COALESCE(?, test_metrics), "
                "seconds = COALESCE(?, seconds, ? - started_at), checkpoint_path = COALESCE(?, checkpoint_path), "
                f"error = ? WHERE id = ?{guard}",
                values,
            )
            if cur.rowcount > 0:
                _sync_followers(conn, run_id)
            return cur.rowcount > 0

        return self._write(go)

    def request_cancel(self, run_id: str, force: bool = False) -> str:
        """Ask a run to stop; returns its status afterwards.

        A queued run is cancelled at once. A running run gets its ``cancel_requested`` flag set; its worker
        polls :meth:`cancel_requested` (each epoch) and ends the run as cancelled, and the job runner kills
        it after a grace period. An ended run is left as it is.

        Shared results: cancelling an entry that reuses another run's computation cancels the entry only
        (the computation goes on for the others, unless nobody wants it any more). Cancelling a computation
        that other entries wait for hides it from its owner and lets it run on for them; with ``force``
        (the teacher) it is cancelled, and so are the entries waiting for it.
        """

        def go(conn: sqlite3.Connection) -> str:
            row = conn.execute("SELECT status, source_run_id FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise RunNotFound(f"no run with id {run_id!r} in {self.path}")
            status, source = row
            if status not in ACTIVE_STATUSES:
                return str(status)
            now = time.time()
            if source is not None:
                conn.execute(
                    "UPDATE runs SET status = 'cancelled', cancel_requested = 1, finished_at = ?, "
                    "error = 'cancelled' WHERE id = ?",
                    (now, run_id),
                )
                _drop_if_orphaned(conn, source)
                return "cancelled"
            if not force and _waiting_followers(conn, run_id):
                conn.execute("UPDATE runs SET hidden = 1 WHERE id = ?", (run_id,))
                return str(status)
            _cancel_computation(conn, run_id, status, now)
            return "cancelled" if status == "queued" else str(status)

        return self._write(go)

    def cancel_requested(self, run_id: str) -> bool:
        """Whether the worker of this run should stop (flag set, run already cancelled, or run gone)."""
        rows = self._read("SELECT cancel_requested, status FROM runs WHERE id = ?", (run_id,))
        if not rows:
            return True  # deleted under the worker: nothing to write results to
        return bool(rows[0][0]) or rows[0][1] == "cancelled"

    def reap_stale(self, timeout_s: float = 60.0, exclude: Iterable[str] = ()) -> list[str]:
        """Fail running runs whose worker stopped heartbeating more than ``timeout_s`` ago; returns their ids.

        A worker killed without a word (SIGKILL, OOM killer, power loss) cannot mark its run; this is the
        only place where such runs end. Their finished epochs stay. A run whose cancellation was requested
        ends as cancelled instead. Not called by reads: call it from supervisors (the job runner does it each
        few seconds, the app on its runs page) so that listing runs stays a pure read.

        Args:
            timeout_s: heartbeat age that counts as dead; keep it well above the heartbeat period.
            exclude: runs not to touch (a runner passes its own workers' runs: it knows they are alive).
        """
        now = time.time()
        cutoff = now - timeout_s
        skip = set(exclude)

        def go(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT id, heartbeat, started_at, cancel_requested FROM runs WHERE status = 'running' "
                "AND source_run_id IS NULL AND COALESCE(heartbeat, started_at, created_at) < ?",
                (cutoff,),
            ).fetchall()
            rows = [r for r in rows if r[0] not in skip]
            for run_id, beat, started, cancel in rows:
                last = beat if beat is not None else started
                status = "cancelled" if cancel else "failed"
                conn.execute(
                    "UPDATE runs SET status = ?, finished_at = ?, error = ? WHERE id = ? AND status = 'running'",
                    (status, now, f"worker stopped (no heartbeat since {_iso(last)})", run_id),
                )
                _sync_followers(conn, run_id)
            return [str(r[0]) for r in rows]

        return self._write(go)

    def queue_position(self, run_id: str) -> int | None:
        """1-based place of a queued run among queued runs in creation order; None if it is not queued.

        An entry that reuses a computation has the place of that computation.
        """
        run_id = self._source_ids([run_id])[run_id]
        rows = self._read(
            "SELECT (SELECT COUNT(*) FROM runs q WHERE q.status = 'queued' AND q.source_run_id IS NULL AND "
            "(q.created_at < r.created_at OR (q.created_at = r.created_at AND q.rowid <= r.rowid))), r.status "
            "FROM runs r WHERE r.id = ?",
            (run_id,),
        )
        if not rows:
            raise RunNotFound(f"no run with id {run_id!r} in {self.path}")
        return int(rows[0][0]) if rows[0][1] == "queued" else None

    def delete(self, run_id: str) -> bool:
        """Remove a run (the teacher's or the CLI's delete): its row, epochs, predictions and run folder.

        A running computation must be cancelled first. A computation that other entries reuse is kept for
        them (hidden from its owner instead); it goes when the last entry pointing to it goes. Deleting an
        entry that reuses a computation removes the entry only.

        Returns:
            True if the run was removed, False if it was kept (hidden) because other entries point to it.
        """

        def go(conn: sqlite3.Connection) -> list[str]:
            row = conn.execute("SELECT status, source_run_id FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise RunNotFound(f"no run with id {run_id!r} in {self.path}")
            status, source = row
            if source is not None:
                conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
                return [run_id, *_drop_if_orphaned(conn, source)]
            if conn.execute("SELECT 1 FROM runs WHERE source_run_id = ? LIMIT 1", (run_id,)).fetchone():
                conn.execute("UPDATE runs SET hidden = 1 WHERE id = ?", (run_id,))
                return []
            if status == "running":
                raise RunStateError(f"run {run_id} is running; cancel it before deleting it")
            conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            return [run_id]

        removed = self._write(go)
        for gone in removed:
            shutil.rmtree(self.run_dir(gone), ignore_errors=True)
        return run_id in removed

    def hide(self, run_id: str) -> None:
        """The owner's delete of an entry: it leaves the owner's list; its computation stays while others use it.

        An entry that reuses a computation is removed (it holds nothing of its own). A computation nobody
        else points to is deleted like :meth:`delete` (a running one must be cancelled first). A computation
        others point to is only hidden: its epochs, predictions and checkpoint stay for them.
        """
        self.delete(run_id)

    def resolve(self, run_id: str) -> RunRecord:
        """The computed run behind an entry: the run it reuses, or itself (raises :class:`RunNotFound`)."""
        record = self.get(run_id)
        if record.source_run_id is None:
            return record
        rows = self._read("SELECT * FROM runs WHERE id = ?", (record.source_run_id,))
        return RunRecord.from_row(rows[0]) if rows else record

    def _source_ids(self, run_ids: Sequence[str]) -> dict[str, str]:
        """Entry id -> id of the run that computed it (itself when not reused)."""
        ids = list(dict.fromkeys(run_ids))
        if not ids:
            return {}
        rows = self._read(
            f"SELECT id, COALESCE(source_run_id, id) FROM runs WHERE id IN ({', '.join('?' * len(ids))})", ids
        )
        found = {str(r[0]): str(r[1]) for r in rows}
        return {i: found.get(i, i) for i in ids}

    def launch(self, spec: dict[str, Any], owner: str, force: bool = False) -> RunRecord:
        """Create ``owner``'s entry for ``spec``, answering it from an identical computation when there is one.

        * a ``done`` run with the same spec key (:func:`compute_spec_key`: thread count, owner and sweep
          ignored) and not ``force``: the entry is ``done`` at once and points to it (``source_run_id``);
        * an identical computation queued or running (not being cancelled): the entry points to it and
          follows its status, so identical specs queued at the same time are computed once;
        * otherwise (or with ``force``, "train again"): a new queued computation.

        Raises:
            LimitExceeded: ``owner`` already has ``max_queued_per_user`` runs queued or running; nothing is
                queued.
        """
        from cgcnn.settings import LimitExceeded, current_limits

        limit = current_limits().max_queued_per_user
        spec_json = json.dumps(spec, default=_json_default)
        key = compute_spec_key(json.loads(spec_json))
        owner = owner or ""

        def go(conn: sqlite3.Connection) -> str:
            active = conn.execute(
                "SELECT COUNT(*) FROM runs WHERE owner = ? AND hidden = 0 AND status IN ('queued', 'running')",
                (owner,),
            ).fetchone()[0]
            source = None
            if not force:
                source = conn.execute(
                    "SELECT id, status FROM runs WHERE spec_key = ? AND source_run_id IS NULL AND status = 'done' "
                    "ORDER BY created_at DESC, rowid DESC LIMIT 1",
                    (key,),
                ).fetchone()
            if source is None:
                source = conn.execute(
                    "SELECT id, status FROM runs WHERE spec_key = ? AND source_run_id IS NULL "
                    "AND status IN ('queued', 'running') AND cancel_requested = 0 "
                    "ORDER BY created_at, rowid LIMIT 1",
                    (key,),
                ).fetchone()
            if (source is None or source[1] != "done") and limit and active >= limit:
                raise LimitExceeded(
                    f"{owner or 'you'} already has {active} runs queued or running, this server's limit "
                    f"(set by CGCNN_MAX_QUEUED_PER_USER is {limit}); wait for one to finish or cancel one"
                )
            run_id = self._insert_run(conn, self._run_values(spec_json, owner, None, "queued"))
            if source is not None:
                conn.execute("UPDATE runs SET source_run_id = ? WHERE id = ?", (source[0], run_id))
                _sync_followers(conn, source[0], only=run_id)
            return run_id

        return self.get(self._write(go))

    def queue_eta(self, run_id: str, workers: int | None = None) -> tuple[float | None, int]:
        """Seconds until a run should finish, and how many queued computations will start before it.

        The estimate simulates the fair queue (:meth:`claim_next`) on ``workers`` workers (default: as many
        as runs are running now, at least one) with each run's cost taken from recent epochs: seconds per
        epoch per training crystal, times the run's epochs and training size. An entry that reuses a
        computation is answered for that computation. An ended run is ``(0.0, 0)``.

        Returns:
            ``(seconds, runs_ahead)``; seconds is None while no epoch has been recorded to estimate from.
        """
        record = self.resolve(run_id)
        if not record.is_active:
            return 0.0, 0
        rate, setup = self._epoch_rate()
        running = self._read(
            "SELECT r.id, r.owner, r.started_at, r.n_train, r.hyperparams, "
            "(SELECT COUNT(*) FROM epochs e WHERE e.run_id = r.id) FROM runs r "
            "WHERE r.status = 'running' AND r.source_run_id IS NULL"
        )
        queued = self._read(
            "SELECT r.id, r.owner, r.n_train, r.hyperparams FROM runs r "
            "WHERE r.status = 'queued' AND r.source_run_id IS NULL ORDER BY r.created_at, r.rowid"
        )
        last_served = {
            str(r[0]): float(r[1] or 0.0)
            for r in self._read(
                "SELECT owner, MAX(started_at) FROM runs WHERE source_run_id IS NULL AND started_at IS NOT NULL "
                "GROUP BY owner"
            )
        }
        now = time.time()

        def cost(n_train: int | None, hyperparams: str | None, done_epochs: int = 0) -> float:
            epochs = int((_loads(hyperparams) or {}).get("epochs", 30))
            left = max(0, epochs - done_epochs)
            return (rate or 0.0) * max(1, n_train or 1) * left + (setup if done_epochs == 0 else 0.0)

        # free-at times of the workers, and which owner holds each running slot
        slots: list[tuple[float, str]] = []
        for rid, owner, _started, n_train, hyper, done_epochs in running:
            end = now + cost(n_train, hyper, int(done_epochs))
            if rid == record.id:
                return (None if rate is None else end - now), 0
            slots.append((end, str(owner)))
        n_workers = max(1, workers or 0, len(slots))
        slots.sort()
        while len(slots) < n_workers:
            slots.insert(0, (now, ""))
        pending = [(str(r[0]), str(r[1]), r[2], r[3]) for r in queued]
        ahead = 0
        while pending:
            slots.sort()
            free_at, _ = slots.pop(0)
            in_progress: dict[str, int] = {}
            for end, owner in slots:
                if end > free_at and owner:
                    in_progress[owner] = in_progress.get(owner, 0) + 1
            order = sorted(
                range(len(pending)),
                key=lambda i: (in_progress.get(pending[i][1], 0), last_served.get(pending[i][1], 0.0), i),
            )
            rid, owner, n_train, hyper = pending.pop(order[0])
            last_served[owner] = free_at
            end = free_at + cost(n_train, hyper)
            if rid == record.id:
                return (None if rate is None else end - now), ahead
            ahead += 1
            slots.append((end, owner))
        return None, ahead  # not found among queued: it was claimed just now

    def _epoch_rate(self) -> tuple[float | None, float]:
        """Seconds per epoch per training crystal over the last 200 recorded epochs, and the mean setup time."""
        rows = self._read(
            "SELECT e.seconds, r.n_train FROM epochs e JOIN runs r ON r.id = e.run_id "
            "WHERE e.seconds IS NOT NULL AND r.n_train > 0 ORDER BY e.rowid DESC LIMIT 200"
        )
        setup_rows = self._read(
            "SELECT AVG(setup_seconds) FROM (SELECT setup_seconds FROM runs WHERE setup_seconds IS NOT NULL "
            "ORDER BY started_at DESC LIMIT 20)"
        )
        setup = float(setup_rows[0][0] or 0.0) if setup_rows else 0.0
        if not rows:
            return None, setup
        return sum(float(s) / int(n) for s, n in rows) / len(rows), setup

    def set_name(self, run_id: str, name: str | None) -> None:
        """Give a run a unique name (saving it to the zoo), or clear it with None.

        Raises :class:`NameTaken` if another run carries the name already.
        """
        if name is not None:
            name = name.strip()
            if not name:
                raise RunStoreError("a run name cannot be empty")

        def go(conn: sqlite3.Connection) -> None:
            if not conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone():
                raise RunNotFound(f"no run with id {run_id!r} in {self.path}")
            if name is not None:
                other = conn.execute("SELECT id FROM runs WHERE name = ? AND id != ?", (name, run_id)).fetchone()
                if other:
                    raise NameTaken(f"the name {name!r} is already used by run {other[0]}; choose another")
            conn.execute("UPDATE runs SET name = ? WHERE id = ?", (name, run_id))

        self._write(go)

    def find_by_name(self, name: str) -> RunRecord | None:
        """The run carrying this name, or None."""
        rows = self._read("SELECT * FROM runs WHERE name = ?", (name.strip(),))
        return RunRecord.from_row(rows[0]) if rows else None

    def find_done(self, spec_key: str) -> RunRecord | None:
        """The newest finished ('done') run with this spec key (:func:`compute_spec_key`), or None."""
        rows = self._read(
            "SELECT * FROM runs WHERE spec_key = ? AND status = 'done' AND source_run_id IS NULL "
            "ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (spec_key,),
        )
        return RunRecord.from_row(rows[0]) if rows else None

    # ----------------------------------------------------------------------------------------- epochs

    def add_epoch(
        self,
        run_id: str,
        epoch: int,
        train_loss: float | None,
        train_mae: float | None,
        val_loss: float | None,
        val_mae: float | None,
        seconds: float | None,
        lr: float | None = None,
    ) -> None:
        """Record one finished epoch (idempotent: writing the same epoch again replaces it)."""
        row = (run_id, int(epoch), *(None if v is None else float(v) for v in (train_loss, train_mae)))
        row += tuple(None if v is None else float(v) for v in (val_loss, val_mae, seconds, lr))
        try:
            self._write(
                lambda conn: conn.execute(
                    "INSERT OR REPLACE INTO epochs (run_id, epoch, train_loss, train_mae, val_loss, val_mae, "
                    "seconds, lr) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
            )
        except sqlite3.IntegrityError as exc:  # foreign key: the run does not exist
            raise RunNotFound(f"no run with id {run_id!r} in {self.path}") from exc

    def epochs(self, run_id: str) -> pd.DataFrame:
        """The run's epochs in order, one row each: epoch, train_loss, train_mae, val_loss, val_mae, seconds, lr."""
        source = self._source_ids([run_id])[run_id]
        return self._frame(
            f"SELECT {', '.join(EPOCH_COLUMNS)} FROM epochs WHERE run_id = ? ORDER BY epoch", [source], EPOCH_COLUMNS
        )

    def epochs_many(self, run_ids: Iterable[str]) -> pd.DataFrame:
        """The epochs of several runs in one frame, with a leading ``run_id`` column (for overlaid curves)."""
        ids = list(dict.fromkeys(run_ids))
        columns = ("run_id", *EPOCH_COLUMNS)
        if not ids:
            return self._frame("", [], columns)
        sources = self._source_ids(ids)
        if all(sources[i] == i for i in ids):
            sql = (
                f"SELECT {', '.join(columns)} FROM epochs WHERE run_id IN ({', '.join('?' * len(ids))}) "
                "ORDER BY run_id, epoch"
            )
            return self._frame(sql, ids, columns)
        # entries reusing a computation get its epochs under their own id
        pairs = " UNION ALL ".join("SELECT ? AS entry, ? AS source" for _ in ids)
        sql = (
            f"SELECT m.entry, {', '.join('e.' + c for c in EPOCH_COLUMNS)} FROM ({pairs}) m "
            "JOIN epochs e ON e.run_id = m.source ORDER BY m.entry, e.epoch"
        )
        return self._frame(sql, [v for i in ids for v in (i, sources[i])], columns)

    # ----------------------------------------------------------------------------------------- predictions

    def add_predictions(self, run_id: str, rows: Iterable[tuple[str, str, float | None, float | None]]) -> int:
        """Store predictions ``(crystal_id, split, y_true, y_pred)`` in one transaction; returns how many.

        Writing the same (split, crystal_id) again replaces it, so a retried write does not duplicate rows.
        """
        data = [
            (run_id, str(cid), str(split), None if yt is None else float(yt), None if yp is None else float(yp))
            for cid, split, yt, yp in rows
        ]
        try:
            self._write(
                lambda conn: conn.executemany(
                    "INSERT OR REPLACE INTO predictions (run_id, crystal_id, split, y_true, y_pred) "
                    "VALUES (?, ?, ?, ?, ?)",
                    data,
                )
            )
        except sqlite3.IntegrityError as exc:
            raise RunNotFound(f"no run with id {run_id!r} in {self.path}") from exc
        return len(data)

    def predictions(self, run_id: str, split: str | None = None) -> pd.DataFrame:
        """The run's predictions (crystal_id, split, y_true, y_pred) in the order they were written."""
        sql = f"SELECT {', '.join(PREDICTION_COLUMNS)} FROM predictions WHERE run_id = ?"
        params: list[Any] = [self._source_ids([run_id])[run_id]]
        if split is not None:
            sql += " AND split = ?"
            params.append(split)
        return self._frame(sql + " ORDER BY rowid", params, PREDICTION_COLUMNS)

    def _frame(self, sql: str, params: Sequence[Any], columns: Sequence[str]) -> pd.DataFrame:
        import pandas as pd  # lazy: worker processes and the CLI's quick commands do not pay for it

        rows = self._read(sql, params) if sql else []
        frame = pd.DataFrame([tuple(r) for r in rows], columns=list(columns))
        for column in columns:  # stable dtypes even when empty or all-NULL (None -> NaN)
            if column == "epoch":
                frame[column] = frame[column].astype("int64")
            elif column in _FLOAT_FRAME_COLUMNS:
                frame[column] = frame[column].astype("float64")
        return frame

    # ----------------------------------------------------------------------------------------- name claims

    def name_claim(self, name_key: str) -> str | None:
        """The token hash that holds a display name (its case-folded key), or None if nobody claimed it."""
        rows = self._read("SELECT token_hash FROM name_claims WHERE name_key = ?", (name_key,))
        return str(rows[0][0]) if rows else None

    def claim_name(self, name_key: str, name: str, token_hash: str) -> str:
        """Claim a display name for a token hash unless someone holds it; returns the holder's token hash.

        One transaction, so two browsers typing the same new name at once cannot both win.
        """

        def go(conn: sqlite3.Connection) -> str:
            conn.execute(
                "INSERT OR IGNORE INTO name_claims (name_key, name, token_hash, created_at) VALUES (?, ?, ?, ?)",
                (name_key, name, token_hash, time.time()),
            )
            row = conn.execute("SELECT token_hash FROM name_claims WHERE name_key = ?", (name_key,)).fetchone()
            return str(row[0])

        return self._write(go)

    def release_name(self, name_key: str) -> bool:
        """Free a claimed display name (a teacher's action, e.g. a student lost the link); whether one was held."""
        return bool(
            self._write(lambda conn: conn.execute("DELETE FROM name_claims WHERE name_key = ?", (name_key,)).rowcount)
        )
