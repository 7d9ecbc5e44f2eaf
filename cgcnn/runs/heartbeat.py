"""A background thread that says a run is alive, from the moment it is claimed or started.

Why a thread: a run heartbeating only after each epoch looks dead while it loads data or builds graphs (80 s
on a busy server), and another process's :meth:`~cgcnn.runs.store.RunStore.reap_stale` failed it although it
later finished. The thread beats every few seconds whatever the main thread is doing. It also enforces the
server's maximum run time (``CGCNN_MAX_RUN_SECONDS``): a run stuck in one phase (a parse that never ends) would
otherwise heartbeat forever.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

from cgcnn.runs.store import RunStore

THREAD_NAME = "cgcnn-heartbeat"


def overtime_message(limit_s: float) -> str:
    """The error a run gets when it is stopped for running past the server's limit."""
    return f"stopped: ran longer than this server's limit of {limit_s:g} s (set by CGCNN_MAX_RUN_SECONDS)"


class Heartbeat(threading.Thread):
    """Heartbeats ``run_id`` every ``period_s`` until :meth:`stop`; calls ``on_overtime`` once past ``max_s``.

    Args:
        store: the run store.
        run_id: the run.
        period_s: seconds between beats (keep it well under the reaper's timeout).
        max_s: the run's time limit in seconds, counted from ``started`` (0 or None: no limit).
        on_overtime: called from this thread once the limit is passed (e.g. interrupt the main thread).
        started: ``time.monotonic()`` of the run's start (default: now).
    """

    def __init__(
        self,
        store: RunStore,
        run_id: str,
        period_s: float = 5.0,
        max_s: float | None = None,
        on_overtime: Callable[[], None] | None = None,
        started: float | None = None,
    ) -> None:
        super().__init__(name=THREAD_NAME, daemon=True)
        self.store, self.run_id, self.period_s = store, run_id, period_s
        self.max_s = max_s or None
        self.on_overtime = on_overtime
        self.started = time.monotonic() if started is None else started
        self.done = threading.Event()
        self.overtime = False

    def run(self) -> None:
        """Beat until stopped; past the time limit, call ``on_overtime`` once and keep beating."""
        while True:
            wait = self.period_s
            if self.max_s is not None and not self.overtime:
                wait = max(0.0, min(wait, self.started + self.max_s - time.monotonic()))
            if self.done.wait(wait):
                return
            if self.max_s is not None and not self.overtime and time.monotonic() - self.started >= self.max_s:
                self.overtime = True
                if self.on_overtime is not None and not self.done.is_set():
                    self.on_overtime()
                continue
            try:
                self.store.heartbeat(self.run_id)
            except Exception as exc:  # a locked store now and then must not end the run
                print(f"heartbeat failed: {exc}", file=sys.stderr)

    def stop(self) -> None:
        """End the thread (it exits within one period; no join needed)."""
        self.done.set()
