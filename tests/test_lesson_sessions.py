"""Lesson sessions in the run store: dealing the grid, answers, limits, sharing, and a restart that resumes."""

from __future__ import annotations

import sqlite3
import textwrap

import pytest

from cgcnn.lessons.schema import LessonError, parse_lesson
from cgcnn.lessons.session import ABSENT_AFTER_S, NOT_QUEUED, WAITING, LessonBook
from cgcnn.runs.schema import MIGRATIONS
from cgcnn.runs.store import RunStore


def lesson_text(seeds: str = "[0, 1, 2, 3, 4, 5, 6]") -> str:
    # scratch only, one cell per seed: 7 cells in grid order = seeds 0..6
    return textwrap.dedent(
        f"""\
        title = "Seeds"
        description = "Hand-made for the dealing tests."

        [[steps]]
        kind = "question"
        id = "guess"
        text = "How far apart are the seeds?"
        answer = {{type = "number", unit = "eV"}}

        [[steps]]
        kind = "question"
        id = "pick"
        text = "Which?"
        answer = {{type = "choice", options = ["low", "high"]}}

        [[steps]]
        kind = "experiment"
        id = "grid"
        pretrained = ["none"]
        sizes = [20]
        seeds = {seeds}
        val = 10
        test = 10
        epochs = 1

        [[steps]]
        kind = "reveal"
        question = "guess"
        experiment = "grid"
        view = "comparison"
        """
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def book(store, clock):
    return LessonBook(store, clock=clock)


def dealing(book: LessonBook, session: str) -> dict[str, list[int]]:
    cells = book.all_cells(session, "grid")
    return {s: [c.index for c in cells if c.student == s] for s in sorted({c.student for c in cells})}


def started(book: LessonBook, students=("ann", "bob", "cy"), seeds="[0, 1, 2, 3, 4, 5, 6]") -> str:
    session = book.start(parse_lesson(lesson_text(seeds), "seeds"), teacher="teacher")
    for name in students:
        book.seen(session, name)
        book.clock.now += 1
    book.go(session, 2)  # the teacher opens the experiment: a teacher action deals it
    return session


def test_three_students_seven_cells_are_dealt_in_sign_in_and_grid_order(book):
    session = started(book)
    assert dealing(book, session) == {"ann": [0, 3, 6], "bob": [1, 4], "cy": [2, 5]}
    cells = book.cells_of(session, "grid", "bob")
    assert [c.spec.seed for c in cells] == [1, 4] and {c.status for c in cells} == {NOT_QUEUED}
    assert book.progress(session, "grid") == (0, 7)


def test_run_my_part_queues_the_students_cells_as_their_runs_and_fixes_them(book, store):
    session = started(book)
    run_ids = book.run_my_part(session, "grid", "ann")
    assert len(run_ids) == 3
    assert [store.get(r).owner for r in run_ids] == ["ann"] * 3
    assert [store.get(r).seed for r in run_ids] == [0, 3, 6]
    assert {c.status for c in book.cells_of(session, "grid", "ann")} == {"queued"}
    assert book.run_my_part(session, "grid", "ann") == []  # nothing left to queue: no second runs
    store.update(run_ids[0], status="done", test_mae=0.5)
    assert book.progress(session, "grid") == (1, 7)
    frame = book.experiment_runs(session, "grid")
    assert list(frame["run_id"]) == [run_ids[0]] and list(frame["test_mae"]) == [0.5]


def test_a_student_gone_120_s_has_their_unqueued_cells_dealt_again_at_the_next_run_my_part(book, clock):
    session = started(book)
    book.run_my_part(session, "grid", "ann")  # ann's cells 0, 3, 6 are queued: fixed
    book.run_my_part(session, "grid", "bob")  # bob queued 1 and 4
    clock.now += ABSENT_AFTER_S - 5
    book.seen(session, "ann")
    clock.now += 10  # cy last seen ABSENT_AFTER_S + 5 ago; ann 5 s ago; bob as long ago as cy, but queued
    assert dealing(book, session) == {"ann": [0, 3, 6], "bob": [1, 4], "cy": [2, 5]}  # nothing moves by itself
    book.run_my_part(session, "grid", "ann")  # the next "run my part": cy's unqueued 2 and 5 are dealt again
    deal = dealing(book, session)
    assert deal["bob"] == [1, 4] and "cy" not in deal  # bob's queued cells stay his
    assert deal["ann"] == [0, 2, 3, 5, 6]  # the only student present
    assert {c.status for c in book.cells_of(session, "grid", "ann")} == {"queued"}  # her part queued at once


def test_the_freed_cells_go_to_the_present_student_with_the_fewest(book, clock):
    session = started(book)
    clock.now += ABSENT_AFTER_S + 1
    for name in ("ann", "cy"):
        book.seen(session, name)
    book.reveal(session)  # a teacher action re-deals bob's unqueued 1 and 4
    # ann holds 3, cy 2: cell 1 goes to cy (fewest), then cell 4 to ann (3 each: the earlier sign-in)
    assert dealing(book, session) == {"ann": [0, 3, 4, 6], "cy": [1, 2, 5]}


def test_more_students_than_cells_the_one_without_is_told_and_may_run_an_extra_seed(book, store):
    session = started(book, seeds="[0, 1]")
    assert dealing(book, session) == {"ann": [0], "bob": [1]}
    assert book.cells_of(session, "grid", "cy") == []
    with pytest.raises(LessonError, match="you have cells of the grid"):
        book.extra_cell(session, "grid", "ann")
    extra = book.extra_cell(session, "grid", "cy")
    assert extra.extra and extra.index == 2 and extra.spec.seed == 2 and extra.status == NOT_QUEUED
    assert book.extra_cell(session, "grid", "cy").index == 2  # the unqueued one is given back
    (run_id,) = book.run_my_part(session, "grid", "cy")
    assert store.get(run_id).seed == 2 and store.get(run_id).owner == "cy"
    second = book.extra_cell(session, "grid", "cy")
    assert (second.index, second.spec.seed) == (3, 3)  # the next cell of the grid's round, seed 3
    assert book.progress(session, "grid") == (0, 2)  # extras are not cells of the grid


def test_the_per_person_limit_holds_and_the_rest_queue_as_slots_free(book, store, monkeypatch):
    monkeypatch.setenv("CGCNN_MAX_QUEUED_PER_USER", "2")
    session = started(book)
    first = book.run_my_part(session, "grid", "ann")
    assert len(first) == 2
    assert [c.status for c in book.cells_of(session, "grid", "ann")] == ["queued", "queued", WAITING]
    assert book.run_my_part(session, "grid", "ann") == []  # still no slot
    store.update(first[0], status="done")
    (third,) = book.run_my_part(session, "grid", "ann")
    assert store.get(third).seed == 6


def test_identical_cells_are_shared_with_an_earlier_computation(book, store):
    session = started(book)
    (bobs_first, _) = book.run_my_part(session, "grid", "bob")
    store.update(bobs_first, status="done", test_mae=0.4)
    again = book.start(parse_lesson(lesson_text(), "seeds"))  # another class, the same lesson
    book.seen(again, "dee")
    book.go(again, 2)
    runs = book.run_my_part(again, "grid", "dee")
    assert len(runs) == 7
    reused = store.get(runs[1])  # seed 1: bob's finished run
    assert reused.source_run_id == bobs_first and reused.status == "done" and reused.test_mae == 0.4


def test_a_second_answer_replaces_the_first_and_bad_numbers_are_refused(book):
    session = started(book)
    assert book.answer(session, "ann", "guess", "0,2") == "0.2"
    book.answer(session, "bob", "pick", "HIGH")
    book.answer(session, "ann", "guess", "0.3")
    assert book.answers(session, "guess") == {"ann": "0.3"}
    assert book.answers(session, "pick") == {"bob": "high"}
    with pytest.raises(LessonError, match="'lots' is not a number"):
        book.answer(session, "bob", "guess", "lots")
    with pytest.raises(LessonError, match="no question 'grid'"):
        book.answer(session, "bob", "grid", "1")
    assert book.answers(session, "guess") == {"ann": "0.3"}


def test_a_new_store_on_the_same_file_resumes_the_step_the_dealing_and_the_answers(book, store, clock):
    session = started(book)
    book.answer(session, "cy", "guess", "1.5")
    book.run_my_part(session, "grid", "bob")
    book.reveal(session)
    before = dealing(book, session)
    restarted = LessonBook(RunStore(store.path), clock=clock)
    assert restarted.active() == session
    state = restarted.state(session)
    assert (state.step_index, state.revealed, state.step.kind) == (2, True, "experiment")
    assert state.lesson.title == "Seeds" and state.teacher == "teacher"
    assert restarted.answers(session, "guess") == {"cy": "1.5"}
    assert dealing(restarted, session) == before
    assert [c.status for c in restarted.cells_of(session, "grid", "bob")] == ["queued", "queued"]
    assert [s.student for s in restarted.students(session)] == ["ann", "bob", "cy"]


def test_teacher_controls_and_reset_keep_the_runs(book, store):
    session = started(book)
    with pytest.raises(LessonError, match="steps 1 to 4, not 5"):
        book.go(session, 4)
    runs = book.run_my_part(session, "grid", "ann")
    book.answer(session, "ann", "pick", "low")
    state = book.reset(session)
    assert (state.step_index, state.revealed) == (0, False)
    assert book.answers(session, "pick") == {} and book.all_cells(session) == []
    assert all(store.exists(r) for r in runs)
    newer = book.start(parse_lesson(lesson_text(), "seeds"))
    assert book.active() == newer and book.state(session).ended_at is not None
    with pytest.raises(LessonError, match="no lesson session 'nope'"):
        book.state("nope")


def test_the_lesson_migration_adds_its_tables_to_an_older_store_and_can_run_again(tmp_path):
    number = next(k for k, steps in enumerate(MIGRATIONS) if any("lesson_sessions" in str(s) for s in steps))
    path = tmp_path / "runs.sqlite"
    conn = sqlite3.connect(path)
    for steps in MIGRATIONS[:number]:
        for step in steps:
            step(conn) if callable(step) else conn.execute(step)
    conn.execute(f"PRAGMA user_version = {number}")
    conn.commit()
    conn.close()
    store = RunStore(path)
    session = LessonBook(store).start(parse_lesson(lesson_text(), "seeds"))
    with sqlite3.connect(path) as conn:
        for step in MIGRATIONS[number]:  # idempotent: a test that replays earlier migrations runs it again
            conn.execute(step)
    assert LessonBook(RunStore(path)).active() == session


def test_a_name_signed_in_from_another_browser_cannot_run_its_part(book, store):
    session = started(book)
    store.claim_name("bob", "bob", "hash-of-bobs-token")
    with pytest.raises(LessonError, match="signed in from another browser"):
        book.run_my_part(session, "grid", "bob", owner_token="hash-of-another-token")
    assert len(book.run_my_part(session, "grid", "bob", owner_token="hash-of-bobs-token")) == 2


def test_two_tabs_running_the_same_part_at_once_queue_each_cell_once(book, store):
    import threading

    session = started(book)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(book.run_my_part(session, "grid", "ann"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(r for part in results for r in part) == sorted(
        c.run_id for c in book.cells_of(session, "grid", "ann")
    )
    assert len(store.list_runs(owner="ann")) == 3
