"""The job runner: drains queued runs of a :class:`~cgcnn.runs.store.RunStore` with one worker process per run.

Decision: the standard library, not huey. The run store already is a durable queue (a ``queued`` row is a job;
:meth:`~cgcnn.runs.store.RunStore.claim_next` takes one atomically under SQLite's write lock), and it already holds
what a second queue would duplicate: status, heartbeat, cancellation flag, results. Huey's SQLite backend
would add a dependency, a second database whose state can disagree with the run table (a task acked but its
run still 'queued'), and a consumer process to keep alive; it also offers no per-task process isolation, which
we need to kill a single run. So a small supervisor thread claims runs and starts each one in its own process
with :class:`subprocess.Popen` (``python -m cgcnn.runs.jobs worker RUN_ID ...``) rather than ``multiprocessing``:
a fresh interpreter does not depend on how the parent was started (Streamlit's ``__main__`` is not importable
by multiprocessing's 'spawn'), its exit code and signal are plain, its output goes to ``<run dir>/worker.log``,
and it runs in its own session so that Ctrl-C in the server's terminal does not kill trainings and the
runner can stop a worker together with anything it started (``killpg``).

Guarantees:

* nothing finished is lost when the runner (or the whole server) is killed: every epoch and result is
  committed by the worker as it happens; workers even outlive a killed runner and finish their runs;
* a new runner on the same store continues with the queued runs; a run left 'running' by a dead worker is
  failed by :meth:`~cgcnn.runs.store.RunStore.reap_stale` (the runner calls it every few seconds);
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
import importlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cgcnn.errors import CGCNNError
from cgcnn.paths import PROJECT_ROOT
from cgcnn.runs.store import FINAL_STATUSES, RunNotFound, RunStore

DEFAULT_TARGET = "cgcnn.training.finetune:execute_run"
LOG_NAME = "worker.log"

log = logging.getLogger(__name__)

Target = Callable[[str, RunStore], None]


class JobError(CGCNNError):
    """A job runner problem the user can act on (e.g. a target that cannot be imported)."""


def import_target(dotted: str) -> Target:
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
        return f"worker process was killed by {name} (exit code {code})"
    return f"worker process exited with code {code}"


# --------------------------------------------------------------------------------------------------- runner


@dataclass
class _Worker:
    run_id: str
    proc: subprocess.Popen[bytes]
    log_file: IO[bytes] | None
    cancel_deadline: float | None = None  # set when cancellation is seen: SIGTERM after it
    kill_deadline: float | None = None  # set when SIGTERM is sent: SIGKILL after it


class JobRunner:
    """Runs queued runs of a store in worker processes, at most ``max_workers`` at a time.

    Args:
        store: the run store (or the path of its file).
        max_workers: worker processes at once (default ``os.cpu_count()``); may be changed while running.
        target: dotted path of ``target(run_id, store)``, imported in the worker process.
        nice: niceness added in each worker, so trainings yield the CPU to the app's interactive work.
        torch_threads: torch/OpenMP threads per worker (None: leave torch's default). One per worker with
            one worker per core uses the machine without oversubscription.
        poll_s: supervisor period (also how fast new runs are picked up without :meth:`wake`).
        stale_after_s: a running run without heartbeat for this long is failed (see ``RunStore.reap_stale``).
        heartbeat_s: period of the worker wrapper's heartbeat; must be well under ``stale_after_s``.
        cancel_grace_s: how long a worker may take to honour a cancellation before it is terminated.
        env: extra environment variables for the workers (e.g. ``PYTHONPATH`` for a test target module).
    """

    def __init__(
        self,
        store: RunStore | Path | str | None = None,
        max_workers: int | None = None,
        target: str = DEFAULT_TARGET,
        nice: int = 10,
        torch_threads: int | None = 1,
        *,
        poll_s: float = 0.5,
        stale_after_s: float = 60.0,
        heartbeat_s: float = 5.0,
        cancel_grace_s: float = 10.0,
        env: Mapping[str, str] | None = None,
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
        self._workers: dict[str, _Worker] = {}
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._wait_for_workers = True
        self._kill = False
        self._thread: threading.Thread | None = None
        self._last_reap = 0.0

    def __repr__(self) -> str:
        return f"JobRunner({self.store!r}, max_workers={self.max_workers}, target={self.target!r})"

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
        """Stop taking new runs.

        Args:
            wait: keep supervising until the running workers end (up to ``timeout``); otherwise return at once
                and let them finish on their own (their results are still recorded; a crash among them is
                caught by the next runner's ``reap_stale``).
            timeout: longest wait in seconds (None: no limit).
            kill: cancel the running runs and terminate their workers (they end as cancelled).
        """
        self._stopping.set()
        self._wait_for_workers = wait or kill
        self._kill = self._kill or kill  # applied by the supervisor, also to a worker launched just now
        self.wake()
        if (wait or kill) and not self.is_alive and self.active_runs():
            self._spawn_thread()  # someone must reap (and, with kill, signal) the workers
        thread = self._thread
        if thread is not None and (wait or kill):
            thread.join(timeout)

    def active_runs(self) -> list[str]:
        """Ids of the runs this runner's workers are executing."""
        with self._lock:
            return list(self._workers)

    def cancel(self, run_id: str) -> str:
        """Cancel a run: a queued one at once, a running one by asking its worker to stop.

        A worker that has not ended ``cancel_grace_s`` seconds later is terminated (SIGTERM, then SIGKILL) and
        its run marked cancelled. Runs of other runners (another process) are stopped by their own runner,
        which sees the same flag. Returns the run's status after the request.
        """
        status = self.store.request_cancel(run_id)
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
        while True:
            try:
                self._tick()
            except Exception:  # keep supervising: a transient store error must not orphan the queue
                log.exception("job runner: supervisor step failed")
            if self._stopping.is_set() and (not self._wait_for_workers or not self.active_runs()):
                return
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def _tick(self) -> None:
        now = time.time()
        with self._lock:
            for worker in list(self._workers.values()):
                if (
                    self._kill
                    and worker.kill_deadline is None
                    and (worker.cancel_deadline is None or worker.cancel_deadline > now)
                ):
                    with contextlib.suppress(RunNotFound):
                        self.store.request_cancel(worker.run_id)
                    worker.cancel_deadline = now  # no grace: SIGTERM below
                code = worker.proc.poll()
                if code is not None:
                    self._on_exit(worker, code)
                else:
                    self._enforce_cancel(worker, now)
        if now - self._last_reap >= min(5.0, self.stale_after_s / 2):
            self._last_reap = now
            # Our own workers are alive (poll() said so): a slow heartbeat under load must not fail them.
            for run_id in self.store.reap_stale(self.stale_after_s, exclude=self.active_runs()):
                log.warning("job runner: run %s had no heartbeat for %.0f s; marked failed", run_id, self.stale_after_s)
        if self._stopping.is_set():
            return
        while len(self.active_runs()) < self.max_workers and not self._stopping.is_set():
            run_id = self.store.claim_next(torch_threads=self.torch_threads)
            if run_id is None:
                break
            self._launch(run_id)

    def _launch(self, run_id: str) -> None:

        package_root = str(PROJECT_ROOT)
        env = os.environ.copy()
        env.update(self.env)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        if self.torch_threads is not None:
            for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
                env[var] = str(self.torch_threads)
        cmd = [
            sys.executable,
            "-m",
            "cgcnn.runs.jobs",
            "worker",
            run_id,
            "--store",
            str(self.store.path),
            "--target",
            self.target,
            "--nice",
            str(self.nice),
            "--heartbeat",
            str(self.heartbeat_s),
        ]
        if self.torch_threads is not None:
            cmd += ["--torch-threads", str(self.torch_threads)]
        log_file = None
        try:
            folder = self.store.run_dir(run_id)
            folder.mkdir(parents=True, exist_ok=True)
            log_file = open(folder / LOG_NAME, "ab")  # noqa: SIM115 (closed when the worker ends)
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            if log_file is not None:
                log_file.close()
            self.store.finish(run_id, "failed", error=f"could not start a worker process: {exc}", only_if_active=True)
            return
        try:
            self.store.update(run_id, pid=proc.pid)
        except Exception:  # the run was deleted, or the store is busy: supervise the worker all the same
            log.exception("job runner: could not record the pid of run %s", run_id)
        finally:
            with self._lock:
                self._workers[run_id] = _Worker(run_id, proc, log_file)

    def _enforce_cancel(self, worker: _Worker, now: float) -> None:
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
        self._workers.pop(worker.run_id, None)
        if worker.log_file is not None:
            worker.log_file.close()
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
    """
    store = RunStore(store_path)
    key = store.path.resolve()
    with _RUNNERS_LOCK:
        runner = _RUNNERS.get(key)
        if runner is None or runner._stopping.is_set():
            runner = JobRunner(store, **kwargs)
            _RUNNERS[key] = runner
        runner.start()
        return runner


# --------------------------------------------------------------------------------------------------- worker


class WorkerTerminated(BaseException):
    """Raised in a worker's main thread on SIGTERM, so the wrapper records the run before exiting."""


def _on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one is enough; SIGKILL follows if recording hangs
    raise WorkerTerminated("terminated by SIGTERM")


class _Heartbeat(threading.Thread):
    """Heartbeats every few seconds while the target runs, so a long epoch is not taken for a dead worker."""

    def __init__(self, store: RunStore, run_id: str, period_s: float) -> None:
        super().__init__(name="cgcnn-heartbeat", daemon=True)
        self.store, self.run_id, self.period_s = store, run_id, period_s
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.period_s):
            try:
                self.store.heartbeat(self.run_id)
            except Exception as exc:  # a locked store now and then must not end the run
                print(f"heartbeat failed: {exc}", file=sys.stderr)


def worker_main(
    run_id: str,
    store_path: Path | str,
    target: str = DEFAULT_TARGET,
    nice: int = 10,
    torch_threads: int | None = 1,
    heartbeat_s: float = 5.0,
) -> int:
    """Body of a worker process: execute one run with ``target`` and make sure the run ends recorded.

    Returns the exit code: 0 when the run ended done or cancelled, 1 when it failed.
    """
    signal.signal(signal.SIGTERM, _on_sigterm)
    if nice:
        with contextlib.suppress(OSError):
            os.nice(nice)
    store = RunStore(store_path)
    with contextlib.suppress(Exception):
        store.heartbeat(run_id)  # importing the target (torch) can take a while on a busy machine
    beat = _Heartbeat(store, run_id, heartbeat_s)
    beat.start()
    try:
        fn = import_target(target)
        if torch_threads is not None and "torch" in sys.modules:  # else OMP_NUM_THREADS sets torch's default
            sys.modules["torch"].set_num_threads(torch_threads)
        fn(run_id, store)
    except BaseException as exc:
        traceback.print_exc()
        beat.done.set()
        try:
            cancelled = store.cancel_requested(run_id)
            status = "cancelled" if cancelled else "failed"
            store.finish(run_id, status, error=one_line_error(exc), only_if_active=True)
        except RunNotFound:
            return 0
        return 0 if cancelled else 1
    finally:
        beat.done.set()
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


# --------------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """``python -m cgcnn.runs.jobs``: ``worker`` (one run, used by the runner) and ``drain`` (empty the queue)."""
    parser = argparse.ArgumentParser(prog="python -m cgcnn.runs.jobs", description="Run queued cgcnn runs.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("worker", help="execute one run (started by the job runner)")
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
    p.add_argument("--torch-threads", type=int, default=1)
    p.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m cgcnn.runs.jobs``; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "worker":
        return worker_main(args.run_id, args.store, args.target, args.nice, args.torch_threads, args.heartbeat)
    try:
        runner = JobRunner(args.store, args.max_workers, args.target, args.nice, args.torch_threads)
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
