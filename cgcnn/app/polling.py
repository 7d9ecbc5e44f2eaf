"""How often live views poll, so that a full class does not spend the server's one Python thread on progress bars.

Every page script and every polling fragment of every session runs in the one Streamlit process, one at a time
(the GIL). A Fine-tune tab polls its run table and its opened run; at a fixed 2 s, 30 tabs ask for 30 fragment
reruns a second, enough to keep a core busy, and every click then waits behind them (``bench/load_app.py``). So the
interval grows with the number of sessions seen lately: 2 s for a handful of students, up to 10 s for a full class,
which keeps the polls to a bounded share of the server whatever the class size. Progress of a training run is
not worth more than that; clicks are.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

#: Fastest poll (seconds), used while few sessions are active.
MIN_POLL_S = 2.0
#: Slowest poll (seconds), however many sessions are active.
MAX_POLL_S = 10.0
#: Seconds of polling per active session: the interval is this times the number of sessions (within the bounds),
#: so all sessions together ask for at most 1 / POLL_S_PER_SESSION fragment reruns per second (4 at 0.25 s).
POLL_S_PER_SESSION = 0.25
#: A session counts as active for this long after its last page run or poll.
ACTIVE_WINDOW_S = 60.0


def poll_seconds(active_sessions: int) -> float:
    """Interval of a polling view when ``active_sessions`` sessions use the server (see the module docstring)."""
    return min(MAX_POLL_S, max(MIN_POLL_S, POLL_S_PER_SESSION * active_sessions))


@dataclass
class ActiveSessions:
    """Sessions seen lately (by browser token), shared by every session of one server process; thread-safe."""

    window_s: float = ACTIVE_WINDOW_S
    _last_seen: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def seen(self, token: str, now: float | None = None) -> None:
        """Note that the session with this browser token ran a page or a poll just now."""
        with self._lock:
            self._last_seen[token] = time.monotonic() if now is None else now

    def count(self, now: float | None = None) -> int:
        """Sessions seen within the window (older ones are forgotten)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            for token in [t for t, at in self._last_seen.items() if now - at > self.window_s]:
                del self._last_seen[token]
            return len(self._last_seen)

    def poll_seconds(self, now: float | None = None) -> float:
        """:func:`poll_seconds` for the sessions active now."""
        return poll_seconds(self.count(now))
