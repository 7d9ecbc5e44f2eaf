"""Streamlit glue of a lesson on the Class page: the teacher's controls, and the current step for everyone.

Widgets and layout only. What a step shows is decided in :mod:`cgcnn.app.lesson_view`; the lesson session (step,
answers, dealing) lives in the run store (:mod:`cgcnn.lessons.session`), so every session of the server, and a
restarted server, shows the same step. The step polls (``app_ui.poll_seconds``): when the teacher advances, a
student's page follows within one poll, and a student who joins late lands on the current step.

Texts of a lesson (questions, prompts) are shown as plain text (``st.text``); in presentation mode as a subheader
whose text is escaped (:func:`cgcnn.app.plain.markdown`), so it is projector-sized and still shows literally.
"""

from __future__ import annotations

import streamlit as st

import app_ui
from cgcnn.app import class_settings, classroom, lesson_view, plain
from cgcnn.errors import CGCNNError


def book():
    """The class's lesson book (holds only the store: cheap to make per run)."""
    from cgcnn.lessons.session import LessonBook

    return LessonBook(app_ui.store())


def shipped() -> dict:
    """The shipped lessons, checked against this server (the library parses them once per version of the files)."""
    from cgcnn.lessons.schema import shipped_lessons

    return shipped_lessons()


def say(text: str) -> None:
    """A lesson's text as plain text; projector-sized in presentation mode."""
    if not text:
        return
    if app_ui.presenting():
        st.subheader(plain.markdown(text), anchor=False)
    else:
        st.text(text)


def tell(key: str, kind: str, text: str) -> None:
    """Keep a message for this step (``success``, ``error``, ``warning``, ``info``) until the next one replaces it.

    The step polls: a message drawn once would vanish at the next poll, a few seconds after the click.
    """
    st.session_state[f"{key}_told"] = (kind, text)


def told(key: str) -> None:
    """Show the step's kept message, if any."""
    kind, text = st.session_state.get(f"{key}_told", ("", ""))
    if kind:
        getattr(st, kind)(plain.markdown(text))


def note(text: str) -> None:
    """A note under a figure: a caption on a screen, body text on a projector."""
    (st.markdown if app_ui.presenting() else st.caption)(plain.markdown(text))


# --------------------------------------------------------------------------------------------------- teacher


def start_panel(store, teacher_name: str) -> None:
    """Start a shipped lesson or an uploaded TOML (checked here: an error names the step, key and line)."""
    from cgcnn.lessons.schema import parse_lesson

    lessons = shipped()
    names = list(lessons)
    picked = st.selectbox("Shipped lessons", names, format_func=lambda n: lessons[n].title, key="lesson_pick")
    lesson = lessons.get(picked)
    uploaded = st.file_uploader("Or upload a lesson (TOML)", type=["toml"], key="lesson_upload")
    if uploaded is not None:
        try:
            text = uploaded.getvalue().decode("utf-8")
        except UnicodeDecodeError:
            st.error(plain.markdown(f"{uploaded.name}: not a text file (UTF-8)"))
            return
        try:
            lesson = parse_lesson(text, uploaded.name.rsplit(".", 1)[0])
        except CGCNNError as exc:
            st.error(plain.markdown(f"This lesson cannot be used: {exc}"))
            return
        st.success(plain.markdown(f"{uploaded.name}: checked, {len(lesson.steps)} steps (it replaces the pick above)."))
    if lesson is None:
        st.caption("No shipped lesson found (lessons/*.toml).")
        return
    st.text(lesson.description.strip())
    pinned = lesson_view.preset_note(class_settings.load_settings(store.home).pinned_preset)
    if pinned:
        st.info(plain.markdown(pinned))
    if st.button(f"Start the lesson: {plain.markdown(lesson.title)}", key="lesson_start", type="primary"):
        session_id = book().start(lesson, teacher_name or "teacher")
        st.toast(
            plain.markdown(
                f"Lesson session {session_id} started" + (" (the lesson wins over the pin)" if pinned else "")
            )
        )
        st.rerun()


def teacher_panel(store, teacher_name: str) -> None:
    """The lesson controls: start, the session id, back / next, reveal, reset, export; then the live step.

    In a boundary of its own: a refused move (a grid this version cannot run) is a message above the class panel,
    which stays.
    """
    st.subheader("Lesson")
    with app_ui.boundary("the lesson controls"):
        lesson_controls(store, teacher_name)


def lesson_controls(store, teacher_name: str) -> None:
    """The body of :func:`teacher_panel`."""
    b = book()
    session_id = b.active()
    with st.expander("Start a lesson" if session_id is None else "Start another lesson", expanded=session_id is None):
        start_panel(store, teacher_name)
    if session_id is None:
        st.caption("No lesson is running: the students' Class page shows nothing of a lesson.")
        return
    state = b.state(session_id)
    lesson, index = state.lesson, state.step_index
    st.markdown(f"**{plain.markdown(lesson.title)}** · lesson session **{plain.markdown(session_id)}**")
    step = lesson.steps[index]
    back, forward, reveal, reset, export = st.columns(5)
    if back.button("Back", key="lesson_back", disabled=index == 0, width="stretch"):
        b.go(session_id, index - 1)
        st.rerun()
    if forward.button("Next step", key="lesson_next", disabled=index >= len(lesson.steps) - 1, width="stretch"):
        b.go(session_id, index + 1)
        st.rerun()
    is_reveal = step.kind == "reveal"
    label = "Hide the answer" if is_reveal and state.revealed else "Reveal"
    if reveal.button(label, key="lesson_reveal", disabled=not is_reveal, width="stretch"):
        b.reveal(session_id, on=not state.revealed)
        st.rerun()
    with reset.popover("Reset", width="stretch"):
        st.caption("Clears every answer and the dealing of the grid; the runs stay.")
        if st.button("Reset the lesson", key="lesson_reset"):
            b.reset(session_id)
            st.toast("answers and dealing cleared (runs kept)")
            st.rerun()
    # Built with the page (a few queries) and no rerun on click: with a deferred file and a rerun on click, Chromium
    # saw the download cancelled (1 of the 2 test runs that got that far).
    export.download_button(
        "Export (zip)", export_zip(b, session_id), f"lesson-{session_id}.zip", "application/zip",
        key="lesson_export", width="stretch", on_click="ignore",
    )  # fmt: skip
    live_step(teacher=True)


def export_zip(b, session_id: str) -> bytes:
    """The class zip of the session (class.csv and students/<name>.csv)."""
    from cgcnn.lessons.export import export_zip as make

    return make(b, session_id)


# --------------------------------------------------------------------------------------------------- the step


def student_panel() -> None:
    """The current step of the running lesson, for a student; it polls, so a lesson started later shows up too."""
    live_step(teacher=False)


def live_step(teacher: bool) -> None:
    """The current step, polling: the teacher's next step, new answers and finished runs show up by themselves."""

    @st.fragment(run_every=app_ui.poll_seconds())
    def current_step() -> None:
        with app_ui.boundary("the lesson"), st.container(key="lesson_step"):
            app_ui.mark_active()
            show_current_step(teacher)

    current_step()


def show_current_step(teacher: bool) -> None:
    """The step the class is on (a late joiner lands here too)."""
    b = book()
    session_id = b.active()
    if session_id is None:
        if teacher:
            st.caption("The lesson has ended.")
        return
    state = b.state(session_id)
    me = "" if teacher else app_ui.identity().name
    if me:
        b.seen(session_id, me)
    step = state.lesson.steps[state.step_index]
    if not teacher:
        st.subheader(f"Lesson: {plain.markdown(state.lesson.title)}", anchor=False)
    note(lesson_view.step_heading(state.lesson, state.step_index))
    key = f"lesson_{session_id}_{state.step_index}"
    if step.kind == "question":
        question_step(b, session_id, step, me, teacher, key)
    elif step.kind == "experiment":
        experiment_step(b, session_id, step, me, teacher, key)
    elif step.kind == "explore":
        explore_step(step)
    else:
        reveal_step(b, session_id, state, step, teacher)


def question_step(b, session_id: str, question, me: str, teacher: bool, key: str) -> None:
    """The question; a student's answer (a second one replaces the first; a bad number is refused with why)."""
    from cgcnn.lessons.schema import LessonError

    say(question.text)
    answers = b.answers(session_id, question.id)
    if question.answer_type == "choice" and (teacher or app_ui.presenting()):
        st.text("\n".join(f"· {o}" for o in question.options))
    note(lesson_view.answered_text(answers))
    if teacher:
        return
    if not me:
        st.info("Enter your display name in the sidebar to answer.")
        return
    mine = answers.get(me)
    field = f"{key}_{question.answer_type}"
    if mine is not None and field not in st.session_state:  # a reload, or a second tab: the stored answer
        st.session_state[field] = mine
    with st.form(f"{key}_form"):
        if question.answer_type == "choice":
            raw = st.radio("Your answer", question.options, key=field, index=None)
        else:
            unit = f" ({question.unit})" if question.unit else ""
            raw = st.text_input(f"Your answer{unit}", key=field)
        sent = st.form_submit_button("Save my answer")  # one label: a changing one is a new button
    if sent:
        if raw is None or not str(raw).strip():
            tell(key, "warning", "Choose or write an answer first.")
        else:
            try:
                stored = b.answer(session_id, me, question.id, str(raw))
            except LessonError as exc:
                tell(key, "error", f"Not saved: {getattr(exc, 'reason', None) or exc}")
            else:
                replaced = f" (it replaces {mine})" if mine not in (None, stored) else ""
                tell(key, "success", f"Saved: {stored}{replaced}")
    told(key)
    if not sent and st.session_state.get(f"{key}_told", ("",))[0] != "success" and mine is not None:
        st.caption(plain.markdown(f"Your answer: {mine}"))


def run_part(b, session_id: str, experiment_id: str, me: str, owner: str | None) -> list[str]:
    """Queue the student's cells, and make sure this server's workers drain the queue (as a launch does)."""
    queued = b.run_my_part(session_id, experiment_id, me, owner)
    classroom.start_runner(b.store)
    return queued


def experiment_step(b, session_id: str, experiment, me: str, teacher: bool, key: str) -> None:
    """The class's progress; a student's dealt cells and "Run my part" (or an extra seed when none was dealt)."""
    from cgcnn.lessons.session import WAITING

    say(experiment.text)
    done, total = b.progress(session_id, experiment.id)
    progress = lesson_view.progress_text(done, total)
    st.progress(done / total if total else 0.0, text=None if app_ui.presenting() else progress)
    if app_ui.presenting():  # the bar's own text is 14 px
        note(progress)
    if teacher:
        if not app_ui.presenting():  # names stay off the projector
            with st.expander("Who runs which cell"):
                st.dataframe(lesson_view.cells_frame(b.all_cells(session_id, experiment.id), with_student=True),
                             hide_index=True, width="stretch")  # fmt: skip
        return
    if not me:
        st.info("Enter your display name in the sidebar to get your part of the grid.")
        return
    owner = app_ui.identity().token_hash or None
    cells = b.cells_of(session_id, experiment.id, me)
    if any(c.status == WAITING for c in cells):  # over the per-person limit earlier: queue as slots free
        run_part(b, session_id, experiment.id, me, owner)
        cells = b.cells_of(session_id, experiment.id, me)
    if not cells:
        st.info(
            "No cell of this grid was dealt to you (the class has more students than cells, or you joined after "
            "the deal). You may run an extra seed: it adds to the class's bands."
        )
        if st.button("Run an extra seed", key=f"{key}_extra"):
            b.extra_cell(session_id, experiment.id, me)
            queued = run_part(b, session_id, experiment.id, me, owner)
            tell(key, "success", f"Queued {len(queued)} run(s): {', '.join(queued)}" if queued else "Dealt.")
            cells = b.cells_of(session_id, experiment.id, me)
        if not cells:
            return
    elif st.button("Run my part", key=f"{key}_run", type="primary"):
        queued = run_part(b, session_id, experiment.id, me, owner)
        if queued:
            tell(key, "success", f"Queued {len(queued)} run(s): {', '.join(queued)}")
        else:
            tell(key, "info", "Nothing more to queue now: your cells are queued, running or done, or wait for a slot.")
        cells = b.cells_of(session_id, experiment.id, me)
    told(key)
    st.markdown(f"**Your part: {len(cells)} cell(s)**")
    app_ui.table(lesson_view.cells_frame(cells))


def explore_step(step) -> None:
    """A link to the page with the step's address keys (on a projector: the address, to read), and the prompt."""
    say(step.prompt)
    page, params = lesson_view.explore_link(step)
    if app_ui.presenting():
        note(f"On your screen, open this page of the app: {lesson_view.explore_url(step)}")
    else:
        st.page_link(page, label="Open the page with the lesson's settings", query_params=params)


def reveal_step(b, session_id: str, state, step, teacher: bool) -> None:
    """The class's answers (counts only) beside the experiment's outcome, filling as runs finish."""
    say(step.text)
    if not state.revealed:
        if teacher:
            st.info("Not revealed yet: Reveal shows the class's answers and the outcome, here and on every screen.")
        else:
            st.info("Your teacher reveals the answer in a moment.")
        return
    look = app_ui.style()
    panels = []
    if step.question:
        panels.append("answers")
    if step.experiment:
        panels.append("outcome")
    columns = [st.container() for _ in panels] if look.presenting or len(panels) < 2 else st.columns([2, 3])
    for where, what in zip(columns, panels, strict=True):
        with where:
            if what == "answers":
                question = state.lesson.question(step.question)
                answers = b.answers(session_id, question.id)
                if not look.presenting:
                    st.text(question.text)
                app_ui.chart(lesson_view.answers_figure(question, answers, look.heatmap_px), key=f"{session_id}_ans")
            else:
                experiment = state.lesson.experiment(step.experiment)
                runs = b.experiment_runs(session_id, experiment.id)
                shown = lesson_view.outcome(
                    step.view, runs, experiment.target, look.heatmap_px, look.legend_row_px
                )  # fmt: skip
                done, total = b.progress(session_id, experiment.id)
                note(lesson_view.progress_text(done, total))
                if shown.figure is not None:
                    app_ui.chart(shown.figure, key=f"{session_id}_outcome")
                note(shown.note)
                if not shown.points.empty:
                    app_ui.table(lesson_view.points_table(shown.points))
