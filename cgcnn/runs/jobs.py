"""The job runner: drains queued runs of a :class:`~cgcnn.runs.store.RunStore` with warm, long-lived workers.

Decision: the standard library, not huey. The run store already is a durable queue (a ``queued`` row is a job;
:meth:`~cgcnn.runs.store.RunStore.claim_next` takes one atomically under SQLite's write lock), and it already holds
what a second queue would duplicate: status, heartbeat, cancellation flag, results. Huey's SQLite backend
would add a dependency, a second database whose state can disagree with the run table (a task acked but its
run still 'queued'), and a consumer process to keep alive; it also offers no per-task process isolation, which
we need to kill a single run. So a small supervisor thread claims runs and hands each one to a worker process
started with :class:`subprocess.Popen` (``python -m cgcnn.runs.jobs serve ...``) rather than ``multiprocessing``:
a fresh interpreter does not depend on how the parent was started (Streamlit's ``__main__`` is not importable
by multiprocessing's 'spawn'), its exit code and signal are plain, and it runs in its own session so that
Ctrl-C in the server's terminal does not kill trainings and the runner can stop a worker together with
anything it started (``killpg``).

Warm workers: a worker is long-lived. It imports torch and the target once, warms up (the default dataset
and the zoo models, :mod:`cgcnn.training.warm`), says ``ready`` and then executes one run after another,
read as JSON lines on its stdin; it answers ``done RUN_ID CODE`` on a private copy of its stdout. Graphs and
models stay in its memory, so a run starts training well within a second of being claimed (a fresh process
per run spent about 20 s loading). Each run's output goes to ``<run dir>/worker.log`` (the worker points its
stdout and stderr there for the run). A crashed worker is replaced; its run fails with the cause, keeping
its epochs. A worker whose runner died sees its stdin close: it finishes its run and exits.

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

The work itself is a callable ``target(run_id: str, store: RunStore) -> None`` named by a dotted path (default
``cgcnn.training.finetune:execute_run``). Its contract: it may call ``store.mark_running(run_id)`` (harmless: the run is
already running when it is called), writes epochs with ``store.add_epoch``, polls
``store.cancel_requested(run_id)`` each epoch and, if set, stops and either finishes the run as cancelled or
just returns; it ends a completed run with ``store.finish(run_id, "done", ...)``. A target that returns with
the run still active leaves it cancelled (if requested) or failed.

Module state: :func:`get_runner` keeps one runner per store file for the process (the Streamlit server's
pool); nothing else is global.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cgcnn.errors import CGCNNError
from cgcnn.paths import PROJECT_ROOT
from cgcnn.runs.heartbeat import Heartbeat, overtime_message
from cgcnn.runs.store import FINAL_STATUSES, RunNotFound, RunStore
from cgcnn.settings import current_limits

DEFAULT_TARGET = "cgcnn.training.finetune:execute_run"
DEFAULT_WARM_UP = "cgcnn.training.warm:warm_up"
LOG_NAME = "worker.log"
POOL_LOG_NAME = "workers.log"
HOST = socket.gethostname()

log = logging.getLogger(__name__)

Target = Callable[[str, RunStore], None]


class JobError(CGCNNError):
    """A job runner problem the user can act on (e.g. a target that cannot be imported)."""


def resolve_target(dotted: str) -> Target:
    """Import ``"package.module:function"`` (or ``"package.module.function"``) and return the function."""
    module_name, sep, attr = dotted.partition(":")
    if not sep:
        module_name, _, attr = dotted.rpartition(".")
    if not module_name or not attr:
        raise JobError(f"job target {dotted!r} is not of the form 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise JobError(f"cannot import job target module {module_name!r}: {exc}") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise JobError(f"job target {dotted!r}: {module_name} has no function {attr!r}")
    return fn


def one_line_error(exc: BaseException) -> str:
    """``Type: first line of the message``, at most 500 characters: what a run's ``error`` column shows."""
    text = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return line if len(line) <= 500 else line[:497] + "..."


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
        wall = time.time()
        if wall - self._last_reap >= min(5.0, self.stale_after_s / 2):
            self._last_reap = wall
            # Our own workers are alive (poll() said so): a slow heartbeat under load must not fail them.
            for run_id in self.store.reap_stale(self.stale_after_s, exclude=self.active_runs()):
                log.warning("job runner: run %s had no heartbeat for %.0f s; marked failed", run_id, self.stale_after_s)
        if self._stopping.is_set():
            self._close_pool()
            return
        self._fill()

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
            "cgcnn.runs.jobs",
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


_RUNNERS: dict[Path, JobRunner] = {}
_RUNNERS_LOCK = threading.Lock()


def get_runner(store_path: Path | str | None = None, **kwargs: Any) -> JobRunner:
    """The process-wide runner of a store file, started (one per Streamlit server process).

    The first call creates it with ``kwargs`` (see :class:`JobRunner`); later calls return the same runner
    and ignore ``kwargs`` (change ``runner.max_workers`` directly). A runner that was stopped is replaced.
    With ``executor="ray"`` in ``kwargs`` (or ``CGCNN_EXECUTOR=ray``) the runner sends runs to a Ray cluster
    (:class:`cgcnn.runs.ray_jobs.RayJobRunner`).
    """
    store = RunStore(store_path)
    key = store.path.resolve()
    with _RUNNERS_LOCK:
        runner = _RUNNERS.get(key)
        if runner is None or runner._stopping.is_set():
            runner = make_runner(store, **kwargs)
            _RUNNERS[key] = runner
        runner.start()
        return runner


def make_runner(store: RunStore | Path | str | None = None, executor: str | None = None, **kwargs: Any) -> JobRunner:
    """A job runner for ``executor`` (``local`` or ``ray``; default ``$CGCNN_EXECUTOR`` or ``local``).

    Ray options go to the Ray runner only: ``ray_address`` (default ``$CGCNN_RAY_ADDRESS``; none: a local
    instance), ``num_cpus`` per task (``$CGCNN_RAY_NUM_CPUS``, 1) and ``fallback_local``
    (``$CGCNN_RAY_FALLBACK_LOCAL=1``): when Ray cannot be reached, run on local workers instead of raising.
    The returned runner's ``fallback_reason`` says why it is local although Ray was asked for (else None).

    Raises:
        RayUnavailable: Ray was asked for, cannot be reached, and no fallback was asked for.
    """
    executor = (executor or os.environ.get("CGCNN_EXECUTOR", "") or "local").strip().lower()
    ray_options = {k: kwargs.pop(k) for k in ("ray_address", "num_cpus", "fallback_local") if k in kwargs}
    fallback = ray_options.pop("fallback_local", None)
    if fallback is None:
        fallback = os.environ.get("CGCNN_RAY_FALLBACK_LOCAL", "").strip().lower() in ("1", "true", "yes")
    if executor == "local":
        return JobRunner(store, **kwargs)
    if executor == "ray":
        from cgcnn.runs.ray_jobs import RayJobRunner, RayUnavailable

        try:
            return RayJobRunner(store, **ray_options, **kwargs)
        except RayUnavailable as exc:
            if not fallback:
                raise
            runner = JobRunner(store, **kwargs)
            runner.fallback_reason = f"{exc}; running on this machine instead"
            return runner
    raise JobError(f"unknown executor {executor!r}: use 'local' or 'ray'")


# --------------------------------------------------------------------------------------------------- worker


class WorkerTerminated(BaseException):
    """Raised in a worker's main thread on SIGTERM, so the wrapper records the run before exiting."""


def _on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one is enough; SIGKILL follows if recording hangs
    raise WorkerTerminated("terminated by SIGTERM")


def execute_recorded(run_id: str, store: RunStore, fn: Target | BaseException, heartbeat_s: float = 5.0) -> int:
    """Execute one run with ``fn`` under a heartbeat thread and make sure the run ends recorded.

    ``fn`` may be the exception that importing the target raised: the run then fails with it. A
    :class:`WorkerTerminated` is recorded and raised again (the process must exit).

    Returns:
        0 when the run ended done or cancelled, 1 when it failed.
    """
    with contextlib.suppress(Exception):
        store.heartbeat(run_id)
    beat = Heartbeat(store, run_id, heartbeat_s)
    beat.start()
    try:
        if isinstance(fn, BaseException):
            raise fn
        fn(run_id, store)
    except BaseException as exc:
        traceback.print_exc()
        beat.stop()
        cancelled = False
        try:
            cancelled = store.cancel_requested(run_id)
            status = "cancelled" if cancelled else "failed"
            store.finish(run_id, status, error=one_line_error(exc), only_if_active=True)
        except RunNotFound:
            cancelled = True
        if isinstance(exc, WorkerTerminated):
            raise
        return 0 if cancelled else 1
    finally:
        beat.stop()
    try:
        record = store.get(run_id)
    except RunNotFound:
        return 0
    if record.is_active:
        if store.cancel_requested(run_id):
            store.finish(run_id, "cancelled", error="cancelled", only_if_active=True)
        else:
            store.finish(
                run_id, "failed", error="the job target returned without finishing the run", only_if_active=True
            )
            return 1
    return 0


def _load_target(target: str) -> Target | BaseException:
    try:
        return resolve_target(target)
    except JobError as exc:
        return exc


def _set_threads(threads: int | None) -> None:
    if threads is not None and "torch" in sys.modules:  # else OMP_NUM_THREADS sets torch's default
        sys.modules["torch"].set_num_threads(threads)


@contextlib.contextmanager
def _output_to(path: Path):
    """Point this process's stdout and stderr (the file descriptors) at ``path`` for a while."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved = os.dup(1), os.dup(2)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def serve_main(
    store_path: Path | str,
    target: str = DEFAULT_TARGET,
    nice: int = 10,
    heartbeat_s: float = 5.0,
    warm_up: str = "",
    commands: IO[str] | None = None,
    replies: IO[str] | None = None,
) -> int:
    """Body of a warm worker: warm up once, then execute the runs named on ``commands`` until it closes.

    Protocol: the runner writes one JSON object per line (``{"run_id": ..., "threads": ...}``); the worker
    answers ``ready`` once warm and ``done RUN_ID CODE`` after each run, on ``replies`` (by default a private
    copy of stdout, whose descriptor then carries only the log).
    """
    signal.signal(signal.SIGTERM, _on_sigterm)
    if nice:
        with contextlib.suppress(OSError):
            os.nice(nice)
    if replies is None:
        replies = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)  # stray prints go to the log, never into the protocol
    commands = commands if commands is not None else sys.stdin
    store = RunStore(store_path)
    fn = _load_target(target)
    if warm_up and not isinstance(fn, BaseException):
        started = time.perf_counter()
        try:
            resolve_target(warm_up)()
            print(f"worker {os.getpid()}: warm in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        except Exception:  # a failed warm-up only costs speed: the runs load what they need
            traceback.print_exc()
    replies.write("ready\n")
    replies.flush()
    try:
        for line in commands:
            if not line.strip():
                continue
            message = json.loads(line)
            run_id = str(message["run_id"])
            _set_threads(message.get("threads"))
            with _output_to(store.run_dir(run_id) / LOG_NAME):
                print(f"worker {os.getpid()} on {HOST}: run {run_id}, {message.get('threads')} thread(s)")
                code = execute_recorded(run_id, store, fn, heartbeat_s)
            gc.collect()
            replies.write(f"done {run_id} {code}\n")
            replies.flush()
    except WorkerTerminated:
        return 143
    return 0


def worker_main(
    run_id: str,
    store_path: Path | str,
    target: str = DEFAULT_TARGET,
    nice: int = 10,
    torch_threads: int | None = 1,
    heartbeat_s: float = 5.0,
) -> int:
    """Execute one run in this process (``python -m cgcnn.runs.jobs worker``) and make sure it ends recorded.

    Returns the exit code: 0 when the run ended done or cancelled, 1 when it failed.
    """
    signal.signal(signal.SIGTERM, _on_sigterm)
    if nice:
        with contextlib.suppress(OSError):
            os.nice(nice)
    store = RunStore(store_path)
    with contextlib.suppress(Exception):
        store.heartbeat(run_id)  # importing the target (torch) can take a while on a busy machine
    fn = _load_target(target)
    _set_threads(torch_threads)
    try:
        return execute_recorded(run_id, store, fn, heartbeat_s)
    except WorkerTerminated:
        try:
            return 0 if store.cancel_requested(run_id) else 1
        except RunNotFound:
            return 0


# --------------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """``python -m cgcnn.runs.jobs``: ``serve`` (a warm worker), ``worker`` (one run), ``drain`` (the queue)."""
    parser = argparse.ArgumentParser(prog="python -m cgcnn.runs.jobs", description="Run queued cgcnn runs.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="a warm worker: execute the runs named on stdin (started by the job runner)")
    p.add_argument("--store", required=True, help="the run store file")
    p.add_argument("--target", default=DEFAULT_TARGET)
    p.add_argument("--nice", type=int, default=10)
    p.add_argument("--heartbeat", type=float, default=5.0, help="heartbeat period in seconds")
    p.add_argument("--warm-up", default="", help="dotted path of a function to call once before the first run")

    p = sub.add_parser("worker", help="execute one run in this process")
    p.add_argument("run_id")
    p.add_argument("--store", required=True, help="the run store file")
    p.add_argument("--target", default=DEFAULT_TARGET)
    p.add_argument("--nice", type=int, default=10)
    p.add_argument("--torch-threads", type=int, default=None)
    p.add_argument("--heartbeat", type=float, default=5.0, help="heartbeat period in seconds")

    p = sub.add_parser("drain", help="run queued runs until none is left")
    p.add_argument("--store", default=None, help="the run store file (default $CGCNN_HOME/runs.sqlite)")
    p.add_argument("--target", default=DEFAULT_TARGET)
    p.add_argument("--max-workers", type=int, default=None)
    p.add_argument("--nice", type=int, default=10)
    p.add_argument("--torch-threads", type=int, default=None, help="default: all cores when alone, else 1")
    p.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    p.add_argument("--executor", choices=("local", "ray"), default=None, help="default: $CGCNN_EXECUTOR or local")
    p.add_argument("--ray-address", default=None, help="Ray cluster address (default: a local instance)")
    p.add_argument("--ray-fallback-local", action="store_true", help="run locally if Ray cannot be reached")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m cgcnn.runs.jobs``; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "worker":
        return worker_main(args.run_id, args.store, args.target, args.nice, args.torch_threads, args.heartbeat)
    if args.command == "serve":
        return serve_main(args.store, args.target, args.nice, args.heartbeat, args.warm_up)
    try:
        runner = make_runner(
            args.store,
            executor=args.executor,
            max_workers=args.max_workers,
            target=args.target,
            nice=args.nice,
            torch_threads=args.torch_threads,
            **({"ray_address": args.ray_address, "fallback_local": args.ray_fallback_local}
               if (args.executor or os.environ.get("CGCNN_EXECUTOR", "")).lower() == "ray" else {}),
        )  # fmt: skip
        try:
            emptied = runner.run_until_empty(args.timeout)
        except KeyboardInterrupt:  # run_until_empty has cancelled the running runs
            print("interrupted: running runs cancelled", file=sys.stderr)
            return 130
    except CGCNNError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not emptied:
        print("timeout: runs are still queued or running", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
