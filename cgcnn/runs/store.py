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

Shared results: :meth:`RunStore.launch` gives each owner their own entry, pointing to an identical computation
when there is one (the rules: :mod:`cgcnn.runs.sharing`).

Fair queue: :meth:`RunStore.claim_next` serves the owner with the fewest runs in progress, then the owner served
least recently, then the oldest run; :meth:`RunStore.launch` enforces ``CGCNN_MAX_QUEUED_PER_USER``.

Beside this module: what a row holds and the migrations (:mod:`cgcnn.runs.schema`), the ETA arithmetic
(:mod:`cgcnn.runs.estimates`) and display-name claims (:mod:`cgcnn.runs.claims`).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cgcnn.names import name_key
from cgcnn.paths import PROJECT_ROOT
from cgcnn.runs import claims, estimates
from cgcnn.runs.database import (
    BUSY_TIMEOUT_S,
    STORE_FILENAME,
    RunStoreError,
    StoreFile,
    StoreVersionError,
    default_home,
    run_dir,
)
from cgcnn.runs.results import RunNotFound, RunResults
from cgcnn.runs.schema import (
    ACTIVE_STATUSES,
    EPOCH_COLUMNS,
    FINAL_STATUSES,
    FOLLOW_COLUMNS,
    JSON_COLUMNS,
    MIGRATIONS,
    PREDICTION_COLUMNS,
    SCHEMA_VERSION,
    SPEC_COLUMNS,
    STATUSES,
    UPDATABLE_COLUMNS,
    RunRecord,
    compute_spec_key,
    dumps,
    json_default,
    loads,
    recipe_key,
)
from cgcnn.runs.sharing import (
    NEXT_QUEUED_SQL,
    cancel_computation,
    drop_if_orphaned,
    sync_followers,
    waiting_followers,
)

if TYPE_CHECKING:
    pass

# Re-exported: callers import the record, the statuses and the spec key from the store they come from.
__all__ = [
    "ACTIVE_STATUSES",
    "BUSY_TIMEOUT_S",
    "EPOCH_COLUMNS",
    "FINAL_STATUSES",
    "MIGRATIONS",
    "PREDICTION_COLUMNS",
    "SCHEMA_VERSION",
    "STATUSES",
    "STORE_FILENAME",
    "NameTaken",
    "RunNotFound",
    "RunRecord",
    "RunStateError",
    "RunStore",
    "RunStoreError",
    "StoreFile",
    "StoreVersionError",
    "compute_spec_key",
    "default_home",
    "git_commit",
    "recipe_key",
    "run_dir",
]


class RunStateError(RunStoreError):
    """The run is not in a state that allows the operation (e.g. deleting a running run)."""


class NameTaken(RunStoreError):
    """Another run already carries this name; names identify saved models, so they are unique."""


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


def _key(owner: str | None) -> str | None:
    """The ``owner_key`` an owner filter matches (None: no filter)."""
    return None if owner is None else name_key(owner)


def _iso(ts: float | None) -> str:
    if ts is None:
        return "never"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# --------------------------------------------------------------------------------------------------- store


class RunStore(RunResults):
    """Runs, epochs and predictions in one SQLite file, safe for several processes and threads.

    The object only holds the path: every method opens its own connection (:class:`StoreFile`), so one store
    can be shared by Streamlit's threads and handed (pickled) to worker processes.

    Args:
        path: the SQLite file; default ``default_home() / "runs.sqlite"``. Its folder is the store's home
            (run folders go to ``<home>/runs/<run_id>``).
    """

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
        values = self._run_values(json.dumps(spec, default=json_default), owner, sweep_id, status)
        return self._write(lambda conn: self._insert_run(conn, values))

    @staticmethod
    def _run_values(spec_json: str, owner: str, sweep_id: str | None, status: str) -> dict[str, Any]:
        spec = json.loads(spec_json)  # what is stored is what the columns are taken from
        from cgcnn import __version__

        values: dict[str, Any] = {key: spec.get(key) for key in SPEC_COLUMNS}
        if values["pretrained"] is not None:
            values["pretrained"] = str(values["pretrained"])
        if values["freeze"] is not None:
            values["freeze"] = int(values["freeze"])
        now = time.time()
        values.update(
            created_at=now,
            status=status,
            owner=owner or "",
            owner_key=name_key(owner or ""),
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

        ``owner`` matches by :func:`cgcnn.names.name_key` ("Alice" lists alice's runs too).

        Entries their owner deleted while others still reuse them (:meth:`hide`) are left out unless
        ``include_hidden``.
        """
        where, params = self._filters(owner_key=_key(owner), status=status, sweep_id=sweep_id)
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
        where, params = self._filters(owner_key=_key(owner), sweep_id=sweep_id)
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
        if "owner" in columns:
            columns["owner_key"] = name_key(columns["owner"] or "")
        values = [dumps(v) if k in JSON_COLUMNS else v for k, v in columns.items()]
        assignments = ", ".join(f"{k} = ?" for k in columns)
        sync = bool(set(columns) & set(FOLLOW_COLUMNS))
        self._update_one(run_id, f"UPDATE runs SET {assignments} WHERE id = ?", [*values, run_id], sync=sync)

    def _update_one(self, run_id: str, sql: str, params: Sequence[Any], sync: bool = False) -> None:
        def go(conn: sqlite3.Connection) -> int:
            changed = conn.execute(sql, params).rowcount
            if changed and sync:
                sync_followers(conn, run_id)
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
            sync_followers(conn, run_id)

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
                f"WHERE id = ({NEXT_QUEUED_SQL}) AND status = 'queued' RETURNING id",
                (now, now, pid, torch_threads, executor, host),
            ).fetchone()
            if row is None:
                return None
            sync_followers(conn, str(row[0]))
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
            dumps(test_metrics),
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
                sync_followers(conn, run_id)
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
                drop_if_orphaned(conn, source)
                return "cancelled"
            if not force and waiting_followers(conn, run_id):
                conn.execute("UPDATE runs SET hidden = 1 WHERE id = ?", (run_id,))
                return str(status)
            cancel_computation(conn, run_id, status, now)
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
                sync_followers(conn, run_id)
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
                return [run_id, *drop_if_orphaned(conn, source)]
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
        spec_json = json.dumps(spec, default=json_default)
        key = compute_spec_key(json.loads(spec_json))
        owner = owner or ""

        def go(conn: sqlite3.Connection) -> str:
            active = conn.execute(
                "SELECT COUNT(*) FROM runs WHERE owner_key = ? AND hidden = 0 AND status IN ('queued', 'running')",
                (name_key(owner),),
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
                    f"{owner or 'you'} already has {active} run(s) queued or running, this server's limit of "
                    f"{limit} per person (set by CGCNN_MAX_QUEUED_PER_USER); wait for one to finish or cancel one"
                )
            run_id = self._insert_run(conn, self._run_values(spec_json, owner, None, "queued"))
            if source is not None:
                conn.execute("UPDATE runs SET source_run_id = ? WHERE id = ?", (source[0], run_id))
                sync_followers(conn, source[0], only=run_id)
            return run_id

        return self.get(self._write(go))

    def speed(self) -> estimates.Speed:
        """This server's training speed, learned from the epochs it recorded (:mod:`cgcnn.runs.estimates`)."""
        epochs = self._read(
            "SELECT e.seconds, COALESCE(r.n_train, 0) + COALESCE(r.n_val, 0) FROM epochs e "
            "JOIN runs r ON r.id = e.run_id WHERE e.seconds IS NOT NULL "
            "AND COALESCE(r.n_train, 0) + COALESCE(r.n_val, 0) >= ? ORDER BY e.rowid DESC LIMIT ?",
            (estimates.MIN_CRYSTALS_FOR_SPEED, estimates.RECENT_EPOCHS),
        )
        setups = self._read(
            "SELECT setup_seconds FROM runs WHERE setup_seconds IS NOT NULL AND source_run_id IS NULL "
            "ORDER BY started_at DESC LIMIT ?",
            (estimates.RECENT_SETUPS,),
        )
        return estimates.speed_from(((r[0], r[1]) for r in epochs), (r[0] for r in setups))

    def queue_eta(self, run_id: str, workers: int | None = None) -> tuple[float | None, int]:
        """Seconds until a run should finish, and how many queued computations will start before it.

        The estimate replays the fair queue (:meth:`claim_next`) on ``workers`` workers (default: as many as
        runs are running now, at least one), each run costing what :meth:`speed` says (a running one: its
        own epoch times once it has some). An entry that reuses a computation is answered for that
        computation. An ended run is ``(0.0, 0)``.

        Returns:
            ``(seconds, runs_ahead)``; seconds is None only when the run was claimed while this looked.
        """
        record = self.resolve(run_id)
        if not record.is_active:
            return 0.0, 0
        speed = self.speed()
        running = self._read(
            "SELECT r.id, r.owner_key, COALESCE(r.n_train, 0) + COALESCE(r.n_val, 0), r.hyperparams, "
            "(SELECT json_group_array(e.seconds) FROM epochs e WHERE e.run_id = r.id) FROM runs r "
            "WHERE r.status = 'running' AND r.source_run_id IS NULL"
        )
        queued = self._read(
            "SELECT r.id, r.owner_key, COALESCE(r.n_train, 0) + COALESCE(r.n_val, 0), r.hyperparams FROM runs r "
            "WHERE r.status = 'queued' AND r.source_run_id IS NULL ORDER BY r.created_at, r.rowid"
        )
        last_served = {
            str(r[0]): float(r[1] or 0.0)
            for r in self._read(
                "SELECT owner_key, MAX(started_at) FROM runs WHERE source_run_id IS NULL AND started_at IS NOT NULL "
                "GROUP BY owner_key"
            )
        }
        return estimates.simulate_queue(
            record.id,
            [
                estimates.QueuedWork(
                    str(r[0]),
                    str(r[1]),
                    estimates.remaining_seconds(r[2], estimates.epochs_of(loads(r[3])), loads(r[4]) or [], speed),
                )
                for r in running
            ],
            [
                estimates.QueuedWork(str(r[0]), str(r[1]), speed.run_seconds(r[2], estimates.epochs_of(loads(r[3]))))
                for r in queued
            ],
            last_served,
            time.time(),
            workers,
        )

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

    # ----------------------------------------------------------------------------------------- name claims

    def name_claim(self, name_key: str) -> str | None:
        """The token hash that holds a display name (its key), or None (see :mod:`cgcnn.runs.claims`)."""
        return claims.holder(self._read, name_key)

    def name_held_by(self, token_hash: str) -> str | None:
        """The display name a token hash holds, or None (a returning browser's name, from its token alone)."""
        return claims.name_of(self._read, token_hash)

    def claimed_as(self, name_key: str) -> str | None:
        """The display name as its holder typed it, or None if nobody claimed it."""
        return claims.claimed_as(self._read, name_key)

    def claim_name(self, name_key: str, name: str, token_hash: str) -> str:
        """Claim a display name for a token hash unless someone holds it; returns the holder's token hash."""
        return self._write(lambda conn: claims.claim(conn, name_key, name, token_hash))

    def release_name(self, name_key: str) -> bool:
        """Free a claimed display name (a teacher's action, e.g. a student lost the link); whether one was held."""
        return self._write(lambda conn: claims.release(conn, name_key))
