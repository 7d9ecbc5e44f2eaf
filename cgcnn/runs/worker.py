"""The worker side of the job queue: execute one run recorded in the store, whatever happens to it.

Two ways in, one body (:func:`execute_recorded`, behind :func:`execute_one`):

* a warm worker process (``python -m cgcnn.runs.worker serve``), started by :class:`cgcnn.runs.jobs.JobRunner`:
  it imports torch and the target once, warms up (the default dataset and the zoo models,
  :mod:`cgcnn.training.warm`), says ``ready`` and then executes one run after another, read as JSON lines on
  its stdin; it answers ``done RUN_ID CODE`` on a private copy of its stdout. Each run's output goes to
  ``<run dir>/worker.log``. A worker whose runner died sees its stdin close: it finishes its run and exits;
* a Ray task (:mod:`cgcnn.runs.ray_jobs`), which calls :func:`execute_one` against a relaying store.

The work itself is a callable ``target(run_id: str, store: RunStore) -> None`` named by a dotted path (default
``cgcnn.training.finetune:execute_run``). Its contract: it may call ``store.mark_running(run_id)`` (harmless: the
run is already running when it is called), writes epochs with ``store.add_epoch``, polls
``store.cancel_requested(run_id)`` each epoch and, if set, stops and either finishes the run as cancelled or
just returns; it ends a completed run with ``store.finish(run_id, "done", ...)``. A target that returns with
the run still active leaves it cancelled (if requested) or failed; an exception fails it with its first line.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from cgcnn.errors import CGCNNError
from cgcnn.runs.heartbeat import Heartbeat
from cgcnn.runs.store import RunNotFound, RunStore

DEFAULT_TARGET = "cgcnn.training.finetune:execute_run"
LOG_NAME = "worker.log"
HOST = socket.gethostname()

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


def load_target(target: str) -> Target | BaseException:
    """The job target, or the :class:`JobError` importing it raised (the run then fails with it)."""
    try:
        return import_target(target)
    except JobError as exc:
        return exc


def set_threads(threads: int | None) -> None:
    """Set torch's thread count for the next run (a no-op before torch is imported: OMP_NUM_THREADS rules)."""
    if threads is not None and "torch" in sys.modules:  # else OMP_NUM_THREADS sets torch's default
        sys.modules["torch"].set_num_threads(threads)


def execute_one(run_id: str, store: RunStore, target: str, threads: int | None, heartbeat_s: float = 5.0) -> int:
    """Import ``target``, set the thread count and execute one run recorded (the public worker API).

    What a one-run worker process and a Ray task both do. A target that cannot be imported fails the run.

    Returns:
        0 when the run ended done or cancelled, 1 when it failed.
    """
    fn = load_target(target)
    set_threads(threads)
    return execute_recorded(run_id, store, fn, heartbeat_s)


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
    fn = load_target(target)
    if warm_up and not isinstance(fn, BaseException):
        started = time.perf_counter()
        try:
            import_target(warm_up)()
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
            set_threads(message.get("threads"))
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
    """Execute one run in this process (``python -m cgcnn.runs.worker worker``) and make sure it ends recorded.

    Returns the exit code: 0 when the run ended done or cancelled, 1 when it failed.
    """
    signal.signal(signal.SIGTERM, _on_sigterm)
    if nice:
        with contextlib.suppress(OSError):
            os.nice(nice)
    store = RunStore(store_path)
    with contextlib.suppress(Exception):
        store.heartbeat(run_id)  # importing the target (torch) can take a while on a busy machine
    try:
        return execute_one(run_id, store, target, torch_threads, heartbeat_s)
    except WorkerTerminated:
        try:
            return 0 if store.cancel_requested(run_id) else 1
        except RunNotFound:
            return 0


# --------------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """``python -m cgcnn.runs.worker``: ``serve`` (a warm worker) or ``worker`` (one run), started by a runner."""
    parser = argparse.ArgumentParser(prog="python -m cgcnn.runs.worker", description="Run queued cgcnn runs.")
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

    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m cgcnn.runs.worker``; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "worker":
        return worker_main(args.run_id, args.store, args.target, args.nice, args.torch_threads, args.heartbeat)
    if args.command == "serve":
        return serve_main(args.store, args.target, args.nice, args.heartbeat, args.warm_up)
    raise AssertionError(args.command)  # argparse allows only the commands above


if __name__ == "__main__":
    sys.exit(main())
