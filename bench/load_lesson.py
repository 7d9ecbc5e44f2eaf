"""The lesson mode of the load bench (``bench/load_app.py --lesson``): a class following a lesson while its grid trains.

Each simulated student opens the Class page and signs in, answers the lesson's first question (a choice), and then
follows the lesson as a browser tab does: the step's polling fragment reruns every few seconds, and every
``--page-every`` seconds the student looks at another page and comes back to the Class page. When the teacher
reaches the experiment, a student's poll shows *Run my part* and the student clicks it once.

The teacher is driven through the library (:class:`cgcnn.lessons.session.LessonBook`, as the Class page's buttons
do): start the lesson before the students arrive, go to the experiment once every student has answered (or the
arrivals are over and 30 s have passed), go to the reveal and reveal once every cell has ended, and let the class
look at the reveal (its figures are the heaviest step) for ``REVEAL_S`` seconds.

Jobs are counted per dealt cell: done, failed (or cancelled), and lost (a cell of the grid without a finished run at
the end, queued, running or never queued).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bench.st_client import ProtocolError, StreamlitSession

#: Seconds the class looks at the revealed answer before the bench ends.
REVEAL_S = 20.0
#: The page of the lesson.
CLASS = "Class"


def read_lesson(name_or_path: str):
    """A shipped lesson by name, or a lesson file (checked against this server like an upload)."""
    from cgcnn.lessons.schema import read_lesson as read_file
    from cgcnn.lessons.schema import shipped_lessons

    if Path(name_or_path).is_file():
        return read_file(name_or_path)
    lessons = shipped_lessons()
    if name_or_path not in lessons:
        raise SystemExit(f"no lesson {name_or_path!r}: a file, or one of {', '.join(lessons)}")
    return lessons[name_or_path]


def _button(session: StreamlitSession, label: str):
    try:
        return session.widget(label=label, kind="button")
    except ProtocolError:
        return None


async def lesson_student(k: int, n_sessions: int, url: str, plan, lesson, all_done: asyncio.Event, deadline: float):
    """One simulated student of the lesson (see the module docstring)."""
    from bench.load_app import BROWSE, SessionLog

    log = SessionLog(f"student-{k:02d}")
    await asyncio.sleep(plan.ramp_s * k / max(1, n_sessions - 1))
    session = StreamlitSession(url)
    await session.connect()
    try:

        async def record(result):
            log.runs.append(result)
            log.errors.extend(f"{result.page}: {e}" for e in result.errors)
            return result

        first = await record(await session.rerun())
        first.page += " (first load)"
        name = session.widget(key="user_input")
        session.set_value(name, log.name)
        session.keep_across_pages(name)
        await record(await session.rerun())
        await record(await session.open(CLASS))

        question = next((s for s in lesson.steps if s.kind == "question" and s.answer_type == "choice"), None)
        if question is not None:
            radio = session.widget(label="Your answer", kind="radio")
            session.set_value(radio, question.options[k % len(question.options)])
            await record(await session.click(session.widget(label="Save my answer", kind="button")))
            log.launched = "answered"

        ran_part = False
        visits = 0
        last_switch = time.monotonic()
        next_poll = {fid: time.monotonic() + s for fid, s in session.fragments.items()}
        while not all_done.is_set() and time.monotonic() < deadline:
            now = time.monotonic()
            run_part = None if ran_part else _button(session, "Run my part")
            if run_part is not None:
                result = await record(await session.click(run_part))
                ran_part = True
                log.launched = next((t for t in result.texts if "Queued" in t), log.launched)
                next_poll = {fid: time.monotonic() + s for fid, s in session.fragments.items()}
                continue
            if now - last_switch >= plan.page_every_s:
                visits += 1
                target = CLASS if visits % 2 == 0 else BROWSE[(k + visits // 2) % len(BROWSE)]
                await record(await session.open(target))
                last_switch = time.monotonic()
                next_poll = {fid: last_switch + s for fid, s in session.fragments.items()}
                continue
            due = [fid for fid, at in next_poll.items() if at <= now]
            if due:
                fid = due[0]
                await record(await session.rerun(fragment_id=fid))
                next_poll.pop(fid, None)
                later = time.monotonic()
                next_poll = {f: next_poll.get(f, later + s) for f, s in session.fragments.items()}
                continue
            await asyncio.sleep(0.1)
    except Exception as exc:  # a broken session is a result of the bench, not a crash of it
        log.errors.append(f"session failed: {type(exc).__name__}: {exc}")
    finally:
        await session.close()
    return log


async def teacher(book, session_id: str, lesson, n: int, plan, all_done: asyncio.Event, deadline: float) -> dict:
    """The teacher's moves (see the module docstring); returns when each happened (seconds from the start)."""
    started = time.monotonic()
    steps = list(lesson.steps)
    experiment = next(i for i, s in enumerate(steps) if s.kind == "experiment")
    reveal = next((i for i, s in enumerate(steps) if s.kind == "reveal" and i > experiment), None)
    question = next((s for s in steps[:experiment] if s.kind == "question"), None)
    moments: dict[str, float] = {}
    while time.monotonic() < deadline:
        answered = len(book.answers(session_id, question.id)) if question is not None else n
        if answered >= n or time.monotonic() - started > plan.ramp_s + 30.0:
            break
        await asyncio.sleep(1.0)
    book.go(session_id, experiment)
    moments["experiment_at_s"] = round(time.monotonic() - started, 1)
    grid = steps[experiment].id
    while time.monotonic() < deadline:
        cells = book.all_cells(session_id, grid)
        total = book.progress(session_id, grid)[1]
        ended = [c for c in cells if c.status in ("done", "failed", "cancelled", "deleted")]
        if len(ended) >= total:
            break
        await asyncio.sleep(2.0)
    moments["grid_ended_at_s"] = round(time.monotonic() - started, 1)
    moments["grid_train_s"] = round(moments["grid_ended_at_s"] - moments["experiment_at_s"], 1)
    if reveal is not None and time.monotonic() < deadline:
        book.go(session_id, reveal)
        book.reveal(session_id)
        moments["revealed_at_s"] = round(time.monotonic() - started, 1)
        await asyncio.sleep(min(REVEAL_S, max(0.0, deadline - time.monotonic())))
    all_done.set()
    return moments


async def drive_lesson(url: str, store, n: int, plan, lesson, max_seconds: float):
    """Start the lesson, then run the teacher and ``n`` students until the reveal has been seen."""
    from cgcnn.lessons.session import LessonBook

    book = LessonBook(store)
    session_id = book.start(lesson, "bench-teacher")
    all_done = asyncio.Event()
    deadline = time.monotonic() + max_seconds
    students = [lesson_student(k, n, url, plan, lesson, all_done, deadline) for k in range(n)]
    moments, *logs = await asyncio.gather(teacher(book, session_id, lesson, n, plan, all_done, deadline), *students)
    return book, session_id, moments, list(logs)


def lesson_jobs(book, session_id: str, lesson) -> dict:
    """The first experiment's cells: done, failed, lost (see the module docstring)."""
    experiment = lesson.experiments[0]
    total = len(experiment.specs())
    cells = [c for c in book.all_cells(session_id, experiment.id) if c.index < total]
    done = sum(c.status == "done" for c in cells)
    failed = sum(c.status in ("failed", "cancelled", "deleted") for c in cells)
    return {"cells": total, "jobs_done": done, "jobs_failed": failed, "jobs_lost": total - done - failed}
