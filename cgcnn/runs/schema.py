"""What the run store holds and how its file evolves: columns, the spec key, row decoding, migrations.

Why a module of its own: the store (:mod:`cgcnn.runs.store`) is about how rows are written safely by several
processes; this module is about what a row is. A newcomer adding a column reads only this file: add it to a
new numbered entry of :data:`MIGRATIONS` (each issue that needs a schema change adds exactly one, in merge
order), to :class:`RunRecord`, and to :data:`UPDATABLE_COLUMNS` / :data:`FOLLOW_COLUMNS` if it applies.

Schema changes are ordered migrations, tracked with SQLite's ``user_version`` pragma; opening an older file
upgrades it in one transaction (:func:`migrate`).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cgcnn.names import name_key

STATUSES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE_STATUSES = ("queued", "running")
FINAL_STATUSES = ("done", "failed", "cancelled")

# Keys of a spec that say who asked for a run or how it is grouped, not what is computed: they do not enter
# the spec key, so the same cell of two sweeps (or of two users) is recognised as the same computation.
# The thread count is left out too: results at two thread counts differ only by float summation order
# (about 1e-6), so a run at 1 thread answers a request made at 2.
NON_COMPUTE_SPEC_KEYS = frozenset({"owner", "sweep_id", "sweep", "name", "torch_threads", "force"})
NON_COMPUTE_HYPERPARAMS = frozenset({"threads"})

# Spec keys copied into their own columns at creation (so runs can be filtered and compared in SQL).
SPEC_COLUMNS = (
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
JSON_COLUMNS = frozenset({"hyperparams", "test_metrics", "spec"})
# Columns that update() may set; the others have dedicated methods that keep their invariants.
UPDATABLE_COLUMNS = frozenset(SPEC_COLUMNS) | {
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
    "cpu_capability",
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
    "cpu_capability",
)
EPOCH_COLUMNS = ("epoch", "train_loss", "train_mae", "val_loss", "val_mae", "seconds", "lr")
PREDICTION_COLUMNS = ("crystal_id", "split", "y_true", "y_pred")
FLOAT_FRAME_COLUMNS = frozenset(EPOCH_COLUMNS[1:] + PREDICTION_COLUMNS[2:])


#: Hyperparameters at these values are dropped before a spec is hashed: they are ``TrainConfig``'s defaults
#: (a test keeps the two equal), so ``{"epochs": 30}`` from the app and the CLI's fully written-out
#: ``{"epochs": 30, "batch_size": 64, "optimizer": "adam", ...}`` are one computation. Epochs are not here:
#: every spec writes them out (they are the protocol's, see :mod:`cgcnn.training.protocol`). A new
#: hyperparameter is added here with its default, so adding it changes no stored key.
HYPERPARAM_KEY_DEFAULTS: dict[str, Any] = {
    "batch_size": 64,
    "optimizer": "adam",
    "lr": 0.003,
    "momentum": 0.9,
    "weight_decay": 0.0,
    "lr_milestones": [],
    "lr_gamma": 0.1,
    "patience": None,
    "device": "cpu",
    "eval_batch_size": 256,
}
#: Spec fields at these values are dropped before hashing: the optional fields (a new spec field goes here with
#: its default, so specs stored before it existed keep their key).
SPEC_KEY_DEFAULTS: dict[str, Any] = {"data": None, "warm_start": False}


def canonical_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """What of a spec defines the computation: no owner/sweep/thread fields, no value at its default.

    Values are compared as JSON (a tuple and a list of the same numbers are equal; ``1`` and ``1.0`` too).
    """

    def same(a: Any, b: Any) -> bool:
        return json.loads(json.dumps(a, default=json_default)) == b

    clean = {
        k: v
        for k, v in spec.items()
        if k not in NON_COMPUTE_SPEC_KEYS and not (k in SPEC_KEY_DEFAULTS and same(v, SPEC_KEY_DEFAULTS[k]))
    }
    if isinstance(clean.get("hyperparams"), dict):
        clean["hyperparams"] = {
            k: v
            for k, v in clean["hyperparams"].items()
            if k not in NON_COMPUTE_HYPERPARAMS
            and not (k in HYPERPARAM_KEY_DEFAULTS and same(v, HYPERPARAM_KEY_DEFAULTS[k]))
        }
    return clean


def compute_spec_key(spec: dict[str, Any]) -> str:
    """Sha256 of the canonical JSON of a spec (:func:`canonical_spec`): equal keys, one computation.

    Two specs with the same key ask for the same computation, so a resumed sweep can skip a cell whose key
    already has a ``done`` run, and a run queued from the CLI reuses one finished through the app or a sweep.
    Canonical means sorted keys, no whitespace, and no field or hyperparameter at its default.
    """
    text = json.dumps(canonical_spec(spec), sort_keys=True, separators=(",", ":"), default=json_default)
    return hashlib.sha256(text.encode()).hexdigest()


def json_default(value: Any) -> Any:
    """JSON for the values a spec or a metric may hold (paths, numpy and torch scalars and arrays)."""
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(value: Any) -> str | None:
    """A JSON column's text (None stays NULL)."""
    return None if value is None else json.dumps(value, default=json_default)


def loads(text: str | None) -> Any:
    """A JSON column's value (NULL and '' read as None)."""
    return None if text is None or text == "" else json.loads(text)


# --------------------------------------------------------------------------------------------------- schema


def _backfill_spec_keys(conn: sqlite3.Connection) -> None:
    rows = conn.execute("SELECT id, spec FROM runs").fetchall()
    conn.executemany(
        "UPDATE runs SET spec_key = ? WHERE id = ?",
        [(compute_spec_key(loads(spec) or {}), run_id) for run_id, spec in rows],
    )


def backfill_owner_keys(conn: sqlite3.Connection) -> None:
    """Set every run's ``owner_key`` from its ``owner`` (run it again in a migration if ``name_key`` changes)."""
    rows = conn.execute("SELECT id, owner FROM runs").fetchall()
    conn.executemany(
        "UPDATE runs SET owner_key = ? WHERE id = ?", [(name_key(owner), run_id) for run_id, owner in rows]
    )


def _rekey_name_claims(conn: sqlite3.Connection) -> None:
    from cgcnn.runs.claims import rekey

    rekey(conn, name_key)


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
    # 5 (issue 12): the CPU kernel level a run used (numbers are bit-reproducible only at the same level)
    [
        "ALTER TABLE runs ADD COLUMN cpu_capability TEXT",
    ],
    # 6 (issue 18): canonical spec keys (no hyperparameter or optional field at its default), and the owner's
    # key (names.name_key: "Alice" and "alice" are one owner for lists, quota, the fair queue and rights)
    [
        _backfill_spec_keys,
        "ALTER TABLE runs ADD COLUMN owner_key TEXT NOT NULL DEFAULT ''",
        backfill_owner_keys,
        "CREATE INDEX runs_owner_key ON runs (owner_key, created_at)",
    ],
    # 7 (issue 23): names.name_key became NFKC + case fold + confusable skeleton ("alіce" in Cyrillic is
    # "alice"): owner keys and claim keys recomputed; of look-alike claims, the earliest keeps the name
    [
        backfill_owner_keys,
        _rekey_name_claims,
    ],
    # 8 (issue 22): lesson sessions (the lesson's source, the current step, the reveal), the students who took
    # part (sign-in order, last seen), their answers, and the dealing of each experiment's cells (a cell is fixed
    # once its run is queued). Tables only: runs keep no lesson column (a cell points to its run instead).
    [
        """CREATE TABLE IF NOT EXISTS lesson_sessions (
            id TEXT PRIMARY KEY,
            lesson_name TEXT NOT NULL,
            source TEXT NOT NULL,
            teacher TEXT NOT NULL DEFAULT '',
            started_at REAL NOT NULL,
            ended_at REAL,
            step_index INTEGER NOT NULL DEFAULT 0,
            revealed INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE IF NOT EXISTS lesson_students (
            session_id TEXT NOT NULL REFERENCES lesson_sessions (id) ON DELETE CASCADE,
            student_key TEXT NOT NULL,
            student TEXT NOT NULL,
            joined_at REAL NOT NULL,
            seen_at REAL NOT NULL,
            PRIMARY KEY (session_id, student_key)
        )""",
        """CREATE TABLE IF NOT EXISTS lesson_answers (
            session_id TEXT NOT NULL REFERENCES lesson_sessions (id) ON DELETE CASCADE,
            question_id TEXT NOT NULL,
            student_key TEXT NOT NULL,
            student TEXT NOT NULL,
            answer TEXT NOT NULL,
            answered_at REAL NOT NULL,
            PRIMARY KEY (session_id, question_id, student_key)
        )""",
        """CREATE TABLE IF NOT EXISTS lesson_cells (
            session_id TEXT NOT NULL REFERENCES lesson_sessions (id) ON DELETE CASCADE,
            experiment_id TEXT NOT NULL,
            cell_index INTEGER NOT NULL,
            spec TEXT NOT NULL,
            student_key TEXT,
            student TEXT,
            run_id TEXT,
            claimed_at REAL,
            requested_at REAL,
            PRIMARY KEY (session_id, experiment_id, cell_index)
        )""",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the file to :data:`SCHEMA_VERSION`; call inside the write transaction.

    Re-reads the version inside the write lock: another process may have migrated since the caller looked.
    """
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for number in range(version, SCHEMA_VERSION):
        for step in MIGRATIONS[number]:
            if callable(step):
                step(conn)
            else:
                conn.execute(step)
        conn.execute(f"PRAGMA user_version = {number + 1}")


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
    cpu_capability: str | None = None
    owner_key: str = ""

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
        for key in JSON_COLUMNS:
            data[key] = loads(data.get(key))
        data["hyperparams"] = data["hyperparams"] or {}
        data["spec"] = data["spec"] or {}
        data["cancel_requested"] = bool(data.get("cancel_requested") or 0)
        data["hidden"] = bool(data.get("hidden") or 0)
        return cls(**data)
