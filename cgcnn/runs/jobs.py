"""The job runner: drains queued runs of a :class:`~cgcnn.runs.store.RunStore` with warm, long-lived workers.

Decision: the standard library, not huey. The run store already is a durable queue (a ``queued`` row is a job;
:meth:`~cgcnn.runs.store.RunStore.claim_next` takes one atomically under SQLite's write lock), and it already holds
what a second queue would duplicate: status, heartbeat, cancellation flag, results. Huey's SQLite backend
would add a dependency, a second database whose state can disagree with the run table (a task acked but its
run still 'queued'), and a consumer process to keep alive; it also offers no per-task process isolation, which
we need to kill a single run. So a small supervisor thread claims runs and hands each one to a worker process
started with :class:`subprocess.Popen` (``python -m cgcnn.runs.worker serve ...``) rather than ``multiprocessing``:
a fresh interpreter does not depend on how the parent was started (Streamlit's ``__main__`` is not importable
by multiprocessing's 'spawn'), its exit code and signal are plain, and it runs in its own session so that
Ctrl-C in the server's terminal does not kill trainings and the runner can stop a worker together with
anything it started (``killpg``).

Warm workers: a worker is long-lived (:mod:`cgcnn.runs.worker`): it imports torch and the target once, then
executes one run after another, so a run starts training well within a second of being claimed (a fresh
process per run spent about 20 s loading). A crashed worker is replaced; its run fails with the cause, keeping
its epochs.

Threads: a run gets all cores when it is the only active computation when claimed, one thread otherwise
(:func:`thread_policy`); the count is fixed at the claim and recorded with the run. Results are identical at a
given thread count; at another thread count they may differ by about 1e-6 (summation order).

Limits: a run past ``CGCNN_MAX_RUN_SECONDS`` (:mod:`cgcnn.settings`) is marked failed with that reason and its
worker stopped. Live workers of a killed previous runner (orphans, still finishing their runs) count against
``max_workers``, so a restarted server does not put four trainings on two cores.

Guarantees:

* nothing finished is lost when the runner (or the whole server) is killed: every epoch and result is
  committed by the worker as it happens; workers even outlive a killed runner and finish their runs;
* a new runner on the same store (a restarted server) continues with the queued runs; a run left 'running'
  by a dead worker is failed by :meth:`~cgcnn.runs.store.RunStore.reap_stale` (the runner calls it every few
  seconds);
* a run never stays 'running' because its worker ended: the worker wrapper records exceptions (failed, or
  cancelled if cancellation was requested) and the runner records crashes (non-zero exit, signals).

The work itself (the job target and its contract) is described in :mod:`cgcnn.runs.worker`.

Module state: :func:`get_runner` keeps one runner per store file for the process (the Streamlit server's
pool); nothing else is global.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cgcnn.paths import PROJECT_ROOT
from cgcnn.runs.heartbeat import overtime_message
from cgcnn.runs.store import FINAL_STATUSES, RunNotFound, RunStore
from cgcnn.runs.worker import DEFAULT_TARGET, HOST
from cgcnn.settings import current_limits

DEFAULT_WARM_UP = "cgcnn.training.warm:warm_up"
POOL_LOG_NAME = "workers.log"

log = logging.getLogger(__name__)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"worker process was killed by {name} (exit code {code}); its finished epochs are kept"
    return f"worker process exited with code {code}; its finished epochs are kept"


def thread_policy(cores: int, others_running: int, others_startable: int) -> int:
    """Torch threads for a run being claimed: all cores when it will be the only active run, else one.

    Args:
        cores: CPU cores of the machine.
        others_running: other computations running now (any runner, any process).
        others_startable: other queued computations that free workers could start at the same time.
    """
    return max(1, cores) if others_running == 0 and others_startable == 0 else 1


def is_orphan_worker(pid: int) -> bool:
    """Whether ``pid`` is a live process whose runner is gone (re-parented to init or a non-Python reaper).

    A worker of a live runner (another server, a CLI sweep) is not an orphan: its runner supervises it. Without
    ``/proc`` (not Linux) a live process counts as an orphan, to err on the side of fewer trainings at once.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, someone else's
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            return False  # exited, not yet reaped: uses no CPU
        ppid = int(fields[1])
    except (OSError, ValueError, IndexError):
        return True
    if ppid == os.getpid():
        return False
    if ppid <= 1:
        return True
    try:
        parent = Path(f"/proc/{ppid}/cmdline").read_bytes().lower()
    except OSError:
        return True
    return b"python" not in parent


# --------------------------------------------------------------------------------------------------- runner


@dataclass
class _Worker:
    """One warm worker process and the run it executes (None while idle)."""

    proc: subprocess.Popen[bytes]
    messages: queue.SimpleQueue[str] = field(default_factory=queue.SimpleQueue)
    ready: bool = False
    closed: bool = False  # stdin closed: it exits once idle
    run_id: str | None = None
    claimed_at: float = 0.0  # time.monotonic() of the claim
    cancel_deadline: float | None = None  # set when cancellation is seen: SIGTERM after it
    kill_deadline: float | None = None  # set when SIGTERM is sent: SIGKILL after it
    overtime: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        self.proc.stdin.flush()

    def close(self) -> None:
        """Close its stdin: it finishes the run it has, then exits."""
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError, ValueError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()


def _read_messages(worker: _Worker) -> None:
    assert worker.proc.stdout is not None
    for raw in worker.proc.stdout:
        worker.messages.put(raw.decode(errors="replace").strip())


class JobRunner:
    """Runs queued runs of a store on warm worker processes, at most ``max_workers`` at a time.

    Args:
        store: the run store (or the path of its file).
        max_workers: runs at once (default ``os.cpu_count()``); may be changed while running (a teacher's
            setting): extra idle workers are retired, busy ones finish their run first.
        target: dotted path of ``target(run_id, store)``, imported once per worker process.
        nice: niceness added in each worker, so trainings yield the CPU to the app's interactive work.
        torch_threads: torch threads per run; None (the default) chooses per run with :func:`thread_policy`
            (all cores when alone, one when several run). A fixed number also sets ``OMP_NUM_THREADS``.
        poll_s: supervisor period (also how fast new runs are picked up without :meth:`wake`).
        stale_after_s: a running run without heartbeat for this long is failed (see ``RunStore.reap_stale``).
        heartbeat_s: period of the worker's heartbeat thread; must be well under ``stale_after_s``.
        cancel_grace_s: how long a worker may take to honour a cancellation before it is terminated.
        env: extra environment variables for the workers (e.g. ``PYTHONPATH`` for a test target module).
        warm_up: dotted path of a function each worker calls once before its first run (default: the
            dataset and zoo models for the default target, nothing for others).
        prewarm: start the workers when the runner starts, so the first run does not wait for imports.
        max_run_seconds: a run's time limit (default: ``CGCNN_MAX_RUN_SECONDS``, read at each check).
    """

    executor = "local"

    def __init__(
        self,
        store: RunStore | Path | str | None = None,
        max_workers: int | None = None,
        target: str = DEFAULT_TARGET,
        nice: int = 10,
        torch_threads: int | None = None,
        *,
        poll_s: float = 0.5,
        stale_after_s: float = 60.0,
        heartbeat_s: float = 5.0,
        cancel_grace_s: float = 10.0,
        env: Mapping[str, str] | None = None,
        warm_up: str | None = None,
        prewarm: bool = True,
        max_run_seconds: float | None = None,
    ) -> None:
        self.store = store if isinstance(store, RunStore) else RunStore(store)
        self.max_workers = max(1, max_workers if max_workers is not None else (os.cpu_count() or 1))
        self.target = target
        self.nice = nice
        self.torch_threads = torch_threads
        self.poll_s = poll_s
        self.stale_after_s = stale_after_s
        self.heartbeat_s = heartbeat_s
        self.cancel_grace_s = cancel_grace_s
        self.env = dict(env or {})
        self.warm_up = warm_up if warm_up is not None else (DEFAULT_WARM_UP if target == DEFAULT_TARGET else "")
        self.prewarm = prewarm
        self.max_run_seconds = max_run_seconds
        self.cores = os.cpu_count() or 1
        self._workers: list[_Worker] = []
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._wait_for_workers = True
        self._kill = False
        self._thread: threading.Thread | None = None
        self._last_reap = 0.0
        self._last_spawn_failure = 0.0
        self.orphans = 0  # live workers of a dead runner, counted against max_workers
        self.fallback_reason: str | None = None  # set by make_runner when Ray was asked for but unreachable

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.store!r}, max_workers={self.max_workers}, target={self.target!r})"

    # ----------------------------------------------------------------------------------------- control

    @property
    def is_alive(self) -> bool:
        """Whether the supervisor thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> JobRunner:
        """Start the supervisor thread (a daemon; a no-op if it runs already). Returns self."""
        with self._lock:
            if self.is_alive:
                return self
            self._stopping.clear()
            self._wait_for_workers = True
            self._kill = False
            self._spawn_thread()
        return self

    def _spawn_thread(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"cgcnn-jobs:{self.store.path.name}", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look at the queue now instead of at the next poll (call after queueing runs)."""
        self._wake.set()

    def stop(self, wait: bool = True, timeout: float | None = None, kill: bool = False) -> None:
        """Stop taking new runs; idle workers exit.

        Args:
            wait: keep supervising until the running runs end (up to ``timeout``); otherwise return at once
                and let their workers finish them on their own (their results are still recorded; a crash
                among them is caught by the next runner's ``reap_stale``).
            timeout: longest wait in seconds (None: no limit).
            kill: cancel the running runs and terminate their workers (they end as cancelled).
        """
        self._stopping.set()
        self._wait_for_workers = wait or kill
        self._kill = self._kill or kill  # applied by the supervisor, also to a run handed out just now
        self.wake()
        if (wait or kill) and not self.is_alive and self.active_runs():
            self._spawn_thread()  # someone must reap (and, with kill, signal) the workers
        thread = self._thread
        if thread is not None and (wait or kill):
            thread.join(timeout)

    def active_runs(self) -> list[str]:
        """Ids of the runs this runner's workers are executing."""
        with self._lock:
            return [w.run_id for w in self._workers if w.run_id is not None]

    def worker_pids(self) -> list[int]:
        """Pids of this runner's live worker processes (idle and busy)."""
        with self._lock:
            return [w.pid for w in self._workers]

    def pool_status(self) -> dict[str, int]:
        """Workers as a teacher sees them: ``max_workers``, ``workers`` (live), ``busy``, ``ready``, ``orphans``."""
        with self._lock:
            return {
                "max_workers": self.max_workers,
                "workers": len(self._workers),
                "busy": sum(w.run_id is not None for w in self._workers),
                "ready": sum(w.ready and w.run_id is None for w in self._workers),
                "orphans": self.orphans,
            }

    def cancel(self, run_id: str, force: bool = False) -> str:
        """Cancel a run: a queued one at once, a running one by asking its worker to stop.

        A worker that has not ended ``cancel_grace_s`` seconds later is terminated (SIGTERM, then SIGKILL) and
        its run marked cancelled. Runs of other runners (another process) are stopped by their own runner,
        which sees the same flag. ``force`` is the teacher's cancel of a computation others reuse
        (:meth:`RunStore.request_cancel`). Returns the run's status after the request.
        """
        status = self.store.request_cancel(run_id, force=force)
        self.wake()
        return status

    def run_until_empty(self, timeout: float | None = None, run_ids: Iterable[str] | None = None) -> bool:
        """Block until no run is queued or running (or, with ``run_ids``, until these runs have ended).

        Starts the supervisor if needed (and stops it again afterwards if it started it). Runs left 'running'
        by a dead process count as running until ``reap_stale`` fails them (``stale_after_s``).

        Returns:
            True when the queue is empty, False if ``timeout`` seconds passed first.
        """
        ids = None if run_ids is None else list(run_ids)
        started_here = not self.is_alive
        self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                if self._is_empty(ids):
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                time.sleep(min(self.poll_s, 0.2))
        except BaseException:  # Ctrl-C in a CLI drain: cancel what runs rather than wait for it
            if started_here:
                self.stop(kill=True, timeout=30)
            raise
        if started_here:
            self.stop(wait=True)
        return True

    def _is_empty(self, ids: list[str] | None) -> bool:
        if ids is not None:
            for run_id in ids:
                try:
                    if self.store.get(run_id).status not in FINAL_STATUSES:
                        return False
                except RunNotFound:
                    continue
            return True
        counts = self.store.counts()
        return not self.active_runs() and counts["queued"] == 0 and counts["running"] == 0

    # ----------------------------------------------------------------------------------------- supervisor

    def _loop(self) -> None:
        try:
            while True:
                try:
                    self._tick()
                except Exception:  # keep supervising: a transient store error must not orphan the queue
                    log.exception("job runner: supervisor step failed")
                if self._stopping.is_set() and (not self._wait_for_workers or not self.active_runs()):
                    return
                self._wake.wait(self.poll_s)
                self._wake.clear()
        finally:
            self._close_pool()

    def _close_pool(self) -> None:
        """Let every worker go: idle ones exit at once, busy ones after their run (they record it)."""
        with self._lock:
            for worker in self._workers:
                worker.close()

    def _tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            for worker in list(self._workers):
                self._read(worker)
                code = worker.proc.poll()
                if code is not None:
                    self._read(worker)
                    self._on_exit(worker, code)
                    continue
                if worker.run_id is None:
                    continue
                if (
                    self._kill
                    and worker.kill_deadline is None
                    and (worker.cancel_deadline is None or worker.cancel_deadline > now)
                ):
                    with contextlib.suppress(RunNotFound):
                        self.store.request_cancel(worker.run_id, force=True)
                    worker.cancel_deadline = now  # no grace: SIGTERM below
                self._enforce_time_limit(worker, now)
                self._enforce_cancel(worker, now)
        self._reap()
        if self._stopping.is_set():
            self._close_pool()
            return
        self._fill()

    def _reap(self) -> None:
        """Every few seconds: fail the runs of any executor whose heartbeat stopped (the one reap loop).

        This runner's own runs are excluded: it knows they are alive (a slow heartbeat under load must not
        fail them).
        """
        wall = time.time()
        if wall - self._last_reap < min(5.0, self.stale_after_s / 2):
            return
        self._last_reap = wall
        for run_id in self.store.reap_stale(self.stale_after_s, exclude=self.active_runs()):
            log.warning(
                "%s runner: run %s had no heartbeat for %.0f s; marked failed",
                self.executor,
                run_id,
                self.stale_after_s,
            )

    def _fill(self) -> None:
        """Retire surplus idle workers, start missing ones, and hand queued runs to the idle ready ones."""
        self.orphans = self._count_orphans()
        slots = max(0, self.max_workers - self.orphans)
        with self._lock:
            live = [w for w in self._workers if not w.closed]
            for worker in [w for w in live if w.run_id is None][: max(0, len(live) - slots)]:
                worker.close()
                live.remove(worker)
            busy = sum(w.run_id is not None for w in live)
            counts = self.store.counts(computations_only=True)
            wanted = len(live) < slots and (self.prewarm or counts["queued"])
            if wanted and time.monotonic() - self._last_spawn_failure > 5.0:
                for _ in range(slots - len(live)):
                    if self._spawn() is None:
                        break
            idle = [w for w in self._workers if w.ready and w.run_id is None and not w.closed]
            for worker in idle:
                if busy >= slots or self._stopping.is_set():
                    break
                threads = self.torch_threads
                if threads is None:
                    counts = self.store.counts(computations_only=True)
                    startable = min(max(0, counts["queued"] - 1), slots - busy - 1)
                    threads = thread_policy(self.cores, counts["running"], startable)
                run_id = self.store.claim_next(pid=worker.pid, torch_threads=threads, executor=self.executor, host=HOST)
                if run_id is None:
                    break
                self._dispatch(worker, run_id, threads)
                busy += 1

    def _spawn(self) -> _Worker | None:
        env = os.environ.copy()
        env.update(self.env)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        if self.torch_threads is not None:
            for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
                env[var] = str(self.torch_threads)
        cmd = [
            sys.executable,
            "-m",
            "cgcnn.runs.worker",
            "serve",
            "--store",
            str(self.store.path),
            "--target",
            self.target,
            "--nice",
            str(self.nice),
            "--heartbeat",
            str(self.heartbeat_s),
            "--warm-up",
            self.warm_up,
        ]
        try:
            with open(self.store.home / POOL_LOG_NAME, "ab") as pool_log:
                proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=pool_log,
                    env=env,
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as exc:
            log.error("job runner: could not start a worker process: %s", exc)
            self._last_spawn_failure = time.monotonic()
            return None
        worker = _Worker(proc)
        threading.Thread(target=_read_messages, args=(worker,), name="cgcnn-worker-pipe", daemon=True).start()
        self._workers.append(worker)
        return worker

    @staticmethod
    def _read(worker: _Worker) -> None:
        while True:
            try:
                message = worker.messages.get_nowait()
            except queue.Empty:
                return
            if message == "ready":
                worker.ready = True
            elif message.startswith("done ") and message.split()[1] == worker.run_id:
                worker.run_id = None
                worker.cancel_deadline = worker.kill_deadline = None
                worker.overtime = False

    def _dispatch(self, worker: _Worker, run_id: str, threads: int) -> None:
        worker.run_id = run_id
        worker.claimed_at = time.monotonic()
        try:
            worker.send({"run_id": run_id, "threads": threads})
        except (OSError, ValueError):  # it died just now: put the run back for another worker
            worker.run_id = None
            worker.close()
            with contextlib.suppress(RunNotFound):
                self.store.update(run_id, status="queued", started_at=None, heartbeat=None, pid=None)

    def _count_orphans(self) -> int:
        """Live local workers of dead runners that still execute runs of this store."""
        own = set(self.worker_pids())
        count = 0
        for record in self.store.list_runs(status="running", include_hidden=True):
            if record.source_run_id is not None or record.pid is None or record.pid in own:
                continue
            if (record.executor or "local") != "local" or (record.host or HOST) != HOST:
                continue
            if is_orphan_worker(record.pid):
                count += 1
        return count

    def _enforce_time_limit(self, worker: _Worker, now: float) -> None:
        limit = self.max_run_seconds if self.max_run_seconds is not None else current_limits().max_run_seconds
        if not limit or worker.overtime or now - worker.claimed_at < limit or worker.run_id is None:
            return
        worker.overtime = True
        with contextlib.suppress(RunNotFound):
            self.store.finish(worker.run_id, "failed", error=overtime_message(limit), only_if_active=True)
        if worker.cancel_deadline is None:
            worker.cancel_deadline = now  # stop the worker now (it is replaced)

    def _enforce_cancel(self, worker: _Worker, now: float) -> None:
        assert worker.run_id is not None
        if worker.cancel_deadline is None:
            try:
                if not self.store.cancel_requested(worker.run_id):
                    return
            except RunNotFound:
                pass
            worker.cancel_deadline = now + self.cancel_grace_s
        if worker.kill_deadline is None and now >= worker.cancel_deadline:
            self._signal(worker, signal.SIGTERM)
            worker.kill_deadline = now + 5.0
        elif worker.kill_deadline is not None and now >= worker.kill_deadline:
            self._signal(worker, signal.SIGKILL)
            worker.kill_deadline = now + 5.0

    @staticmethod
    def _signal(worker: _Worker, sig: signal.Signals) -> None:
        try:
            os.killpg(worker.proc.pid, sig)  # the worker leads its own session: this reaches its children too
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(sig)

    def _on_exit(self, worker: _Worker, code: int) -> None:
        if worker in self._workers:
            self._workers.remove(worker)
        worker.close()
        for stream in (worker.proc.stdout,):
            with contextlib.suppress(OSError, ValueError):
                if stream is not None:
                    stream.close()
        if worker.run_id is None:
            if not worker.ready and code != 0 and not self._stopping.is_set():
                log.error("job runner: a worker exited with code %s before it was ready (see %s)", code,
                          self.store.home / POOL_LOG_NAME)  # fmt: skip
                self._last_spawn_failure = time.monotonic()
            return
        try:
            record = self.store.get(worker.run_id)
        except RunNotFound:
            return
        if not record.is_active:
            return
        if worker.cancel_deadline is not None or record.cancel_requested:
            status, error = "cancelled", "cancelled (the worker was stopped)"
        elif code == 0:
            status, error = "failed", "worker process ended without finishing the run"
        else:
            status, error = "failed", _describe_exit(code)
        self.store.finish(worker.run_id, status, error=error, only_if_active=True)


# --------------------------------------------------------------------------------------------------- worker
