"""Class: the running lesson's current step for everyone; a password unlocks the teacher's panel.

The teacher's panel: the lesson controls (start, next / back, reveal, reset, export), anyone's runs, the queue,
the worker count and a pinned protocol. The lesson's widgets are in ``app_lesson.py``.
"""

from __future__ import annotations

import streamlit as st

import app_lesson
import app_ui
from cgcnn.app import class_settings, classroom, identity, plain, run_actions, tables, teacher

me = app_ui.setup("Class (lesson, teacher)")


def unlock() -> None:
    st.markdown("The teacher's panel: cancel or delete anyone's run, clear the queue, set the workers, pin a protocol.")
    with st.form("teacher_login"):
        typed = st.text_input("Teacher password", type="password", key="teacher_password")
        if st.form_submit_button("Unlock"):
            refused = app_ui.enter_teacher_mode(typed)
            if refused is None:
                st.rerun()
            else:
                st.error(refused)


def runs_panel(store) -> None:
    """Every run of the class, polling (a projected overview stays live); picks are run ids, never labels."""
    st.subheader("Every run of the class")

    @st.fragment(run_every=app_ui.poll_seconds())
    def live_runs() -> None:
        with app_ui.boundary("the class's runs"):
            app_ui.mark_active()
            workers = classroom.worker_count(store.home)
            records = store.list_runs(include_hidden=True)
            table_slot = st.container()  # drawn last, so it shows what the clicks below did
            labels = run_actions.pick_labels(records)
            picked = st.multiselect("Runs", list(labels), format_func=run_actions.label_of(labels), key="class_runs")
            chosen = run_actions.known_ids(picked, labels)
            a, b, c = st.columns(3)
            messages = []
            if a.button("Cancel selected", key="class_cancel", disabled=not chosen):
                cancel = lambda run_id: teacher.cancel_runs(store, [run_id], is_teacher=True)[run_id]  # noqa: E731
                messages = run_actions.cancel_each(store, chosen, cancel)
            if b.button("Delete selected", key="class_delete", disabled=not chosen):
                delete = lambda run_id: teacher.delete_runs(store, [run_id], is_teacher=True)[run_id]  # noqa: E731
                messages = run_actions.delete_each(store, chosen, delete)
            if c.button("Clear the queue", key="class_clear"):
                cleared = teacher.clear_queue(store, is_teacher=True)
                messages = [f"cancelled {len(cleared)} queued run(s)" if cleared else "the queue was already empty"]
            for message in messages:
                st.toast(plain.markdown(message))
            if messages:
                records = store.list_runs(include_hidden=True)
            views = tables.run_views(store, records, etas=lambda ids: app_ui.queue_etas(tuple(ids), workers))
            counts = store.counts()
            table_slot.caption(
                f"Queue: {counts['queued']} queued, {counts['running']} running · workers: {workers} · "
                f"{len(records)} run(s)"
            )
            app_ui.runs_table(
                tables.compact_frame(views, with_owner=True),
                height=min(38 + 35 * len(records), 460),
                container=table_slot,
            )

    live_runs()


def class_panel(store) -> None:
    settings = class_settings.load_settings(store.home)
    left, right = st.columns(2)
    with left:
        workers = st.number_input(
            "Workers (runs training at once)", 1, 64, classroom.worker_count(store.home) or 1, key="class_workers"
        )
        if st.button("Set workers", key="class_set_workers"):
            teacher.set_workers(store, int(workers), is_teacher=True)
            st.toast(f"{int(workers)} worker(s)")
        runner = classroom.start_runner(store)  # applies the teacher's count
        if runner is not None:
            pool = runner.pool_status()
            st.caption(f"Workers now: {pool['workers']} started, {pool['busy']} training, {pool['ready']} ready.")
        else:
            st.caption("This server only queues runs (CGCNN_WORKERS=0): another process drains the queue.")
    with right:
        options = ["(not pinned)", *class_settings.PRESETS]
        current = settings.pinned_preset or "(not pinned)"
        choice = st.selectbox(
            "Pin the class to one protocol",
            options,
            index=options.index(current),
            format_func=lambda k: (
                k
                if k not in class_settings.PRESETS
                else class_settings.PRESETS[k].title + f" ({class_settings.PRESETS[k].describe()})"
            ),
            key="class_preset",
        )
        if st.button("Apply", key="class_pin"):
            teacher.pin_preset(store, None if choice == "(not pinned)" else choice, is_teacher=True)
            st.toast("protocol pinned" if choice != "(not pinned)" else "protocol unpinned")
    names_panel(store)
    if st.button("Leave teacher mode", key="class_lock"):
        app_ui.leave_teacher_mode()
        st.rerun()


def names_panel(store) -> None:
    """Release a display name: a student who lost her cookie (or a squatted name) can claim it again."""
    with st.form("class_release"):
        name = st.text_input("Release a display name", key="class_release_name",
                             help="Its runs stay; the next browser to sign in with the name claims it.")  # fmt: skip
        if st.form_submit_button("Release"):
            released = identity.release_name(store, name, is_teacher=True)
            st.toast(f"{name!r} released" if released else f"nobody holds {name!r}")


with app_ui.boundary("the class page"):
    store = app_ui.store()
    if not app_ui.is_teacher():
        app_lesson.student_panel()
        unlock()
    else:
        class_panel(store)
        runs_panel(store)
        app_lesson.teacher_panel(store, me)
    app_ui.teacher_cookie()
