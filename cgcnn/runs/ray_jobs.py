"""The job queue on a Ray cluster: each run is a Ray task; the one SQLite store stays on the head node.

Why this shape: SQLite over a network file system is not safe (locks are unreliable), so tasks never open the
store. A task executes the same target as a local worker (``execute_run``) against a :class:`RelayStore`, which
answers reads from a snapshot of the run and sends every write (epochs, heartbeats, updates, predictions, the
final result with the checkpoint's bytes) to a small :class:`Relay` actor. The driver, i.e. the
:class:`RayJobRunner` on the head node, drains the relay each tick and applies the writes to the store, and it
also heartbeats every run whose task is alive, so the reaper never fails a live Ray run.

* Cancellation reaches the task: the driver sets a flag in the relay (the task polls it each epoch, as a local
  worker polls the store) and after the grace period cancels the task with ``ray.cancel(force=True)``.
* A lost Ray worker (node died, process killed) makes ``ray.get`` raise; the run is marked failed with that
  cause, keeping the epochs already forwarded. Tasks are never retried (``max_retries=0``): a run is recorded
  once.
* ``ray`` is imported only here, and this module only when the Ray executor is asked for, so the app and the
  CLI do not pay for it otherwise.
* A local instance (no address) starts with ``include_dashboard=False``, a small object store and a short temp
  dir. An address that cannot be reached gives :class:`RayUnavailable` within seconds (Ray itself would retry
  for minutes); falling back to local workers is the caller's choice (``fallback_local``).

Limits: the cluster's nodes need the same cgcnn (and its assets) importable; user uploads and ``run:ID`` models
live on the head node, so runs on other nodes use the embedded dataset and the zoo's models.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cgcnn.errors import CGCNNError
from cgcnn.paths import PROJECT_ROOT
from cgcnn.runs.heartbeat import overtime_message
from cgcnn.runs.jobs import JobRunner, log
from cgcnn.runs.store import RunNotFound, RunRecord, RunStore
from cgcnn.runs.worker import DEFAULT_TARGET
from cgcnn.settings import current_limits

OBJECT_STORE_BYTES = 80 * 1024**2  # a small object store: tasks pass run ids and small messages
TEMP_DIR = "/tmp/cgcnn-ray"  # short: Ray's socket paths must stay under 107 characters
CONNECT_TIMEOUT_S = 3.0
_FORWARDED = frozenset({"mark_running", "update", "add_epoch", "heartbeat", "add_predictions", "finish"})

#: The model files a task may send back: a network's checkpoint, or a baseline's fit inputs
#: (``cgcnn.nn.baseline.BASELINE_FILE``); any other name is stored as ``model.pt`` (and refused when loaded).
MODEL_FILES = ("model.pt", "baseline.npz")


def model_file_name(sent_path: str | None) -> str:
    """The name to store a task's model file under, in its run's folder on the driver (never a path)."""
    name = Path(sent_path).name if sent_path else ""
    return name if name in MODEL_FILES else MODEL_FILES[0]


_INIT_LOCK = threading.Lock()


class RayUnavailable(CGCNNError):
    """Ray is not installed, or the cluster at the given address cannot be reached."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailable(f"the Ray executor needs ray (pip install -r requirements.txt): {exc}") from None
    return ray


def _check_reachable(address: str) -> None:
    """Fail fast on a ``host:port`` nobody listens on (ray.init would retry for minutes)."""
    if address in ("auto", "local") or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise RayUnavailable(f"Ray address {address!r} is not host:port (e.g. 10.0.0.5:6379)")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise RayUnavailable(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); start it with `ray start --head` "
            "there, or use --ray-fallback-local to run on this machine instead"
        ) from None


def connect(address: str | None = None, num_cpus: int | None = None) -> Any:
    """Connect this process to Ray (once): the cluster at ``address``, or a small local instance.

    Returns the ``ray`` module. Raises :class:`RayUnavailable` with a clear message when it cannot.
    """
    ray = _import_ray()
    with _INIT_LOCK:
        if ray.is_initialized():
            return ray
        env = {"env_vars": {"PYTHONPATH": str(PROJECT_ROOT)}}
        try:
            if address:
                _check_reachable(address)
                ray.init(address=address, runtime_env=env, log_to_driver=False)
            else:
                ray.init(
                    num_cpus=num_cpus or os.cpu_count() or 1,
                    include_dashboard=False,
                    object_store_memory=OBJECT_STORE_BYTES,
                    _temp_dir=TEMP_DIR,
                    runtime_env=env,
                    log_to_driver=False,
                )
        except RayUnavailable:
            raise
        except Exception as exc:  # ConnectionError, RuntimeError: Ray's own wording, on one line
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RayUnavailable(f"cannot start or reach {where}: {first}") from None
    return ray


# --------------------------------------------------------------------------------------------------- task side


class Relay:
    """Messages from tasks to the driver, and cancellation flags from the driver to tasks (a Ray actor)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str, tuple, dict]] = []
        self.cancelled: set[str] = set()

    def put(self, run_id: str, method: str, args: tuple, kwargs: dict) -> None:
        """Queue one store write of a task."""
        self.messages.append((run_id, method, args, kwargs))

    def drain(self) -> list[tuple[str, str, tuple, dict]]:
        """Everything queued since the last drain, in order."""
        out, self.messages = self.messages, []
        return out

    def cancel(self, run_id: str) -> None:
        """Flag a run for cancellation (its task sees it at the next epoch)."""
        self.cancelled.add(run_id)

    def is_cancelled(self, run_id: str) -> bool:
        """Whether the driver asked this run to stop."""
        return run_id in self.cancelled


class RelayStore:
    """The part of :class:`RunStore` a job target uses, for a task that must not open the SQLite file.

    Reads come from the snapshot of the run taken when it was claimed; writes go to the :class:`Relay`. The run's
    folder is a temporary one on the task's node; the checkpoint's bytes travel with ``finish``.
    """

    def __init__(self, record: RunRecord, relay: Any) -> None:
        self.record = record
        self.relay = relay
        self.home = Path(tempfile.gettempdir()) / "cgcnn-ray-runs"
        self.path = self.home / "relay"

    def _send(self, run_id: str, method: str, *args: Any, **kwargs: Any) -> None:
        self.relay.put.remote(run_id, method, args, kwargs)

    def get(self, run_id: str) -> RunRecord:
        """The run as it was claimed (with the status this task gave it since)."""
        return self.record

    def run_dir(self, run_id: str) -> Path:
        """A temporary folder on this node (removed when the task ends)."""
        return self.home / run_id

    def cancel_requested(self, run_id: str) -> bool:
        """Ask the driver (through the relay) whether the run should stop."""
        import ray

        return bool(ray.get(self.relay.is_cancelled.remote(run_id)))

    def mark_running(self, run_id: str, pid: int | None = None) -> None:
        """Forward: the task started."""
        self._send(run_id, "mark_running", pid=os.getpid() if pid is None else pid)

    def heartbeat(self, run_id: str) -> None:
        """Forward a heartbeat."""
        self._send(run_id, "heartbeat")

    def update(self, run_id: str, **columns: Any) -> None:
        """Forward column updates."""
        self._send(run_id, "update", **columns)

    def add_epoch(self, run_id: str, *args: Any, **kwargs: Any) -> None:
        """Forward one epoch."""
        self._send(run_id, "add_epoch", *args, **kwargs)

    def add_predictions(self, run_id: str, rows: Any) -> int:
        """Forward the test predictions."""
        rows = [tuple(r) for r in rows]
        self._send(run_id, "add_predictions", rows)
        return len(rows)

    def finish(self, run_id: str, status: str, **kwargs: Any) -> bool:
        """Forward the end of the run, with the checkpoint file's bytes when there is one."""
        path = kwargs.get("checkpoint_path")
        if path is not None and Path(path).is_file():
            kwargs["checkpoint_bytes"] = Path(path).read_bytes()
        self._send(run_id, "finish", status, **kwargs)
        self.record = dataclasses.replace(self.record, status=status)
        return True


def _task_body(record: RunRecord, relay: Any, target: str, threads: int, heartbeat_s: float) -> str:
    """What a Ray task runs: the job target against a :class:`RelayStore`. Returns the host it ran on."""
    from cgcnn.runs.worker import execute_one

    store = RelayStore(record, relay)
    store.update(record.id, host=socket.gethostname(), pid=os.getpid())
    try:
        execute_one(record.id, store, target, threads, heartbeat_s)  # type: ignore[arg-type]
    finally:
        shutil.rmtree(store.run_dir(record.id), ignore_errors=True)
    return socket.gethostname()


# --------------------------------------------------------------------------------------------------- driver


@dataclass
class _Task:
    run_id: str
    ref: Any
    claimed_at: float
    cancel_deadline: float | None = None
    forced: bool = False
    overtime: bool = False


class RayJobRunner(JobRunner):
    """A :class:`JobRunner` whose runs are Ray tasks; the store is written by this driver only.

    Args:
        store: the run store on this (head) node.
        ray_address: the cluster (``host:port`` of ``ray start --head``; ``auto`` for the one this machine
            joined); None starts a small local instance.
        num_cpus: CPUs each task asks Ray for, and its torch threads (default 1).
        fallback_local: accepted for symmetry with :func:`cgcnn.runs.executors.make_runner`, which applies it.
        max_workers: tasks in flight at once (default: the cluster's CPUs divided by ``num_cpus``).
        **kwargs: the other :class:`JobRunner` options (target, poll_s, stale_after_s, heartbeat_s, ...).

    Raises:
        RayUnavailable: Ray is missing or the cluster cannot be reached.
    """

    executor = "ray"

    def __init__(
        self,
        store: RunStore | Path | str | None = None,
        ray_address: str | None = None,
        num_cpus: int | None = None,
        fallback_local: bool = False,
        max_workers: int | None = None,
        target: str = DEFAULT_TARGET,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("nice", None)
        kwargs.pop("torch_threads", None)
        kwargs.pop("warm_up", None)
        kwargs.pop("prewarm", None)
        self.ray_address = ray_address or os.environ.get("CGCNN_RAY_ADDRESS") or None
        self.num_cpus = max(1, int(num_cpus or os.environ.get("CGCNN_RAY_NUM_CPUS") or 1))
        self.ray = connect(self.ray_address, num_cpus=None)
        if max_workers is None:
            cluster_cpus = int(self.ray.cluster_resources().get("CPU", 1))
            max_workers = max(1, cluster_cpus // self.num_cpus)
        super().__init__(store, max_workers, target, nice=0, torch_threads=self.num_cpus, prewarm=False, **kwargs)
        self._tasks: dict[str, _Task] = {}
        path = os.pathsep.join(p for p in (str(PROJECT_ROOT), self.env.get("PYTHONPATH", "")) if p)
        env = {"env_vars": {**self.env, "PYTHONPATH": path}}
        self._relay = self.ray.remote(num_cpus=0)(Relay).options(runtime_env=env).remote()
        self._remote = self.ray.remote(_task_body).options(num_cpus=self.num_cpus, max_retries=0, runtime_env=env)

    def active_runs(self) -> list[str]:
        """Ids of the runs whose tasks are in flight."""
        with self._lock:
            return list(self._tasks)

    def worker_pids(self) -> list[int]:
        """Ray manages its worker processes; none are this runner's."""
        return []

    def pool_status(self) -> dict[str, int]:
        """Tasks as a teacher sees them (same keys as the local runner's)."""
        with self._lock:
            busy = len(self._tasks)
        return {"max_workers": self.max_workers, "workers": busy, "busy": busy, "ready": 0, "orphans": 0}

    def _close_pool(self) -> None:
        pass  # Ray's worker processes belong to Ray

    # ----------------------------------------------------------------------------------------- supervisor

    def _tick(self) -> None:
        now = time.monotonic()
        self._forward()
        with self._lock:
            tasks = list(self._tasks.values())
        for task in tasks:
            ready, _ = self.ray.wait([task.ref], timeout=0)
            if ready:
                self._forward()  # the task's last messages precede its end
                self._on_task_end(task)
                continue
            with contextlib.suppress(RunNotFound):
                self.store.heartbeat(task.run_id)  # the driver vouches for a live task
            if self._kill and task.cancel_deadline is None:
                with contextlib.suppress(RunNotFound):
                    self.store.request_cancel(task.run_id, force=True)
            self._enforce_task_limits(task, now)
        self._reap()
        if self._stopping.is_set():
            return
        while len(self.active_runs()) < self.max_workers:
            # pid and host are the task's, sent by the task when it starts on its node
            run_id = self.store.claim_next(torch_threads=self.num_cpus, executor="ray")
            if run_id is None:
                break
            self._submit(run_id)

    def _submit(self, run_id: str) -> None:
        record = self.store.get(run_id)
        ref = self._remote.remote(record, self._relay, self.target, self.num_cpus, self.heartbeat_s)
        with self._lock:
            self._tasks[run_id] = _Task(run_id, ref, time.monotonic())

    def _forward(self) -> None:
        """Apply the tasks' queued writes to the store, in order."""
        try:
            messages = self.ray.get(self._relay.drain.remote())
        except Exception:
            log.exception("ray runner: could not read the relay")
            return
        for run_id, method, args, kwargs in messages:
            if method not in _FORWARDED:
                continue
            try:
                if method == "finish":
                    data = kwargs.pop("checkpoint_bytes", None)
                    if data is not None:
                        path = self.store.run_dir(run_id) / model_file_name(kwargs.get("checkpoint_path"))
                        path.parent.mkdir(parents=True, exist_ok=True)
                        tmp = path.with_name(path.name + ".tmp")
                        tmp.write_bytes(data)
                        tmp.replace(path)
                        kwargs["checkpoint_path"] = str(path)
                    kwargs["only_if_active"] = True
                elif method == "mark_running":
                    kwargs.pop("pid", None)
                    method = "heartbeat"  # claimed already; the task's pid is on another machine
                getattr(self.store, method)(run_id, *args, **kwargs)
            except RunNotFound:
                continue  # deleted meanwhile
            except CGCNNError as exc:
                log.warning("ray runner: %s of run %s not applied: %s", method, run_id, exc)

    def _enforce_task_limits(self, task: _Task, now: float) -> None:
        limit = self.max_run_seconds if self.max_run_seconds is not None else current_limits().max_run_seconds
        if limit and not task.overtime and now - task.claimed_at >= limit:
            task.overtime = True
            with contextlib.suppress(RunNotFound):
                self.store.finish(task.run_id, "failed", error=overtime_message(limit), only_if_active=True)
            task.cancel_deadline = now
        if task.cancel_deadline is None:
            try:
                if not self.store.cancel_requested(task.run_id):
                    return
            except RunNotFound:
                pass
            self._relay.cancel.remote(task.run_id)
            task.cancel_deadline = now + self.cancel_grace_s
        if not task.forced and now >= task.cancel_deadline:
            task.forced = True
            self.ray.cancel(task.ref, force=True)

    def _on_task_end(self, task: _Task) -> None:
        with self._lock:
            self._tasks.pop(task.run_id, None)
        error = None
        try:
            self.ray.get(task.ref)
        except Exception as exc:  # TaskCancelledError, WorkerCrashedError, NodeDiedError, ...
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            error = f"{type(exc).__name__}: {first}"[:500]
        try:
            record = self.store.get(task.run_id)
        except RunNotFound:
            return
        if not record.is_active:
            return
        if task.forced or record.cancel_requested:
            self.store.finish(
                task.run_id, "cancelled", error="cancelled (the Ray task was stopped)", only_if_active=True
            )
        elif error is not None:
            self.store.finish(
                task.run_id,
                "failed",
                error=f"the Ray worker running it was lost ({error}); its finished epochs are kept",
                only_if_active=True,
            )
        else:
            self.store.finish(task.run_id, "failed", error="the Ray task ended without finishing the run",
                              only_if_active=True)  # fmt: skip
