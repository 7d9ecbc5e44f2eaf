"""A whole lesson in real browsers (issue 22): a teacher and three students on one server at once.

The teacher uploads a tiny lesson (4 cells of 2 epochs on 20/10/10 crystals) and starts it; the students answer a
choice and a number, run their dealt cells (trained by the server's workers), see the reveal, and the teacher's
export holds each student's answers and MAEs. A new ``RunStore`` on the same file then shows the same step and
answers (a restarted server resumes the lesson). Skips without headless Chromium or Playwright.
"""

from __future__ import annotations

import csv
import io
import re
import time
import zipfile
from pathlib import Path

import pytest
from browser_support import chromium, wait_until_idle

from devtools.sign_in import token_of

pytestmark = pytest.mark.browser

PASSWORD = "chalk and blackboard"
TINY = Path(__file__).parent / "data" / "lessons" / "tiny.toml"
STUDENTS = {"ann": ("scratch", "0.4"), "bob": ("pretrained", "0,55"), "cy": ("pretrained", "0.7")}


@pytest.fixture(scope="module")
def browser():
    yield from chromium()


@pytest.fixture(scope="module")
def server(tmp_path_factory, browser):
    """The app with a teacher password and two workers (the lesson's four cells train for real)."""
    from devtools.app_server import AppServer

    home = tmp_path_factory.mktemp("lesson_home")
    env = {"CGCNN_WORKERS": "2", "CGCNN_TEACHER_PASSWORD": PASSWORD}
    with AppServer(home, env=env) as app:
        yield app


def open_class(context, server, user: str):
    page = context.new_page()
    token = token_of(user, str(server.home))
    page.goto(f"{server.url}/Class?user={user}&token={token}", wait_until="domcontentloaded")
    wait_until_idle(page, 90.0)
    return page


def settle(page) -> None:
    time.sleep(1.0)
    wait_until_idle(page, 90.0)


def click_until(page, button: str, done, wait_s: float = 45.0, tries: int = 3) -> None:
    """Click ``button`` until ``done()`` holds (checked in the store, not on the page).

    Why more than one click: on a machine loaded far past its cores, a click that lands while the page's polling
    fragment reruns was not acted on (2 of 10 runs at a load average of 17 on 2 cores), and a person clicks again.
    """
    for _ in range(tries):
        page.get_by_role("button", name=button).click(timeout=60_000)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if done():
                return
            time.sleep(0.5)
    raise AssertionError(f"{button!r} clicked {tries} times without effect")


def no_errors(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator('[data-testid="stAlertContentError"]').all_inner_texts() == []


def test_a_whole_lesson_teacher_and_three_students(browser, server, tmp_path):
    from cgcnn.lessons.session import LessonBook
    from cgcnn.runs.store import RunStore

    contexts = {name: browser.new_context(viewport={"width": 1300, "height": 1000}) for name in ["t", *STUDENTS]}
    try:
        teacher = open_class(contexts["t"], server, "teacher")
        teacher.get_by_label("Teacher password").fill(PASSWORD)
        click_until(teacher, "Unlock", lambda: teacher.locator("input[type=file]").count() > 0)
        settle(teacher)
        teacher.locator("input[type=file]").set_input_files(str(TINY), timeout=90_000)
        teacher.get_by_role("button", name="Start the lesson: A tiny lesson").wait_for(timeout=60_000)
        book = LessonBook(RunStore(server.home / "runs.sqlite"))
        click_until(teacher, "Start the lesson: A tiny lesson", lambda: book.active() is not None)
        settle(teacher)
        session_id = book.active()
        teacher.get_by_text(session_id).first.wait_for(timeout=30_000)  # the session id is shown

        students = {name: open_class(contexts[name], server, name) for name in STUDENTS}
        for name, page in students.items():  # step 1: a choice, answered twice (the second replaces the first)
            page.get_by_text("Which trains better on 20 crystals? **not bold** <b>not html</b>").wait_for(
                timeout=60_000
            )
            for choice in ("pretrained" if STUDENTS[name][0] == "scratch" else "scratch", STUDENTS[name][0]):
                page.locator('[data-testid="stRadio"]').get_by_text(choice, exact=True).click()
                saved = lambda name=name, choice=choice: book.answers(session_id, "guess").get(name) == choice  # noqa: E731
                click_until(page, "Save my answer", saved)
                page.get_by_text(re.compile(f"^Saved: {re.escape(choice)}")).wait_for(timeout=30_000)
            no_errors(page)
        assert book.answers(session_id, "guess") == {n: a for n, (a, _) in STUDENTS.items()}

        click_until(teacher, "Next step", lambda: book.state(session_id).step_index == 1)  # a number; all follow
        settle(teacher)
        for name, page in students.items():
            box = page.get_by_label("Your answer (eV)")
            box.wait_for(timeout=60_000)
            box.fill("about half")
            refused = lambda page=page: page.get_by_text("is not a number").count() > 0  # noqa: E731
            click_until(page, "Save my answer", refused)  # refused, with the reason
            box.fill(STUDENTS[name][1])
            stored = str(float(STUDENTS[name][1].replace(",", ".")))
            saved = lambda name=name, stored=stored: book.answers(session_id, "mae").get(name) == stored  # noqa: E731
            click_until(page, "Save my answer", saved)
            page.get_by_text(re.compile(f"^Saved: {re.escape(stored)}")).wait_for(timeout=30_000)
        assert book.answers(session_id, "mae") == {"ann": "0.4", "bob": "0.55", "cy": "0.7"}

        click_until(teacher, "Next step", lambda: book.state(session_id).step_index == 2)  # the grid, dealt
        settle(teacher)
        dealt = {}
        for name, page in students.items():
            mine = lambda name=name: all(c.run_id for c in book.cells_of(session_id, "grid", name))  # noqa: E731
            click_until(page, "Run my part", mine)
            page.get_by_text(re.compile(r"^Queued \d+ run")).wait_for(timeout=30_000)
            no_errors(page)
            dealt[name] = [c.index for c in book.cells_of(session_id, "grid", name)]
        assert dealt == {"ann": [0, 3], "bob": [1], "cy": [2]}  # cell i to student i mod 3, in sign-in order
        teacher.get_by_text("4 of 4 cells done").wait_for(timeout=400_000)  # trained by the workers, polled

        click_until(teacher, "Next step", lambda: book.state(session_id).step_index == 3)  # the reveal
        settle(teacher)
        click_until(teacher, "Reveal", lambda: book.state(session_id).revealed)
        settle(teacher)
        for page in [teacher, *students.values()]:
            page.wait_for_function(
                "document.querySelectorAll('[data-testid=\"stPlotlyChart\"] .main-svg').length >= 2", timeout=60_000
            )
            no_errors(page)
        assert teacher.get_by_text("2 splits").count() >= 1  # the heatmap's cells: mean ± band over the splits
        teacher.get_by_text("The class's guesses beside its grid.").scroll_into_view_if_needed()
        shoot(teacher, "lesson_reveal")

        with teacher.expect_download(timeout=60_000) as download:
            teacher.get_by_role("button", name="Export (zip)").click()
        archive = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes()))
        rows = list(csv.DictReader(io.StringIO(archive.read("class.csv").decode())))
        for name, (guess, number) in STUDENTS.items():
            mine = [r for r in rows if r["student"] == name]
            assert {r["answer"] for r in mine if r["question"] == "guess"} == {guess}
            assert {r["answer"] for r in mine if r["question"] == "mae"} == {str(float(number.replace(",", ".")))}
            maes = [float(r["test_mae"]) for r in mine if r["run_id"]]
            assert len(maes) == len(dealt[name]) and all(m > 0 for m in maes)
            assert f"students/{name}.csv" in archive.namelist()

        resumed = LessonBook(RunStore(server.home / "runs.sqlite"))  # what a restarted server reads
        assert resumed.active() == session_id
        assert resumed.state(session_id).step_index == 3 and resumed.state(session_id).revealed
        assert resumed.answers(session_id, "guess") == {n: a for n, (a, _) in STUDENTS.items()}
        assert resumed.answers(session_id, "mae") == {"ann": "0.4", "bob": "0.55", "cy": "0.7"}
    except BaseException:
        for name, context in contexts.items():  # what each browser showed, for the failure's report
            for k, page in enumerate(context.pages):
                page.screenshot(path=str(tmp_path / f"failed_{name}_{k}.png"), full_page=True)
        print(f"screenshots of the failure: {tmp_path}")
        raise
    finally:
        for context in contexts.values():
            context.close()


def shoot(page, name: str) -> None:
    """Keep a screenshot when ``CGCNN_SCREENSHOT_DIR`` is set (the ones in ``docs/`` come from here)."""
    import os

    folder = os.environ.get("CGCNN_SCREENSHOT_DIR")
    if folder:
        time.sleep(2.0)  # charts draw after the script has finished
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


#: Text in the lesson's step (``st.container(key="lesson_step")``) smaller than 16 px: [tag, px, text].
SMALL_TEXT_JS = r"""
() => Array.from(document.querySelectorAll(
    '.st-key-lesson_step p, .st-key-lesson_step [data-testid="stText"], .st-key-lesson_step h3'))
  .filter(e => e.innerText.trim() && parseFloat(getComputedStyle(e).fontSize) < 16)
  .map(e => [e.tagName, getComputedStyle(e).fontSize, e.innerText.slice(0, 40)])
"""


def test_every_step_of_the_shipped_lessons_renders_at_projector_size(browser, server):
    """Each step of each shipped lesson on the teacher's projector (presentation mode): no error, text >= 16 px."""
    from cgcnn.lessons.schema import LessonError, shipped_lessons
    from cgcnn.lessons.session import LessonBook
    from cgcnn.runs.store import RunStore

    book = LessonBook(RunStore(server.home / "runs.sqlite"))
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = open_class(context, server, "projector")
        page.get_by_label("Teacher password").fill(PASSWORD)
        page.get_by_role("button", name="Unlock").click()
        settle(page)
        page.get_by_role("button", name="Clear the queue").wait_for(timeout=60_000)
        waiting = []  # lessons whose grid needs what this version cannot run yet (issue 19's baselines, sizes)
        for name, lesson in shipped_lessons().items():
            try:
                [experiment.specs() for experiment in lesson.experiments]
            except LessonError as exc:
                waiting.append(f"{name}: {exc}")
                continue
            session_id = book.start(lesson, "teacher")
            for index, step in enumerate(lesson.steps):
                book.go(session_id, index)
                if step.kind == "question":
                    book.answer(session_id, "dana", step.id, step.options[0] if step.options else "0.5")
                if step.kind == "reveal":
                    book.reveal(session_id)
                page.goto(f"{server.url}/Class?present=1", wait_until="domcontentloaded")
                wait_until_idle(page, 90.0)
                page.get_by_text(f"Step {index + 1} of {len(lesson.steps)}").wait_for(timeout=60_000)
                no_errors(page)
                if step.kind == "reveal" and step.question:
                    page.wait_for_function(
                        "document.querySelectorAll('[data-testid=\"stPlotlyChart\"] .main-svg').length >= 1",
                        timeout=60_000,
                    )
                assert page.evaluate(SMALL_TEXT_JS) == [], (name, index + 1)
                shoot(page, f"lesson_{name}_{index + 1}")
    finally:
        context.close()
    if waiting:
        pytest.skip("; ".join(waiting))
