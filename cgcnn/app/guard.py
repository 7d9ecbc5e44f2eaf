"""Guessing a password is slow and logged: a growing delay, then a lockout, per session and per client address.

A classroom server's teacher password and class code are short secrets typed into a web page; without a guard
six websocket sessions made 83 guesses a second and found a 4-digit PIN in a minute. So every wrong guess is
logged (``cgcnn.app.guard``, with who and how many), waits a little longer than the last one (0.5 s, 1 s, 2 s,
... at most 4 s), and after ``CGCNN_LOGIN_FAILURES`` wrong guesses the key is locked out for
``CGCNN_LOCKOUT_SECONDS``, doubling with each further lockout up to an hour. Keys are the session and, where
Streamlit gives it, the client address, so opening new sessions from one machine does not reset the count. A
right guess clears the count. State is in memory, per server process: a restart forgets it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

LOG = logging.getLogger("cgcnn.app.guard")
#: Longest lockout, in seconds.
MAX_LOCKOUT_SECONDS = 3600.0
#: Longest delay after one wrong guess, in seconds.
MAX_DELAY_SECONDS = 4.0


@dataclass
class _Record:
    failures: int = 0  # wrong guesses since the last lockout (or success)
    lockouts: int = 0
    locked_until: float = 0.0


class LoginGuard:
    """Counts wrong guesses of one secret (``what``: "teacher password", "class code") per key.

    Args:
        what: the secret's name in messages and the log.
        failures: wrong guesses before a lockout (default ``CGCNN_LOGIN_FAILURES``).
        lockout_seconds: the first lockout (default ``CGCNN_LOCKOUT_SECONDS``).
        clock: the time source (tests).
    """

    def __init__(
        self,
        what: str,
        failures: int | None = None,
        lockout_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self._failures = failures
        self._lockout = lockout_seconds
        self.clock = clock
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()

    def _limits(self) -> tuple[int, float]:
        from cgcnn.settings import current_limits

        limits = current_limits()
        failures = self._failures if self._failures is not None else limits.login_failures
        lockout = self._lockout if self._lockout is not None else limits.lockout_seconds
        return max(1, int(failures)), float(lockout)

    def locked_for(self, keys: Sequence[str]) -> float:
        """Seconds until every key may guess again (0: none is locked)."""
        now = self.clock()
        with self._lock:
            waits = [r.locked_until - now for k in keys if (r := self._records.get(k)) is not None]
        return max([0.0, *waits])

    def failed(self, keys: Sequence[str]) -> float:
        """Count a wrong guess for each key and log it once; returns the delay before answering (seconds)."""
        allowed, lockout = self._limits()
        now = self.clock()
        delay, locked, count = 0.0, 0.0, 0
        with self._lock:
            for key in keys:
                record = self._records.setdefault(key, _Record())
                record.failures += 1
                count = max(count, record.failures)
                delay = max(delay, min(MAX_DELAY_SECONDS, 0.5 * 2 ** (record.failures - 1)))
                if record.failures >= allowed:
                    seconds = min(MAX_LOCKOUT_SECONDS, lockout * 2**record.lockouts)
                    record.locked_until, record.failures = now + seconds, 0
                    record.lockouts += 1
                    locked = max(locked, seconds)
        who = ", ".join(keys)
        if locked:
            LOG.warning("wrong %s from %s: locked out for %g s", self.what, who, locked)
        else:
            LOG.warning("wrong %s from %s (%d of %d before a lockout)", self.what, who, count, allowed)
        return delay

    def succeeded(self, keys: Sequence[str]) -> None:
        """A right guess: forget the keys' counts."""
        with self._lock:
            for key in keys:
                self._records.pop(key, None)

    def refusal(self, seconds: float) -> str:
        """The message for a locked-out key."""
        return f"Too many wrong tries: wait {max(1, round(seconds))} s before the next {self.what}."


#: The server's guards (one process, shared by every session).
TEACHER_GUARD = LoginGuard("teacher password")
CLASS_CODE_GUARD = LoginGuard("class code")
