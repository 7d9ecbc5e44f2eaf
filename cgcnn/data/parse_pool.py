"""Untrusted crystal files parsed in worker processes with a time and a memory limit, never in the caller.

The app's server holds the GIL for every session: a file that makes pymatgen spin for a minute, or allocate
5 GB, would stall or kill every student's page. So uploads are parsed here, in a small persistent pool of
worker processes that imported pymatgen once (a fresh interpreter per file would cost seconds each):

- each file is checked and parsed by :func:`cgcnn.data.crystal_io.read_crystal_bytes` (size, the screen of
  :mod:`cgcnn.data.screen`, one parser per format, disorder, atoms after symmetry), the rules every surface uses;
- a worker runs with one BLAS thread and an address-space limit (``RLIMIT_AS``: its size after the imports
  plus ``CGCNN_PARSE_MEMORY_MB``), so a file that needs more memory fails with a message, not the OOM killer;
- a file that takes longer than its budget gets its worker killed and replaced, and an error naming the file;
  the other files of the batch are still parsed. The budget is ``CGCNN_PARSE_SECONDS`` scaled by the file's
  lines (:func:`parse_budget`: a 4,096-site P1 CIF gets ~5×, a fair parse on a busy 2-core box); a whole zip
  gets ``CGCNN_ZIP_PARSE_SECONDS``;
- a class shares the pool: zips use at most all workers but one (single files always have a lane), and a
  call that finds no free worker within ``CGCNN_PARSE_WAIT_SECONDS`` is told the server is busy instead of
  queueing for minutes;
- a failure is remembered by the content's hash for :data:`FAILURE_TTL_SECONDS`: a page rerun with the same
  file gets the message at once instead of parsing it again;
- a worker watches its parent and exits when the server dies (no orphan parsing at full CPU under PID 1).

:func:`shared_pool` is the process-wide pool (started on first use, closed at exit).
"""

from __future__ import annotations

import atexit
import collections
import hashlib
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection

from cgcnn.errors import CGCNNError, CrystalInputError
from cgcnn.paths import PROJECT_ROOT

#: Seconds a new worker may take to import pymatgen before the pool gives up on it.
START_SECONDS = 120.0
#: How long a failed file or zip is answered from memory (by content hash) instead of parsed again.
FAILURE_TTL_SECONDS = 600.0
#: Failures remembered at most.
FAILURE_CACHE_SIZE = 256
#: Lines of a crystal file per extra ``CGCNN_PARSE_SECONDS`` of budget (pymatgen's CIF parse grows with sites).
LINES_PER_BUDGET = 1000


def parse_budget(data: bytes, base: float | None = None) -> float:
    """Seconds a file may take to parse: ``CGCNN_PARSE_SECONDS × (1 + lines / 1000)``.

    A 4,096-site P1 CIF (~4,100 lines) took 9.2 s on a loaded 2-core box against a flat 5 s limit; scaled by
    its lines it gets ~26 s, while the screen's atom and size limits still bound what a line count can buy.
    """
    from cgcnn.settings import current_limits

    base = float(base if base is not None else current_limits().parse_seconds)
    return base * (1.0 + data.count(b"\n") / LINES_PER_BUDGET)


def _watch_parent() -> None:
    """Exit this worker as soon as the process that started it is gone (checked every 0.2 s, in a thread).

    ``PR_SET_PDEATHSIG`` would fire when the *thread* that started the worker ends, and the server starts
    workers from short-lived page threads; so the worker polls its parent id instead.
    """
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _worker_main(inbox: Connection, outbox: Connection, memory_mb: float) -> None:
    """A worker: one BLAS thread, pymatgen imported, memory capped; then parse files until told to stop."""
    _watch_parent()
    import warnings

    warnings.simplefilter("ignore")
    import importlib

    modules = ("pymatgen.core", "pymatgen.io.cif", "cgcnn.data.crystal_io", "cgcnn.data.screen", "cgcnn.data.graph")
    for module in modules:
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
            elif kind == "graph":  # an upload's graph: its neighbour search is as hostile as its parse
                from cgcnn.data.graph import structure_to_graph

                structure, params, options, max_pairs = payload
                os.environ["CGCNN_MAX_PAIRS"] = str(max_pairs)  # the caller's limit, not the one at our start
                reply = ("ok", structure_to_graph(structure, params, options=options))
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
        self._zip_lane = threading.BoundedSemaphore(max(1, self.workers - 1))  # one worker kept for single files
        self._failures: collections.OrderedDict[str, tuple[float, str]] = collections.OrderedDict()

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

    def _acquire(self, wait: float | None = None) -> _Worker | None:
        # Loop, not one blocking get: a worker killed meanwhile frees a slot for a new one instead of an idle one.
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            if deadline is not None and time.monotonic() > deadline:
                return None
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
            seconds: wall-time limit (default :func:`parse_budget`: ``CGCNN_PARSE_SECONDS`` scaled by lines).
            max_atoms: atom limit (default ``CGCNN_MAX_ATOMS``).

        Raises:
            CrystalInputError: refused, unreadable, too slow (the worker is killed and replaced), too large, a
                failure remembered from an earlier try, or no worker free within ``CGCNN_PARSE_WAIT_SECONDS``.
        """
        seconds = float(seconds if seconds is not None else parse_budget(data))
        asked = f"{name}\0{max_atoms}\0{seconds:g}\0".encode()  # the same file under other limits is asked anew
        key = "file:" + hashlib.sha256(asked + bytes(data)).hexdigest()
        return self._remembered(
            key,
            lambda: self._request(
                ("file", name, bytes(data), max_atoms),
                seconds,
                CrystalInputError,
                too_slow=f"{name}: parsing took longer than {seconds:.3g} s and was stopped (set by "
                "CGCNN_PARSE_SECONDS, scaled by the file's lines)",
                crashed=f"{name}: the parser ran out of memory or crashed on this file",
                busy=f"{name}: the server is busy reading other files; try again in a minute",
            ),
            CrystalInputError,
        )

    def _remembered(self, key: str, call, error: type[Exception]):
        """``call()``, or the failure it gave for the same content within :data:`FAILURE_TTL_SECONDS`.

        A busy server is not remembered: it says nothing about the file.
        """
        with self._lock:
            hit = self._failures.get(key)
            if hit is not None and time.monotonic() - hit[0] < FAILURE_TTL_SECONDS:
                raise error(hit[1])
        try:
            return call()
        except error as exc:
            if not getattr(exc, "busy", False):
                with self._lock:
                    self._failures[key] = (time.monotonic(), str(exc))
                    self._failures.move_to_end(key)
                    while len(self._failures) > FAILURE_CACHE_SIZE:
                        self._failures.popitem(last=False)
            raise

    def build_graph(self, name: str, structure, params, options=None, seconds: float | None = None):
        """Build an uploaded crystal's graph in a worker (a :class:`~cgcnn.data.graph.CrystalGraph`).

        The neighbour search allocates per pair of atoms within the cutoff; :mod:`cgcnn.data.graph_budget`
        refuses more than ``CGCNN_MAX_PAIRS`` before it starts, and building here keeps even an allowed large
        search (hundreds of MB, seconds) out of the page process, under the worker's memory cap.

        Args:
            name: the file's name (every message starts with it).
            structure: the parsed crystal.
            params: the model's :class:`~cgcnn.data.graph.GraphParams`.
            options: the caller's :class:`~cgcnn.data.graph.BuildOptions` (atom limit, widening).
            seconds: wall-time limit (default: :func:`graph_seconds` of the crystal).

        Raises:
            CrystalInputError: refused (too many pairs, no neighbours, unknown element), too slow or too large.
        """
        from cgcnn.data.graph_budget import estimate_pairs
        from cgcnn.settings import current_limits

        if seconds is None:
            seconds = graph_seconds(estimate_pairs(len(structure), structure.volume, params.radius))
        return self._request(
            ("graph", name, (structure, params, options, current_limits().max_pairs), None),
            seconds,
            CrystalInputError,
            too_slow=f"{name}: building its graph took longer than {seconds:g} s and was stopped",
            crashed=f"{name}: building its graph ran out of memory",
            prefix=name,
        )

    def read_zip(self, path, seconds_per_file: float | None = None, seconds: float | None = None) -> int:
        """Parse a CGCNN-folder zip in a worker; returns the number of usable crystals.

        :func:`~cgcnn.data.folders.read_zip_once` writes the dataset beside the zip, so the caller then loads
        arrays instead of parsing.

        Each CIF gets ``seconds_per_file`` (default ``CGCNN_PARSE_SECONDS``; a slower one is rejected by name),
        the whole zip ``seconds`` (default ``CGCNN_ZIP_PARSE_SECONDS``), after which the worker is killed. Zips
        share all workers but one (single files keep a lane); a failed zip is remembered by its content's hash.

        Raises:
            DatasetError: the zip's own message (caps, damaged member, no usable crystal), too slow, a failure
                remembered from an earlier try, or the server busy past ``CGCNN_PARSE_WAIT_SECONDS``.
        """
        from cgcnn.data.datasets import DatasetError
        from cgcnn.settings import current_limits

        limits = current_limits()
        per_file = float(seconds_per_file if seconds_per_file is not None else limits.parse_seconds)
        total = float(seconds if seconds is not None else (limits.zip_parse_seconds or 1800.0))
        name = os.path.basename(str(path))
        with open(path, "rb") as f:
            key = f"zip:{per_file:g}:{total:g}:" + hashlib.file_digest(f, "sha256").hexdigest()
        busy = f"{name}: the server is busy reading other zips; try again in a minute"

        def read() -> int:
            if not self._zip_lane.acquire(timeout=limits.parse_wait_seconds or None):
                raise _busy(DatasetError, busy)
            try:
                return self._request(
                    ("zip", name, str(path), per_file),
                    total,
                    DatasetError,
                    too_slow=f"{name}: reading the zip took longer than {total:g} s and was stopped (set by "
                    "CGCNN_ZIP_PARSE_SECONDS)",
                    crashed=f"{name}: the parser ran out of memory or crashed on this zip",
                    busy=busy,
                )
            finally:
                self._zip_lane.release()

        return int(self._remembered(key, read, DatasetError))

    def _request(
        self,
        message: tuple,
        seconds: float,
        error: type[Exception],
        too_slow: str,
        crashed: str,
        prefix: str = "",
        busy: str | None = None,
    ):
        """Send ``message`` to an idle worker and return its answer, waiting at most ``seconds``.

        A worker that is too slow is killed and replaced (``error(too_slow)``), one that dies is replaced
        (``error(crashed)``); an answer of kind ``error`` is raised as ``error`` with the worker's message. With
        ``busy``, no free worker within ``CGCNN_PARSE_WAIT_SECONDS`` raises ``error(busy)``.
        """
        from cgcnn.settings import current_limits

        wait = (current_limits().parse_wait_seconds or None) if busy is not None else None
        worker = self._acquire(wait)
        if worker is None:
            raise _busy(error, busy or "the server is busy; try again in a minute")
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
            raise error(value if not prefix or value.startswith(prefix) else f"{prefix}: {value}")
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


def _busy(error: type[Exception], message: str) -> Exception:
    """``error(message)`` marked as the server's state, not the file's (never remembered as a failure)."""
    exc = error(message)
    exc.busy = True
    return exc


def graph_seconds(pairs: float, base: float = 5.0) -> float:
    """Wall time a graph build of about ``pairs`` neighbour pairs may take: 5 s plus 2 µs a pair.

    Measured at ~0.6 µs a pair on an idle 2-core box (4 M pairs, the default ``CGCNN_MAX_PAIRS``: 2.5 s); the
    margin is for a box busy with a class's training.
    """
    return base + 2e-6 * pairs


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
