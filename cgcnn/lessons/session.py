"""A class's lesson sessions in the run store: the current step, the reveal, the answers and the dealt grid.

Why in the run store's database (tables of one migration, :data:`cgcnn.runs.schema.MIGRATIONS`): the lesson
state must outlive the server process. A teacher who restarts the server mid-lesson (or a server that crashed)
finds the same step, the same answers and the same dealing, because a new :class:`~cgcnn.runs.store.RunStore`
on the same file reads them back; and it is written by the many Streamlit threads of 30 students under the
store's transaction rules (one ``BEGIN IMMEDIATE`` per write).

**Dealing.** An experiment's cells (:meth:`cgcnn.lessons.schema.Experiment.specs`, in grid order) are dealt to
the students present (seen in the last :data:`ABSENT_AFTER_S` seconds) in sign-in order: every undealt cell
goes, in grid order, to the present student holding the fewest cells, ties to the earlier sign-in, so a first
deal is exactly cell ``i`` → student ``i mod n``. A cell is fixed once its run is queued. A student not seen for
:data:`ABSENT_AFTER_S` seconds loses the cells they have not queued: those are dealt again at the next "run my
part" or teacher action (:meth:`LessonBook.go`, :meth:`LessonBook.reveal`); these are the only moments the
dealing changes, so a student's list does not move under them while they read it. A student who arrives after
the deal, or who is one of more students than cells, has none: they are told so and may run an extra seed
(:meth:`LessonBook.extra_cell`).

**Running a part.** :meth:`LessonBook.run_my_part` queues the student's cells through
:meth:`~cgcnn.runs.store.RunStore.launch`, so the per-person limit (``CGCNN_MAX_QUEUED_PER_USER``) applies and
an identical cell (another student's extra seed, an earlier lesson) is shared rather than trained twice. Cells
past the limit stay "waiting for a slot"; calling it again (the page does on its next refresh) queues them as
the student's runs finish.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cgcnn.lessons.schema import Experiment, Lesson, LessonError, Step, parse_structure
from cgcnn.names import name_key
from cgcnn.runs.schema import json_default
from cgcnn.runs.store import RunStore
from cgcnn.settings import LimitExceeded
from cgcnn.training.finetune import FinetuneSpec

if TYPE_CHECKING:
    import pandas as pd

#: A student not seen for this long has their unqueued cells dealt again (the page reports every few seconds).
ABSENT_AFTER_S = 120.0
#: A cell being queued carries a claim; one older than this was left by a process that died while queuing.
CLAIM_TIMEOUT_S = 60.0
_CLAIM = "claim:"

#: Statuses of a dealt cell before it has a run.
NOT_QUEUED = "not queued"
WAITING = "waiting for a slot"
QUEUING = "queuing"


@dataclass(frozen=True)
class LessonState:
    """Where a lesson session stands.

    Attributes:
        lesson: the lesson (from the source stored with the session).
        step_index: the current step, from 0.
        revealed: whether the current step's reveal is shown.
        started_at: unix seconds.
        session_id: the session's id (shown to the teacher; ``lesson export`` takes it).
        teacher: who started it.
        ended_at: when another session replaced it or it was ended (None: still on).
    """

    lesson: Lesson
    step_index: int
    revealed: bool
    started_at: float
    session_id: str = ""
    teacher: str = ""
    ended_at: float | None = None

    @property
    def step(self) -> Step:
        """The current step."""
        return self.lesson.steps[self.step_index]


@dataclass(frozen=True)
class DealtCell:
    """One cell of an experiment's grid and who runs it.

    Attributes:
        index: place in grid order (extra seeds come after the grid's cells).
        spec: what the cell trains.
        run_id: its run once queued (None before).
        status: :data:`NOT_QUEUED`, :data:`WAITING` (asked for, over the student's limit), :data:`QUEUING`, or
            its run's status (queued, running, done, failed, cancelled; "deleted" if the run was removed).
        student: who holds it ("" when undealt).
        experiment_id: the experiment it belongs to.
        extra: an extra seed asked for by a student without cells.
        test_mae: its run's test error once done.
    """

    index: int
    spec: FinetuneSpec
    run_id: str | None
    status: str
    student: str = ""
    experiment_id: str = ""
    extra: bool = False
    test_mae: float | None = None


@dataclass(frozen=True)
class StudentSeen:
    """A student of a session: their name, when they first appeared (sign-in order) and were last seen."""

    student: str
    joined_at: float
    seen_at: float
    present: bool


@dataclass(frozen=True)
class AnswerRow:
    """One stored answer."""

    student: str
    question_id: str
    answer: str
    answered_at: float


@functools.lru_cache(maxsize=16)
def _lesson_of(source: str, name: str) -> Lesson:
    """A session's lesson, parsed once per process (it was fully checked when the session started)."""
    return parse_structure(source, name)


def _spec_of(text: str) -> FinetuneSpec:
    return FinetuneSpec.from_dict(json.loads(text))


class LessonBook:
    """The lesson sessions of one run store.

    Args:
        store: the run store (its file holds the lesson tables).
        clock: unix seconds now (tests pass their own to step over the 120 s absence).
    """

    def __init__(self, store: RunStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    # The store's transaction helpers: one short connection per read, one BEGIN IMMEDIATE per write.
    def _read(self, sql: str, params: tuple | list = ()) -> list[sqlite3.Row]:
        return self.store._read(sql, params)

    def _write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        return self.store._write(fn)

    # ----------------------------------------------------------------------------------------- sessions

    def start(self, lesson: Lesson, teacher: str = "") -> str:
        """Start a session of ``lesson`` (ending the one that was on); returns its id.

        The lesson's source is stored with it, so an uploaded lesson resumes after a restart.
        """
        if not lesson.source:
            raise LessonError("a lesson session needs the lesson's source text (parse it with parse_lesson)")
        now = self.clock()
        session_id = uuid.uuid4().hex[:8]

        def go(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE lesson_sessions SET ended_at = ? WHERE ended_at IS NULL", (now,))
            conn.execute(
                "INSERT INTO lesson_sessions (id, lesson_name, source, teacher, started_at) VALUES (?, ?, ?, ?, ?)",
                (session_id, lesson.name, lesson.source, teacher or "", now),
            )

        self._write(go)
        return session_id

    def active(self) -> str | None:
        """The session on now (the latest started and not ended), or None."""
        rows = self._read(
            "SELECT id FROM lesson_sessions WHERE ended_at IS NULL ORDER BY started_at DESC, rowid DESC LIMIT 1"
        )
        return str(rows[0][0]) if rows else None

    def end(self, session_id: str) -> None:
        """End a session (its answers, dealing and runs stay, for the export)."""
        self._state_row(session_id)
        now = self.clock()
        self._write(
            lambda conn: conn.execute(
                "UPDATE lesson_sessions SET ended_at = ? WHERE id = ? AND ended_at IS NULL", (now, session_id)
            )
        )

    def sessions(self) -> list[LessonState]:
        """Every session, the latest first."""
        rows = self._read("SELECT * FROM lesson_sessions ORDER BY started_at DESC, rowid DESC")
        return [self._state_of(row) for row in rows]

    def _state_row(self, session_id: str) -> sqlite3.Row:
        rows = self._read("SELECT * FROM lesson_sessions WHERE id = ?", (session_id,))
        if not rows:
            raise LessonError(f"no lesson session {session_id!r} in {self.store.path}")
        return rows[0]

    @staticmethod
    def _state_of(row: sqlite3.Row) -> LessonState:
        lesson = _lesson_of(row["source"], row["lesson_name"])
        return LessonState(
            session_id=row["id"],
            lesson=lesson,
            step_index=min(int(row["step_index"]), len(lesson.steps) - 1),
            revealed=bool(row["revealed"]),
            started_at=float(row["started_at"]),
            teacher=row["teacher"],
            ended_at=row["ended_at"],
        )

    def state(self, session_id: str) -> LessonState:
        """Where the session stands (:class:`LessonError` for an unknown id)."""
        return self._state_of(self._state_row(session_id))

    # ----------------------------------------------------------------------------------------- teacher

    def go(self, session_id: str, step_index: int) -> LessonState:
        """Make ``step_index`` the current step (its reveal hidden), and deal the experiments reached so far."""
        state = self.state(session_id)
        if not 0 <= int(step_index) < len(state.lesson.steps):
            raise LessonError(f"this lesson has steps 1 to {len(state.lesson.steps)}, not {int(step_index) + 1}")
        self._write(
            lambda conn: conn.execute(
                "UPDATE lesson_sessions SET step_index = ?, revealed = 0 WHERE id = ?", (int(step_index), session_id)
            )
        )
        self._deal_reached(session_id)
        return self.state(session_id)

    def reveal(self, session_id: str, on: bool = True) -> LessonState:
        """Show (or hide) the current step's reveal; a teacher action, so the dealing is brought up to date."""
        self.state(session_id)
        self._write(
            lambda conn: conn.execute(
                "UPDATE lesson_sessions SET revealed = ? WHERE id = ?", (int(bool(on)), session_id)
            )
        )
        self._deal_reached(session_id)
        return self.state(session_id)

    def reset(self, session_id: str) -> LessonState:
        """Start the lesson over: answers and dealing cleared, back to step 1; runs are kept (and reused)."""
        self.state(session_id)

        def go(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM lesson_answers WHERE session_id = ?", (session_id,))
            conn.execute("DELETE FROM lesson_cells WHERE session_id = ?", (session_id,))
            conn.execute("UPDATE lesson_sessions SET step_index = 0, revealed = 0 WHERE id = ?", (session_id,))

        self._write(go)
        return self.state(session_id)

    def _deal_reached(self, session_id: str) -> None:
        state = self.state(session_id)
        for step in state.lesson.steps[: state.step_index + 1]:
            if isinstance(step, Experiment):
                self.deal(session_id, step.id)

    # ----------------------------------------------------------------------------------------- students

    def seen(self, session_id: str, student: str) -> None:
        """Record that ``student`` is here now (their first call places them in the sign-in order)."""
        key = self._student_key(student)
        now = self.clock()
        self._write(
            lambda conn: conn.execute(
                "INSERT INTO lesson_students (session_id, student_key, student, joined_at, seen_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (session_id, student_key) DO UPDATE SET seen_at = excluded.seen_at",
                (session_id, key, student.strip(), now, now),
            )
        )

    def students(self, session_id: str) -> list[StudentSeen]:
        """The session's students in sign-in order, with whether each was seen in the last 120 s."""
        cutoff = self.clock() - ABSENT_AFTER_S
        rows = self._read(
            "SELECT student, joined_at, seen_at FROM lesson_students WHERE session_id = ? ORDER BY joined_at, rowid",
            (session_id,),
        )
        return [StudentSeen(r[0], float(r[1]), float(r[2]), float(r[2]) >= cutoff) for r in rows]

    @staticmethod
    def _student_key(student: str) -> str:
        key = name_key(student or "")
        if not key:
            raise LessonError("sign in with a name first")
        return key

    # ----------------------------------------------------------------------------------------- answers

    def answer(self, session_id: str, student: str, question_id: str, raw: str) -> str:
        """Store ``student``'s answer (replacing an earlier one); returns it as stored.

        Raises:
            LessonError: no such question, or an answer it does not take (the message gives the reason).
        """
        question = self.state(session_id).lesson.question(question_id)
        value = question.check_answer(raw)
        key = self._student_key(student)
        self.seen(session_id, student)
        now = self.clock()
        self._write(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO lesson_answers (session_id, question_id, student_key, student, answer, "
                "answered_at) VALUES (?, ?, ?, ?, ?, ?)",
                (session_id, question_id, key, student.strip(), value, now),
            )
        )
        return value

    def answers(self, session_id: str, question_id: str) -> dict[str, str]:
        """Student → answer for one question, in the order they answered."""
        rows = self._read(
            "SELECT student, answer FROM lesson_answers WHERE session_id = ? AND question_id = ? "
            "ORDER BY answered_at, rowid",
            (session_id, question_id),
        )
        return {r[0]: r[1] for r in rows}

    def answer_rows(self, session_id: str) -> list[AnswerRow]:
        """Every answer of the session, by student then time."""
        rows = self._read(
            "SELECT student, question_id, answer, answered_at FROM lesson_answers WHERE session_id = ? "
            "ORDER BY student_key, answered_at",
            (session_id,),
        )
        return [AnswerRow(r[0], r[1], r[2], float(r[3])) for r in rows]

    # ----------------------------------------------------------------------------------------- dealing

    def _experiment(self, session_id: str, experiment_id: str) -> Experiment:
        return self.state(session_id).lesson.experiment(experiment_id)

    def deal(self, session_id: str, experiment_id: str) -> None:
        """Bring the dealing of one experiment up to date (see the module docstring for the rules)."""
        experiment = self._experiment(session_id, experiment_id)
        grid = experiment.specs()
        started = self._read(
            "SELECT 1 FROM lesson_cells WHERE session_id = ? AND experiment_id = ? LIMIT 1", (session_id, experiment_id)
        )
        specs = [] if started else [json.dumps(s.to_dict(), default=json_default) for s in grid]
        now = self.clock()

        def go(conn: sqlite3.Connection) -> None:
            if (
                specs
                and not conn.execute(
                    "SELECT 1 FROM lesson_cells WHERE session_id = ? AND experiment_id = ? LIMIT 1",
                    (session_id, experiment_id),
                ).fetchone()
            ):
                conn.executemany(
                    "INSERT INTO lesson_cells (session_id, experiment_id, cell_index, spec) VALUES (?, ?, ?, ?)",
                    [(session_id, experiment_id, i, spec) for i, spec in enumerate(specs)],
                )
            where = "session_id = ? AND experiment_id = ?"
            conn.execute(  # claims left by a process that died while queuing
                f"UPDATE lesson_cells SET run_id = NULL, claimed_at = NULL WHERE {where} AND run_id LIKE '{_CLAIM}%' "
                "AND claimed_at < ?",
                (session_id, experiment_id, now - CLAIM_TIMEOUT_S),
            )
            absent = (
                "student_key IN (SELECT student_key FROM lesson_students WHERE session_id = ? AND seen_at < ?) "
                "AND run_id IS NULL"
            )
            args = (session_id, experiment_id, session_id, now - ABSENT_AFTER_S)
            conn.execute(f"DELETE FROM lesson_cells WHERE {where} AND cell_index >= ? AND {absent}",
                         (session_id, experiment_id, len(grid), session_id, now - ABSENT_AFTER_S))  # fmt: skip
            conn.execute(
                f"UPDATE lesson_cells SET student_key = NULL, student = NULL, requested_at = NULL "
                f"WHERE {where} AND {absent}",
                args,
            )
            present = conn.execute(
                "SELECT student_key, student FROM lesson_students WHERE session_id = ? AND seen_at >= ? "
                "ORDER BY joined_at, rowid",
                (session_id, now - ABSENT_AFTER_S),
            ).fetchall()
            if not present:
                return
            held = dict.fromkeys((r[0] for r in present), 0)
            for key, count in conn.execute(
                f"SELECT student_key, COUNT(*) FROM lesson_cells WHERE {where} AND cell_index < ? "
                "AND student_key IS NOT NULL GROUP BY student_key",
                (session_id, experiment_id, len(grid)),
            ):
                if key in held:
                    held[key] = int(count)
            order = {r[0]: (i, r[1]) for i, r in enumerate(present)}
            undealt = conn.execute(
                f"SELECT cell_index FROM lesson_cells WHERE {where} AND cell_index < ? AND student_key IS NULL "
                "ORDER BY cell_index",
                (session_id, experiment_id, len(grid)),
            ).fetchall()
            for (index,) in undealt:
                key = min(held, key=lambda k: (held[k], order[k][0]))
                held[key] += 1
                conn.execute(
                    f"UPDATE lesson_cells SET student_key = ?, student = ? WHERE {where} AND cell_index = ?",
                    (key, order[key][1], session_id, experiment_id, index),
                )

        self._write(go)

    def _cells(self, session_id: str, experiment_id: str | None = None, student: str | None = None) -> list[DealtCell]:
        sql = (
            "SELECT c.cell_index, c.spec, c.run_id, c.requested_at, c.student, c.experiment_id, r.status, r.test_mae "
            "FROM lesson_cells c LEFT JOIN runs r ON r.id = c.run_id WHERE c.session_id = ?"
        )
        params: list[Any] = [session_id]
        if experiment_id is not None:
            sql += " AND c.experiment_id = ?"
            params.append(experiment_id)
        if student is not None:
            sql += " AND c.student_key = ?"
            params.append(self._student_key(student))
        rows = self._read(sql + " ORDER BY c.experiment_id, c.cell_index", params)
        grid_sizes: dict[str, int] = {}
        lesson = self.state(session_id).lesson
        cells = []
        for index, spec, run_id, requested, holder, exp_id, run_status, mae in rows:
            if exp_id not in grid_sizes:
                grid_sizes[exp_id] = len(lesson.experiment(exp_id).specs())
            if run_id is None:
                status = WAITING if requested is not None else NOT_QUEUED
            elif run_id.startswith(_CLAIM):
                run_id, status = None, QUEUING
            else:
                status = run_status or "deleted"
            cells.append(DealtCell(int(index), _spec_of(spec), run_id, status, holder or "", exp_id,
                                   int(index) >= grid_sizes[exp_id], mae))  # fmt: skip
        return cells

    def cells_of(self, session_id: str, experiment_id: str, student: str) -> list[DealtCell]:
        """The cells dealt to ``student`` (extra seeds included), in grid order; empty: none for them."""
        return self._cells(session_id, experiment_id, student)

    def all_cells(self, session_id: str, experiment_id: str | None = None) -> list[DealtCell]:
        """Every dealt cell of the session (or of one experiment), by experiment and grid order."""
        return self._cells(session_id, experiment_id)

    def run_my_part(
        self, session_id: str, experiment_id: str, student: str, owner_token: str | None = None
    ) -> list[str]:
        """Queue ``student``'s unqueued cells as runs of theirs; returns the run ids queued now.

        The dealing is brought up to date first (this is a "run my part" moment). Cells past the student's
        per-person limit stay :data:`WAITING`; call again to queue them as slots free.

        Args:
            session_id: the lesson session.
            experiment_id: the experiment step's id.
            student: the student's display name (the runs' owner).
            owner_token: the hash of the student's sign-in token, when the caller has one: a name claimed by
                another token is refused (the app's identity check, repeated where runs are queued).

        Raises:
            LessonError: the name is held by another browser, or there is no such experiment.
        """
        key = self._student_key(student)
        if owner_token is not None:
            holder = self.store.name_claim(key)
            if holder is not None and holder != owner_token:
                raise LessonError(f"the name {student!r} is signed in from another browser")
        self.seen(session_id, student)
        self.deal(session_id, experiment_id)
        now = self.clock()
        where = "session_id = ? AND experiment_id = ? AND student_key = ? AND run_id IS NULL"
        mine = (session_id, experiment_id, key)
        self._write(lambda conn: conn.execute(f"UPDATE lesson_cells SET requested_at = ? WHERE {where}", (now, *mine)))
        launched: list[str] = []
        for (index,) in self._read(f"SELECT cell_index FROM lesson_cells WHERE {where} ORDER BY cell_index", mine):
            claim = _CLAIM + uuid.uuid4().hex

            def take(conn: sqlite3.Connection, index: int = index, claim: str = claim) -> str | None:
                row = conn.execute(f"SELECT spec FROM lesson_cells WHERE {where} AND cell_index = ?", (*mine, index))
                spec = row.fetchone()
                if spec is None:
                    return None  # queued meanwhile (another tab) or dealt away
                conn.execute(
                    "UPDATE lesson_cells SET run_id = ?, claimed_at = ? WHERE session_id = ? AND experiment_id = ? "
                    "AND cell_index = ?",
                    (claim, now, session_id, experiment_id, index),
                )
                return spec[0]

            spec = self._write(take)
            if spec is None:
                continue
            try:
                record = self.store.launch(json.loads(spec), owner=student.strip())
            except LimitExceeded:
                self._release(session_id, experiment_id, index, claim, None)
                break  # the rest wait for a slot
            except BaseException:
                self._release(session_id, experiment_id, index, claim, None)
                raise
            self._release(session_id, experiment_id, index, claim, record.id)
            launched.append(record.id)
        return launched

    def _release(self, session_id: str, experiment_id: str, index: int, claim: str, run_id: str | None) -> None:
        self._write(
            lambda conn: conn.execute(
                "UPDATE lesson_cells SET run_id = ?, claimed_at = NULL WHERE session_id = ? AND experiment_id = ? "
                "AND cell_index = ? AND run_id = ?",
                (run_id, session_id, experiment_id, index, claim),
            )
        )

    def extra_cell(self, session_id: str, experiment_id: str, student: str) -> DealtCell:
        """Deal ``student`` an extra seed of the grid (for a student with no cell of it); returns the cell.

        Extra cell ``j`` is the grid's recipe ``j mod r`` (its ``r`` distinct cells without their seed, in grid
        order; baselines are deterministic and are not repeated) with seed ``max(seeds) + 1 + j // r``, so extras
        add seeds to the class's bands instead of duplicating a cell. A student whose extra cell is not queued
        yet gets it back.

        Raises:
            LessonError: the student holds cells of the grid (they run those first), or the grid trains nothing.
        """
        key = self._student_key(student)
        experiment = self._experiment(session_id, experiment_id)
        grid = experiment.specs()
        bases: dict[str, FinetuneSpec] = {}  # the grid's recipes (a cell without its seed), in grid order
        for spec in grid:
            recipe = json.dumps({**dataclasses.asdict(spec), "seed": None}, sort_keys=True, default=json_default)
            if spec.pretrained not in experiment.baselines:
                bases.setdefault(recipe, spec)
        recipes = list(bases.values())
        if not recipes:
            raise LessonError(f"experiment {experiment_id!r} trains no network: there is no extra seed to run")
        top_seed = max(experiment.seeds)
        self.seen(session_id, student)

        def go(conn: sqlite3.Connection) -> int:
            base = "session_id = ? AND experiment_id = ?"
            mine = conn.execute(
                f"SELECT cell_index, run_id FROM lesson_cells WHERE {base} AND student_key = ? ORDER BY cell_index",
                (session_id, experiment_id, key),
            ).fetchall()
            if any(int(i) < len(grid) for i, _ in mine):
                raise LessonError("you have cells of the grid: run those first")
            waiting = [int(i) for i, run_id in mine if run_id is None]
            if waiting:
                return waiting[0]
            count = conn.execute(f"SELECT COUNT(*) FROM lesson_cells WHERE {base} AND cell_index >= ?",
                                 (session_id, experiment_id, len(grid))).fetchone()[0]  # fmt: skip
            last = conn.execute(f"SELECT MAX(cell_index) FROM lesson_cells WHERE {base}",
                                (session_id, experiment_id)).fetchone()[0]  # fmt: skip
            index = max(len(grid), int(last if last is not None else -1) + 1)
            j = int(count)
            spec = dataclasses.replace(recipes[j % len(recipes)], seed=top_seed + 1 + j // len(recipes))
            conn.execute(
                "INSERT INTO lesson_cells (session_id, experiment_id, cell_index, spec, student_key, student) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (session_id, experiment_id, index, json.dumps(spec.to_dict(), default=json_default), key,
                 student.strip()),
            )  # fmt: skip
            return index

        index = self._write(go)
        return next(c for c in self.cells_of(session_id, experiment_id, student) if c.index == index)

    # ----------------------------------------------------------------------------------------- results

    def progress(self, session_id: str, experiment_id: str) -> tuple[int, int]:
        """``(done, total)`` over the grid's cells ("18 of 30 cells done"); extra seeds are not counted."""
        total = len(self._experiment(session_id, experiment_id).specs())
        rows = self._read(
            "SELECT COUNT(*) FROM lesson_cells c JOIN runs r ON r.id = c.run_id WHERE c.session_id = ? "
            "AND c.experiment_id = ? AND c.cell_index < ? AND r.status = 'done'",
            (session_id, experiment_id, total),
        )
        return int(rows[0][0]), total

    def experiment_runs(self, session_id: str, experiment_id: str) -> pd.DataFrame:
        """The experiment's finished runs (extra seeds included) as a sweep's ``runs.csv`` frame, for reveals."""
        from cgcnn.experiments.sweep import runs_frame

        ids = [c.run_id for c in self.all_cells(session_id, experiment_id) if c.run_id and c.status == "done"]
        records = [self.store.get(run_id) for run_id in ids]
        return runs_frame(records)
