"""Polling slows down as the class grows (cgcnn.app.polling): bounded, monotone, and sessions age out."""

from __future__ import annotations

import threading

from cgcnn.app.polling import ACTIVE_WINDOW_S, MAX_POLL_S, MIN_POLL_S, ActiveSessions, poll_seconds


def test_poll_interval_grows_with_sessions_within_bounds():
    intervals = [poll_seconds(n) for n in range(0, 101)]
    assert intervals[0] == intervals[1] == MIN_POLL_S  # one student polls as before
    assert intervals == sorted(intervals)
    assert poll_seconds(30) == 7.5  # a class of 30: 30 / 7.5 = 4 polls a second in all
    assert max(intervals) == MAX_POLL_S  # a huge class still sees progress


def test_sessions_are_counted_once_and_forgotten_after_the_window():
    sessions = ActiveSessions()
    sessions.seen("alice", now=0.0)
    sessions.seen("alice", now=5.0)
    sessions.seen("bob", now=10.0)
    assert sessions.count(now=11.0) == 2
    assert sessions.count(now=5.0 + ACTIVE_WINDOW_S + 1) == 1  # alice left; bob still within the window
    assert sessions.count(now=10.0 + ACTIVE_WINDOW_S + 1) == 0
    assert sessions.poll_seconds(now=10.0 + ACTIVE_WINDOW_S + 1) == MIN_POLL_S


def test_many_threads_marking_sessions_at_once():
    sessions = ActiveSessions()

    def student(k: int) -> None:
        for _ in range(200):
            sessions.seen(f"token-{k}")
            sessions.count()

    threads = [threading.Thread(target=student, args=(k,)) for k in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sessions.count() == 30
    assert sessions.poll_seconds() == poll_seconds(30)
