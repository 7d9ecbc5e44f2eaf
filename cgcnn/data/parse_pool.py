"""Untrusted crystal files parsed in worker processes with a time and a memory limit, never in the caller.

The app's server holds the GIL for every session: a file that makes pymatgen spin for a minute, or allocate
5 GB, would stall or kill every student's page. So uploads are parsed here, in a small persistent pool of
worker processes that imported pymatgen once (a fresh interpreter per file would cost seconds each):

- each file is checked and parsed by :func:`cgcnn.data.crystal_io.read_crystal_bytes` (size, the screen of
  :mod:`cgcnn.data.screen`, one parser per format, disorder, atoms after symmetry), the rules every surface uses;
- a worker runs with one BLAS thread and an address-space limit (``RLIMIT_AS``: its size after the imports
  plus ``CGCNN_PARSE_MEMORY_MB``), so a file that needs more memory fails with a message, not the OOM killer;
- a file that takes longer than ``CGCNN_PARSE_SECONDS`` gets its worker killed and replaced, and an error
  naming the file; the other files of the batch are still parsed.

:func:`shared_pool` is the process-wide pool (started on first use, closed at exit).
"""

from __future__ import annotations

import atexit
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection

from cgcnn.errors import CGCNNError, CrystalInputError
from cgcnn.paths import PROJECT_ROOT

#: Seconds a new worker may take to import pymatgen before the pool gives up on it.
START_SECONDS = 120.0


def _worker_main(inbox: Connection, outbox: Connection, memory_mb: float) -> None:
    """A worker: one BLAS thread, pymatgen imported, memory capped; then parse files until told to stop."""
    import warnings

    warnings.simplefilter("ignore")
    import importlib

    for module in ("pymatgen.core", "pymatgen.io.cif", "cgcnn.data.crystal_io", "cgcnn.data.screen"):
        importlib.import_module(module)  # pre-imported once: the reason the pool is persistent
    from pymatgen.symmetry.groups import SpaceGroup

    from cgcnn.data.crystal_io import read_crystal_bytes

    SpaceGroup("Fm-3m")  # loads the symmetry tables once (4 s cold)
    _limit_memory(memory_mb)
    outbox.send(("ready", os.getpid()))
    while True:
        try:
            task = inbox.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        kind, name, payload, limit = task
        try:
            if kind == "zip":  # a whole CGCNN-folder zip: parsed once, kept beside it (read_zip_once)
                from cgcnn.data.folders import read_zip_once

                reply = ("ok", len(read_zip_once(payload, file_seconds=limit)))
            else:
                reply = ("ok", read_crystal_bytes(name, payload, limit))
        except CGCNNError as exc:
            reply = ("error", str(exc))
        except MemoryError:
            reply = ("error", f"{name}: parsing it needs more memory than a crystal file may use")
        except Exception as exc:  # pymatgen's own bugs on odd input: one message, the worker lives on
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            reply = ("error", f"{name}: not a readable crystal file ({first})")
        try:
            outbox.send(reply)
        except MemoryError:
            outbox.send(("error", f"{name}: the parsed crystal is too large to return"))


def _limit_memory(memory_mb: float) -> None:
    """Cap the address space at what the worker uses now plus ``memory_mb`` (Linux; a no-op elsewhere)."""
    try:
        import resource

        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[0])
        now = pages * os.sysconf("SC_PAGE_SIZE")
        cap = now + int(memory_mb * 1024**2)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    except (OSError, ValueError, ImportError):
        pass


@dataclass
class _Worker:
    process: subprocess.Popen
    outbox: Connection  # tasks to the worker
    inbox: Connection  # replies from it

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        else:
            try:
                self.outbox.send(None)
            except (OSError, ValueError):
                self.process.kill()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.outbox.close()
        self.inbox.close()


class ParsePool:
    """A few worker processes that parse crystal files with a wall-time and a memory limit each.

    Thread-safe: Streamlit sessions share one pool; a call takes an idle worker (starting one if fewer than
    ``workers`` run) and gives it back, or replaces it if it had to be killed.

    Args:
        workers: most worker processes at once.
        memory_mb: memory a worker may add to its size after the imports (default ``CGCNN_PARSE_MEMORY_MB``).
    """

    def __init__(self, workers: int = 2, memory_mb: float | None = None) -> None:
        from cgcnn.settings import current_limits

        self.workers = max(1, int(workers))
        self.memory_mb = float(memory_mb if memory_mb is not None else current_limits().parse_memory_mb)
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._started = 0
        self._lock = threading.Lock()
        self.killed = 0  # workers killed for a stalled file (for tests and logs)

    # ------------------------------------------------------------------------------------------ workers

    def _start_worker(self) -> _Worker:
        # A fresh interpreter (never a fork of a server with threads and a GB of heap), started as a module so
        # that no host's __main__ is re-run in it; two pipes carry pickled tasks and replies.
        task_r, task_w = os.pipe()
        reply_r, reply_w = os.pipe()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "cgcnn.data.parse_pool", str(task_r), str(reply_w), str(self.memory_mb)],
                pass_fds=(task_r, reply_w),
                env=env,
                stdin=subprocess.DEVNULL,
                close_fds=True,
            )
        finally:
            os.close(task_r)
            os.close(reply_w)
        worker = _Worker(process, Connection(task_w, readable=False), Connection(reply_r, writable=False))
        if not worker.inbox.poll(START_SECONDS):
            worker.stop(kill=True)
            raise CGCNNError("the file parser did not start; try again")
        try:
            worker.inbox.recv()
        except EOFError:
            worker.stop(kill=True)
            raise CGCNNError("the file parser could not start (too little memory?)") from None
        return worker

    def _acquire(self) -> _Worker:
        # Loop, not one blocking get: a worker killed meanwhile frees a slot for a new one instead of an idle one.
        while True:
            try:
                return self._idle.get_nowait()
            except queue.Empty:
                pass
            with self._lock:
                start = self._started < self.workers
                if start:
                    self._started += 1
            if start:
                try:
                    return self._start_worker()
                except BaseException:
                    with self._lock:
                        self._started -= 1
                    raise
            try:
                return self._idle.get(timeout=0.2)
            except queue.Empty:
                continue

    def _discard(self, worker: _Worker) -> None:
        worker.stop(kill=True)
        with self._lock:
            self._started -= 1

    # ------------------------------------------------------------------------------------------ parsing

    def parse(self, name: str, data: bytes, seconds: float | None = None, max_atoms: int | None = None):
        """Parse one file in a worker; a ``pymatgen`` ``Structure``.

        Args:
            name: the file's name (its extension picks the format; every message starts with it).
            data: its bytes.
            seconds: wall-time limit (default ``CGCNN_PARSE_SECONDS``).
            max_atoms: atom limit (default ``CGCNN_MAX_ATOMS``).

        Raises:
            CrystalInputError: refused, unreadable, too slow (the worker is killed and replaced) or too large.
        """
        from cgcnn.settings import current_limits

        seconds = float(seconds if seconds is not None else current_limits().parse_seconds)
        return self._request(
            ("file", name, bytes(data), max_atoms),
            seconds,
            CrystalInputError,
            too_slow=f"{name}: parsing took longer than {seconds:g} s and was stopped (set by CGCNN_PARSE_SECONDS)",
            crashed=f"{name}: the parser ran out of memory or crashed on this file",
        )

    def read_zip(self, path, seconds_per_file: float | None = None, seconds: float | None = None) -> int:
        """Parse a CGCNN-folder zip in a worker; returns the number of usable crystals.

        :func:`~cgcnn.data.folders.read_zip_once` writes the dataset beside the zip, so the caller then loads
        arrays instead of parsing.

        Each CIF gets ``seconds_per_file`` (default ``CGCNN_PARSE_SECONDS``; a slower one is rejected by name),
        the whole zip ``seconds`` (default ``CGCNN_MAX_RUN_SECONDS``), after which the worker is killed.

        Raises:
            DatasetError: the zip's own message (caps, damaged member, no usable crystal), or too slow.
        """
        from cgcnn.data.datasets import DatasetError
        from cgcnn.settings import current_limits

        limits = current_limits()
        per_file = float(seconds_per_file if seconds_per_file is not None else limits.parse_seconds)
        total = float(seconds if seconds is not None else (limits.max_run_seconds or 1800.0))
        name = os.path.basename(str(path))
        value = self._request(
            ("zip", name, str(path), per_file),
            total,
            DatasetError,
            too_slow=f"{name}: reading the zip took longer than {total:g} s and was stopped",
            crashed=f"{name}: the parser ran out of memory or crashed on this zip",
        )
        return int(value)

    def _request(self, message: tuple, seconds: float, error: type[Exception], too_slow: str, crashed: str):
        """Send ``message`` to an idle worker and return its answer, waiting at most ``seconds``.

        A worker that is too slow is killed and replaced (``error(too_slow)``), one that dies is replaced
        (``error(crashed)``); an answer of kind ``error`` is raised as ``error`` with the worker's message.
        """
        worker = self._acquire()
        try:
            worker.outbox.send(message)
            if not worker.inbox.poll(seconds):
                self._discard(worker)
                self.killed += 1
                raise error(too_slow)
            kind, value = worker.inbox.recv()
        except (EOFError, OSError):  # BrokenPipeError included
            self._discard(worker)
            raise error(crashed) from None
        except error:
            raise
        except BaseException:
            self._discard(worker)
            raise
        self._idle.put(worker)
        if kind == "error":
            raise error(value)
        return value

    def parse_many(
        self, files: Sequence[tuple[str, bytes]], seconds: float | None = None, max_atoms: int | None = None
    ) -> tuple[list[tuple[str, object]], list[str]]:
        """Parse every file (up to ``workers`` at once): ``([(name, structure)] in order, [error lines])``."""

        def one(item: tuple[str, bytes]):
            try:
                return item[0], self.parse(item[0], item[1], seconds, max_atoms), None
            except CGCNNError as exc:
                return item[0], None, str(exc)

        if len(files) <= 1:
            results = [one(f) for f in files]
        else:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(files))) as threads:
                results = list(threads.map(one, files))
        parsed = [(name, s) for name, s, err in results if err is None]
        return parsed, [err for _, _, err in results if err is not None]

    def close(self) -> None:
        """Stop every idle worker (busy ones stop when their call returns and finds the pool closed)."""
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                break
            worker.stop()
            with self._lock:
                self._started -= 1


_SHARED: ParsePool | None = None
_SHARED_LOCK = threading.Lock()


def shared_pool() -> ParsePool:
    """The process-wide pool (two workers; started on first use, stopped at exit)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = ParsePool(workers=2)
            atexit.register(_SHARED.close)
        return _SHARED


if __name__ == "__main__":  # a worker: python -m cgcnn.data.parse_pool TASK_FD REPLY_FD MEMORY_MB
    _worker_main(
        Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False), float(sys.argv[3])
    )
