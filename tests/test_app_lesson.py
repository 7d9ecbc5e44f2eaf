"""A lesson on the Class page (issue 22): the teacher's controls, the current step for students, the reveal.

AppTest drives the real page against a store of this module's own (no workers: queued runs stay queued, and a
test finishes them in the store where it needs an outcome). Sign-ins use server-issued tokens
(:func:`devtools.sign_in.token_of`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cgcnn.app import class_settings, lesson_view, teacher
from cgcnn.lessons.schema import parse_lesson
from cgcnn.lessons.session import LessonBook
from cgcnn.runs.store import RunStore
from devtools.homes import own_home
from devtools.sign_in import token_of

ROOT = Path(__file__).resolve().parent.parent
TINY = Path(__file__).parent / "data" / "lessons" / "tiny.toml"
PASSWORD = "chalk dust and overhead projectors"


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    """A store of each test's own: lessons, answers and the dealing start empty."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("CGCNN_WORKERS", "0")
    monkeypatch.setenv(teacher.PASSWORD_ENV, PASSWORD)
    yield from own_home(tmp_path)


def page(user: str, present: bool = False) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app_pages/7_Class.py"), default_timeout=120)
    at.query_params["user"] = user
    at.query_params["token"] = token_of(user)
    if present:
        at.query_params["present"] = "1"
    return at.run()


def teacher_page(present: bool = False) -> AppTest:
    at = page("teacher", present)
    at.text_input(key="teacher_password").set_value(PASSWORD)
    return next(b for b in at.button if b.label == "Unlock").click().run()


def healthy(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def start_tiny() -> tuple[LessonBook, str]:
    book = LessonBook(RunStore())
    return book, book.start(parse_lesson(TINY.read_text(), "tiny"), "teacher")


def texts(at: AppTest) -> list[str]:
    return [t.value for t in at.text]


def markdown(at: AppTest) -> str:
    return " ".join(m.value.replace("\\", "") for m in at.markdown)


def test_teacher_starts_a_shipped_lesson_moves_and_resets():
    at = teacher_page()
    healthy(at)
    assert at.selectbox(key="lesson_pick").options  # the shipped lessons
    at.selectbox(key="lesson_pick").set_value("does-freezing-help").run()
    at.button(key="lesson_start").click().run()
    healthy(at)
    book = LessonBook(RunStore())
    session_id = book.active()
    assert session_id and session_id in markdown(at)
    assert "Does freezing help?" in markdown(at)
    assert at.button(key="lesson_back").disabled
    at.button(key="lesson_next").click().run()
    healthy(at)
    assert book.state(session_id).step_index == 1
    assert any("Step 2 of" in c.value for c in at.caption)
    at.button(key="lesson_back").click().run()
    assert book.state(session_id).step_index == 0
    book.answer(session_id, "ann", "predict", "freeze 1 layer")
    at.button(key="lesson_reset").click().run()
    healthy(at)
    assert book.answers(session_id, "predict") == {}


def test_a_pinned_preset_is_named_and_the_lesson_wins():
    class_settings.save_settings(RunStore().home, class_settings.ClassSettings(pinned_preset="demo"))
    at = teacher_page()
    notes = " ".join(i.value.replace("\\", "") for i in at.info)
    assert "'demo'" in notes and "lesson wins" in notes


def test_a_bad_upload_names_step_key_and_line_without_a_traceback():
    bad = TINY.read_text().replace("epochs = 2", "epochs = 2\nlearning_rate = 3")
    at = teacher_page()
    at.file_uploader(key="lesson_upload").set_value([("broken.toml", bad.encode(), "application/toml")]).run()
    assert not at.exception
    message = at.error[0].value.replace("\\", "")
    line = bad.splitlines().index("learning_rate = 3") + 1
    assert "step 3" in message and "'learning_rate'" in message and f"line {line}," in message
    assert LessonBook(RunStore()).active() is None


def test_an_uploaded_lesson_starts():
    at = teacher_page()
    at.file_uploader(key="lesson_upload").set_value([("tiny.toml", TINY.read_bytes(), "application/toml")]).run()
    healthy(at)
    at.button(key="lesson_start").click().run()
    healthy(at)
    book = LessonBook(RunStore())
    assert book.state(book.active()).lesson.title == "A tiny lesson"


def test_a_student_answers_a_choice_then_changes_it():
    book, session_id = start_tiny()
    at = page("ann")
    healthy(at)
    question = "Which trains better on 20 crystals? **not bold** <b>not html</b>"
    assert question in texts(at)  # plain text, never Markdown
    assert "Step 1 of 5" in " ".join(c.value for c in at.caption)
    radio = at.radio(key=f"lesson_{session_id}_0_choice")
    radio.set_value("pretrained")
    form_submit(at).run()
    healthy(at)
    assert book.answers(session_id, "guess") == {"ann": "pretrained"}
    at.radio(key=f"lesson_{session_id}_0_choice").set_value("scratch")
    form_submit(at).run()
    assert book.answers(session_id, "guess") == {"ann": "scratch"}  # the second answer replaces the first


def form_submit(at: AppTest):
    return next(b for b in at.button if b.label == "Save my answer").click()


def test_a_bad_number_is_refused_with_the_reason_and_a_late_joiner_lands_on_the_step():
    book, session_id = start_tiny()
    book.go(session_id, 1)
    at = page("bob")  # joins late: lands on step 2
    healthy(at)
    assert "What test error (eV) do you expect?" in texts(at)
    at.text_input(key=f"lesson_{session_id}_1_number").set_value("zero point five")
    form_submit(at).run()
    assert not at.exception
    assert "is not a number" in at.error[0].value.replace("\\", "")
    assert book.answers(session_id, "mae") == {}
    at.text_input(key=f"lesson_{session_id}_1_number").set_value("0,5")
    form_submit(at).run()
    healthy(at)
    assert book.answers(session_id, "mae") == {"bob": "0.5"}


def test_students_get_dealt_cells_run_their_part_and_a_spare_student_is_told():
    book, session_id = start_tiny()
    pages = {name: page(name) for name in ("ann", "bob", "cy", "dee", "eve")}  # seen in this order
    book.go(session_id, 2)  # the teacher reaches the experiment: 4 cells for 5 students
    for at in pages.values():
        at.run()
        healthy(at)
    ann = pages["ann"]
    assert any(p.proto.text == "0 of 4 cells done" for p in ann.get("progress"))
    ann.button(key=f"lesson_{session_id}_2_run").click().run()
    healthy(ann)
    cells = book.cells_of(session_id, "grid", "ann")
    assert [c.index for c in cells] == [0] and cells[0].status == "queued"
    assert RunStore().get(cells[0].run_id).owner == "ann"
    table = ann.dataframe[0].value
    assert table["status"].tolist() == ["queued"]
    eve = pages["eve"]
    assert "No cell of this grid was dealt to you" in " ".join(i.value for i in eve.info)
    eve.button(key=f"lesson_{session_id}_2_extra").click().run()
    healthy(eve)
    extra = book.cells_of(session_id, "grid", "eve")
    assert len(extra) == 1 and extra[0].extra and extra[0].status == "queued"


def finish_cells(book: LessonBook, session_id: str, maes: dict[int, float]) -> None:
    """Queue the dealt cells and finish the runs of ``maes``' cells in the store (no training in a page test)."""
    store = RunStore()
    for cell in book.all_cells(session_id, "grid"):
        if cell.run_id is None:
            book.run_my_part(session_id, "grid", cell.student)
    for cell in book.all_cells(session_id, "grid"):
        if cell.index in maes:
            store.mark_running(cell.run_id)
            store.finish(cell.run_id, "done", test_mae=maes[cell.index], seconds=1.0)


def heatmap_cell(spec: dict, row: str, freeze: int) -> str:
    trace = spec["data"][0]
    return trace["text"][trace["y"].index(row)][trace["x"].index(f"freeze {freeze}")]


def test_the_reveal_shows_counts_never_names_beside_the_heatmap_filling_live():
    book, session_id = start_tiny()
    for name, guess in (("ann", "scratch"), ("bob", "pretrained"), ("cy", "pretrained")):
        book.seen(session_id, name)
        book.answer(session_id, name, "guess", guess)
    book.go(session_id, 2)
    finish_cells(book, session_id, {0: 0.9, 1: 0.7})  # split 0 done, split 1 still queued
    book.go(session_id, 3)
    student = page("ann")
    assert "Your teacher reveals the answer in a moment." in [i.value for i in student.info]
    at = teacher_page(present=True)
    healthy(at)
    at.button(key="lesson_reveal").click().run()
    healthy(at)
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    answers, heatmap = charts[0], charts[1]
    assert answers["data"][0]["y"] == [1, 2]  # scratch 1, pretrained 2: counts
    spec_text = json.dumps(answers)
    assert all(name not in spec_text for name in ("ann", "bob", "cy"))
    assert heatmap_cell(heatmap, "scratch", 0) == "0.900<br>1 run"
    assert min(heatmap["data"][0]["textfont"]["size"], answers["data"][0]["textfont"]["size"]) >= 16
    finish_cells(book, session_id, {2: 1.1, 3: 0.8})  # the second split finishes: the band appears
    at.run()
    heatmap = json.loads(at.get("plotly_chart")[1].proto.spec)
    assert heatmap_cell(heatmap, "scratch", 0) == "1.000 ± 1.271<br>2 splits"  # t(1) 12.71 x SE 0.1
    assert "95% band over splits" in heatmap["layout"]["title"]["text"]
    assert "4 of 4 cells done" in markdown(at)
    student.run()
    healthy(student)
    assert len(student.get("plotly_chart")) == 2  # the students see the reveal too


def test_a_band_over_seeds_of_one_split_is_labelled_so():
    import pandas as pd

    runs = pd.DataFrame(
        {"run_id": ["a", "b", "c"], "pretrained": ["none"] * 3, "freeze": [0] * 3, "n_train": [20] * 3,
         "split_seed": [0] * 3, "seed": [0, 1, 2], "test_mae": [1.0, 1.1, 0.9]}
    )  # fmt: skip
    shown = lesson_view.outcome("comparison", runs)
    assert "model seeds" in shown.note and "one split" in shown.note
    assert "band over model seeds (one split)" in shown.figure.layout.title.text
    assert lesson_view.outcome("table2", runs.iloc[:0]).figure is None


def test_presentation_mode_shows_the_question_projector_sized_and_literally():
    start_tiny()
    at = page("ann", present=True)
    healthy(at)
    heads = [h.value for h in at.subheader]
    assert any("not bold" in h and "\\*\\*" in h and "\\<b\\>" in h for h in heads)  # escaped: shows literally


def test_the_teacher_has_the_export_button():
    book, session_id = start_tiny()
    book.answer(session_id, "ann", "guess", "scratch")
    at = teacher_page()
    healthy(at)
    assert any(b.proto.label == "Export (zip)" for b in at.get("download_button"))


def test_an_explore_step_links_to_the_page_with_its_keys():
    from cgcnn.lessons.schema import shipped_lessons

    lesson = shipped_lessons()["is-attention-an-explanation"]
    book = LessonBook(RunStore())
    session_id = book.start(lesson, "teacher")
    book.go(session_id, 1)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)  # a page link needs the app's navigation
    at.query_params["user"] = "ann"
    at.query_params["token"] = token_of("ann")
    at.run()
    at.switch_page("app_pages/7_Class.py").run()
    healthy(at)
    link = at.get("page_link")[-1].proto
    assert link.page.endswith("Crystal_viewer") or "4_Crystal_viewer" in link.page
    assert "crystal=mp-856" in link.query_string and "remove=3" in link.query_string
    assert lesson.steps[1].prompt in texts(at)


def test_the_teacher_sees_who_runs_which_cell_but_not_on_the_projector():
    book, session_id = start_tiny()
    for name in ("ann", "bob"):
        book.seen(session_id, name)
    book.go(session_id, 2)
    at = teacher_page()
    healthy(at)
    frame = at.dataframe[0].value
    assert frame["student"].tolist() == ["ann", "bob", "ann", "bob"]  # cell i to student i mod 2
    projector = teacher_page(present=True)
    healthy(projector)
    shown = " ".join(str(e.value) for e in [*projector.markdown, *projector.text, *projector.caption])
    assert not projector.dataframe and "ann" not in shown and "bob" not in shown


def test_answer_counts_keep_every_option_and_drop_names():
    question = parse_lesson(TINY.read_text(), "tiny").question("guess")
    counts = lesson_view.answer_counts(question, {"ann": "pretrained", "bob": "pretrained"})
    assert counts.to_dict("list") == {"answer": ["scratch", "pretrained"], "students": [0, 2]}
    assert lesson_view.number_answers({"a": "0.5", "b": "1e-1"}) == [0.1, 0.5]
    assert lesson_view.progress_text(18, 30) == "18 of 30 cells done"


def test_the_outcome_table_says_what_each_band_is_over():
    import pandas as pd

    runs = pd.DataFrame(
        {"run_id": list("abcde"), "pretrained": ["none"] * 3 + ["formation-energy-per-atom"] * 2,
         "freeze": [0, 0, 0, 1, 1], "n_train": [20] * 5, "split_seed": [0, 1, 2, 0, 0], "seed": [0, 0, 0, 0, 1],
         "test_mae": [1.0, 1.2, 1.1, 0.8, None]}
    )  # fmt: skip
    shown = lesson_view.outcome("comparison", runs)
    table = lesson_view.points_table(shown.points).set_index("recipe")
    assert table.loc["scratch", "over"] == "3 splits" and table.loc["scratch", "MAE ± 95%"].startswith("1.100 ± ")
    assert table.loc["formation-energy-per-atom k=1", "over"] == "1 run"  # one finished run: no band yet
    assert table.loc["formation-energy-per-atom k=1", "MAE ± 95%"] == "0.800"
    assert "no band yet" in shown.note and "95% band over the splits" in shown.note
