"""A lesson session for grading: one CSV per student, and the class as a zip.

Each student's rows are their answers (one per question) and their cells (one per dealt cell, with its run and
test error), so a teacher can grade both the prediction and the part of the experiment a student ran. The
columns (:data:`COLUMNS`) are fixed; a field that does not apply to a row is empty.

Why the escaping: the CSVs are opened in spreadsheets, where a cell starting with ``=``, ``+``, ``-`` or ``@``
is a formula. Names and choices that start so (and are not numbers) get a leading apostrophe, the usual guard.
"""

from __future__ import annotations

import io
import re
import unicodedata
import zipfile
from datetime import UTC, datetime

import pandas as pd

from cgcnn.lessons.session import LessonBook
from cgcnn.training.transfer import is_scratch

COLUMNS = ("student", "step", "question", "answer", "answered_at", "run_id", "pretrained", "freeze", "strategy",
           "n_train", "seed", "split_seed", "status", "test_mae")  # fmt: skip


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _safe_cell(text: str) -> str:
    """A text a spreadsheet will not run as a formula."""
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        try:
            float(text)
        except ValueError:
            return "'" + text
    return text


def student_rows(book: LessonBook, session_id: str) -> pd.DataFrame:
    """Every student's answers and cells in the columns of :data:`COLUMNS` (the class's ``class.csv``).

    Rows come per student in sign-in order, then by step; ``step`` counts from 1 as the pages do.
    ``strategy`` is ``none`` for scratch and baseline cells (their ``freeze`` is 0), else the spec's.
    """
    lesson = book.state(session_id).lesson
    step_of = {step.id: number for number, step in enumerate(lesson.steps, start=1) if step.id}
    rows: list[dict] = []
    for answer in book.answer_rows(session_id):
        rows.append(
            {
                "student": answer.student,
                "step": step_of.get(answer.question_id),
                "question": answer.question_id,
                "answer": answer.answer,
                "answered_at": _iso(answer.answered_at),
            }
        )
    baselines = {b for e in lesson.experiments for b in e.baselines}
    for cell in book.all_cells(session_id):
        if not cell.student:
            continue
        spec = cell.spec
        plain = is_scratch(spec.pretrained) or spec.pretrained in baselines
        rows.append(
            {
                "student": cell.student,
                "step": step_of.get(cell.experiment_id),
                "run_id": cell.run_id or "",
                "pretrained": spec.pretrained,
                "freeze": 0 if plain else spec.freeze,
                "strategy": "none" if plain else getattr(spec, "strategy", "freeze"),
                "n_train": spec.n_train,
                "seed": spec.seed,
                "split_seed": spec.split_seed,
                "status": cell.status,
                "test_mae": cell.test_mae,
            }
        )
    order = {s.student: i for i, s in enumerate(book.students(session_id))}
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    if frame.empty:
        return frame
    frame["_order"] = frame["student"].map(order).fillna(len(order))
    frame = frame.sort_values(["_order", "student", "step"], kind="stable").drop(columns="_order")
    frame = frame.reset_index(drop=True)
    for column in ("student", "answer"):
        frame[column] = frame[column].map(lambda v: _safe_cell(v) if isinstance(v, str) else v)
    for column in ("step", "freeze", "n_train", "seed", "split_seed"):
        frame[column] = frame[column].astype("Int64")
    return frame


def safe_file_name(name: str, taken: set[str]) -> str:
    """A file name for a student's CSV: letters, digits, ``-``, ``_`` and ``.`` only, unique among ``taken``.

    Accents are dropped (``José`` → ``Jose``), anything else becomes ``_``; a name with nothing left is
    ``student``; a repeat gets ``-2``, ``-3``, ... (``taken`` is updated).
    """
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", plain).strip("._-")[:60] or "student"
    candidate, n = stem, 1
    while candidate.casefold() in taken:
        n += 1
        candidate = f"{stem}-{n}"
    taken.add(candidate.casefold())
    return candidate + ".csv"


def export_zip(book: LessonBook, session_id: str) -> bytes:
    """The class as a zip: ``class.csv`` (every row) and ``students/<name>.csv`` (each student's rows)."""
    frame = student_rows(book, session_id)
    buffer = io.BytesIO()
    taken: set[str] = set()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("class.csv", frame.to_csv(index=False))
        for seen in book.students(session_id):
            mine = frame[frame["student"] == _safe_cell(seen.student)]
            archive.writestr(f"students/{safe_file_name(seen.student, taken)}", mine.to_csv(index=False))
    return buffer.getvalue()
