"""A lesson session exported for grading (columns, one file per student), and the ``lesson`` CLI's exit codes."""

from __future__ import annotations

import io
import zipfile

import pandas as pd
import pytest
from test_lesson_sessions import Clock, lesson_text

from cgcnn.cli.main import main
from cgcnn.lessons.export import COLUMNS, export_zip, safe_file_name, student_rows
from cgcnn.lessons.schema import lessons_dir, parse_lesson
from cgcnn.lessons.session import LessonBook
from cgcnn.runs.store import RunStore


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CGCNN_HOME", str(tmp_path))
    return tmp_path


def a_class(store: RunStore) -> tuple[LessonBook, str, list[str]]:
    book = LessonBook(store, clock=Clock())
    session = book.start(parse_lesson(lesson_text("[0, 1, 2]"), "seeds"), teacher="t")
    for name in ("Zoë", "=HYPERLINK(1)", "bob"):
        book.seen(session, name)
        book.clock.now += 1
    book.answer(session, "Zoë", "guess", "0.25")
    book.answer(session, "bob", "pick", "high")
    book.answer(session, "=HYPERLINK(1)", "guess", "-0.5")
    book.go(session, 2)
    runs = book.run_my_part(session, "grid", "Zoë")
    store.update(runs[0], status="done", test_mae=0.42)
    return book, session, runs


def test_each_students_rows_hold_their_answers_and_their_cells(store):
    book, session, runs = a_class(store)
    frame = student_rows(book, session)
    assert tuple(frame.columns) == COLUMNS
    zoe = frame[frame.student == "Zoë"]
    assert list(zoe.step) == [1, 3]  # the question (step 1), then the cell (step 3)
    answer, cell = zoe.iloc[0], zoe.iloc[1]
    assert (answer.question, answer.answer) == ("guess", "0.25") and answer.answered_at.endswith("Z")
    assert pd.isna(answer.run_id)
    assert (cell.run_id, cell.pretrained, cell.freeze, cell.strategy) == (runs[0], "none", 0, "none")
    assert (cell.n_train, cell.seed, cell.split_seed, cell.status, cell.test_mae) == (20, 0, 0, "done", 0.42)
    assert list(frame.student.drop_duplicates()) == ["Zoë", "'=HYPERLINK(1)", "bob"]  # sign-in order, no formula
    assert frame[frame.student == "'=HYPERLINK(1)"].answer.dropna().tolist() == ["-0.5"]  # a number stays a number


def test_the_class_zip_holds_class_csv_and_one_safe_file_per_student(store):
    book, session, _ = a_class(store)
    archive = zipfile.ZipFile(io.BytesIO(export_zip(book, session)))
    assert sorted(archive.namelist()) == ["class.csv", "students/HYPERLINK_1.csv", "students/Zoe.csv",
                                          "students/bob.csv"]  # fmt: skip
    whole = pd.read_csv(archive.open("class.csv"))
    assert tuple(whole.columns) == COLUMNS and len(whole) == len(student_rows(book, session))
    zoe = pd.read_csv(archive.open("students/Zoe.csv"))
    assert set(zoe.student) == {"Zoë"} and zoe.test_mae.dropna().tolist() == [0.42]
    assert zoe.answer.dropna().tolist() == [0.25]


def test_safe_file_names_are_plain_and_unique():
    taken: set[str] = set()
    assert safe_file_name("../../etc/passwd", taken) == "etc_passwd.csv"
    assert safe_file_name("José Núñez", taken) == "Jose_Nunez.csv"
    assert safe_file_name("jose nunez", taken) == "jose_nunez-2.csv"
    assert safe_file_name("张伟", taken) == "student.csv"


def test_lesson_check_exits_2_with_the_step_key_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    text = lesson_text().replace("epochs = 1", "epochs = 1\nepoks = 2")
    bad.write_text(text)
    line = text.splitlines().index("epoks = 2") + 1
    assert main(["lesson", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"line {line}, step 3 (id 'grid'), key 'epoks'" in err and "did you mean 'epochs'" in err
    good = tmp_path / "good.toml"
    good.write_text(lesson_text())
    assert main(["lesson", "check", str(good)]) == 0
    assert "grid: 7 cells" in capsys.readouterr().out
    assert main(["lesson", "check", str(tmp_path / "missing.toml")]) == 2
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe\x00")
    assert main(["lesson", "check", str(tmp_path / "binary.toml")]) == 2


def test_lesson_list_shows_the_shipped_lessons(capsys):
    code = main(["lesson", "list"])
    out = capsys.readouterr().out
    for path in lessons_dir().glob("*.toml"):
        assert path.stem in out or code == 2  # a grid this version cannot build yet is an error, named
    assert "Does freezing help?" in out and "table2: 30 cells, about 6 min 33 s" in out


def test_lesson_export_writes_the_zip_and_refuses_an_unknown_session(home, capsys):
    _, session, _ = a_class(RunStore())
    out = home / "class.zip"
    assert main(["lesson", "export", session, "--out", str(out)]) == 0
    assert "class.csv" in zipfile.ZipFile(out).namelist()
    assert main(["lesson", "sessions"]) == 0 and session in capsys.readouterr().out
    assert main(["lesson", "export", "nope", "--out", str(out)]) == 2
    assert "no lesson session 'nope'" in capsys.readouterr().err
    assert main(["lesson", "export", session, "--out", str(home / "no" / "dir" / "x.zip")]) == 2
