"""CLI command ``lesson``: check a lesson file, list the shipped lessons and the sessions, export one for grading."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from cgcnn.errors import CGCNNError


def _grid_summary(lesson) -> str:
    from cgcnn.lessons.schema import LessonError
    from cgcnn.runs.estimates import format_duration

    parts = []
    for experiment in lesson.experiments:
        try:
            cells = len(experiment.specs())
        except LessonError as exc:  # a grid this version cannot build (a strategy or baseline it lacks)
            raise LessonError(f"{lesson.name}: {exc}") from None
        parts.append(f"{experiment.id}: {cells} cells, about {format_duration(experiment.estimated_seconds())}")
    return "; ".join(parts) if parts else "no training"


def _cmd_check(args: argparse.Namespace) -> int:
    from cgcnn.lessons.schema import read_lesson

    lesson = read_lesson(args.file)
    print(f"ok: {args.file}: {lesson.title!r}, {len(lesson.steps)} steps ({_grid_summary(lesson)})")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from cgcnn.lessons.schema import lessons_dir, read_lesson

    files = sorted(lessons_dir().glob("*.toml"))
    failed = 0
    for path in files:
        try:
            lesson = read_lesson(path)
            summary = _grid_summary(lesson)
        except CGCNNError as exc:
            failed += 1
            print(f"error: {exc}", file=sys.stderr)
            continue
        print(f"{path.stem:32} {lesson.title:34} {len(lesson.steps)} steps; {summary}")
    if not files:
        print(f"no lessons in {lessons_dir()}", file=sys.stderr)
    return 2 if failed else 0


def _cmd_sessions(args: argparse.Namespace) -> int:
    from cgcnn.lessons.session import LessonBook
    from cgcnn.runs.store import RunStore

    for state in LessonBook(RunStore()).sessions():
        started = datetime.fromtimestamp(state.started_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
        on = "on" if state.ended_at is None else "ended"
        print(f"{state.session_id}  {started}  {on:5}  step {state.step_index + 1}/{len(state.lesson.steps)}  "
              f"{state.lesson.title}")  # fmt: skip
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from cgcnn.lessons.export import export_zip
    from cgcnn.lessons.session import LessonBook
    from cgcnn.runs.store import RunStore

    book = LessonBook(RunStore())
    data = export_zip(book, args.session_id)
    out = Path(args.out)
    try:
        out.write_bytes(data)
    except OSError as exc:
        raise CGCNNError(f"cannot write {out}: {exc.strerror or exc}") from None
    students = len(book.students(args.session_id))
    print(f"wrote {out}: class.csv and {students} student file(s)", file=sys.stderr)
    return 0


def add_lesson_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``lesson check|list|sessions|export``."""
    p = sub.add_parser(
        "lesson",
        help="lessons: check a lesson file, list the shipped ones and the sessions, export a session",
        description="A lesson is a TOML file of steps (question, experiment, reveal, explore); the schema is in "
        "docs/class.md. Exit code 2 on a lesson that cannot be used, with the step, key and line at fault.",
    )
    commands = p.add_subparsers(dest="lesson_command", required=True)
    c = commands.add_parser("check", help="check a lesson file against the schema and this server")
    c.add_argument("file", help="a lesson .toml file")
    c.set_defaults(func=_cmd_check)
    c = commands.add_parser("list", help="the shipped lessons (lessons/*.toml), with their grids' durations")
    c.set_defaults(func=_cmd_list)
    c = commands.add_parser("sessions", help="the lesson sessions of the run store, the latest first")
    c.set_defaults(func=_cmd_sessions)
    c = commands.add_parser(
        "export",
        help="a session's answers and runs for grading: a zip of class.csv and students/<name>.csv",
        description="Columns: student,step,question,answer,answered_at,run_id,pretrained,freeze,strategy,n_train,"
        "seed,split_seed,status,test_mae (one row per answer and per dealt cell).",
    )
    c.add_argument("session_id", help="the session's id (shown on the Class page; `lesson sessions` lists them)")
    c.add_argument("--out", required=True, help="the zip file to write")
    c.set_defaults(func=_cmd_export)
