"""Fine-tune: queue runs (model × freeze depth × seed), follow them in one compact live table, open one run."""

from __future__ import annotations

import streamlit as st

import app_ui
from cgcnn import zoo
from cgcnn.analysis import figures
from cgcnn.app import class_settings, classroom, identity, launch, plain, run_actions, tables, uploads
from cgcnn.data.datasets import TARGET_UNITS
from cgcnn.errors import CGCNNError
from cgcnn.names import name_key
from cgcnn.runs.estimates import format_duration
from cgcnn.runs.store import RunNotFound
from cgcnn.settings import current_limits
from cgcnn.training.protocol import STUDY, RunProtocol
from cgcnn.training.strategies import EXPLANATIONS, STRATEGIES
from cgcnn.training.transfer import SCRATCH

user = app_ui.setup("Fine-tune")
is_teacher = app_ui.is_teacher()


def limits_caption(n_crystals: int) -> None:
    limits = current_limits()
    crystals = limits.max_crystals or n_crystals
    st.caption(
        f"Limits on this server: {limits.max_queued_per_user} queued or running runs per person · "
        f"{limits.max_epochs} epochs · {crystals:,} crystals per run · "
        f"{format_duration(limits.max_run_seconds)} per run."
    )


def strategy_choice() -> tuple[str, dict]:
    """The fine-tuning strategy (one line on each) and its one setting; drawn in its own row of the form."""
    left, right = st.columns([3, 2])
    strategy = left.radio(
        "Fine-tuning strategy",
        STRATEGIES,
        captions=[EXPLANATIONS[s] for s in STRATEGIES],
        key="ft_strategy",
        help="How the pretrained layers learn. Scratch models train every layer whatever is chosen here.",
    )
    setting = launch.strategy_setting(strategy)
    if setting is None:
        right.caption("The freeze depths above are this strategy's setting.")
        return strategy, {}
    value = right.number_input(
        setting.label,
        min_value=setting.min_value,
        max_value=setting.max_value,
        value=setting.default,
        step=setting.step,
        format=setting.format,
        help=setting.help,
        key=f"ft_{setting.field}",
    )
    return strategy, {setting.field: value}


def launch_form(store) -> None:
    data = app_ui.dataset()
    preset = class_settings.load_settings(store.home).preset
    st.subheader("New fine-tune")
    limits_caption(len(data))
    data_path, targets = None, data.targets
    if preset is None:
        upload = st.file_uploader(
            "Your own labelled data (optional): a .zip of a CGCNN folder (id_prop.csv + <id>.cif files)",
            type=["zip"],
            key="ft_upload",
            help=f"At most {uploads.MAX_UPLOAD_MB} MB. Without an upload the default Materials Project data is used.",
        )
        if upload is not None:
            try:
                path, uploaded = launch.save_upload(store, upload.getvalue(), upload.name, user)
            except CGCNNError as exc:
                st.error(plain.markdown(f"The upload cannot be used: {exc}"))
            else:
                data_path, targets = str(path), uploaded.targets
                st.success(
                    plain.markdown(
                        f"{upload.name}: {len(uploaded)} crystals with label {', '.join(uploaded.targets)}"
                        + (f"; {len(uploaded.rejected)} unreadable crystals left out" if uploaded.rejected else "")
                    )
                )
    else:
        st.info(f"The teacher pinned the class to one protocol: **{preset.title}** ({preset.describe()}).")
    models = [SCRATCH, *app_ui.model_choices()]
    # Not an st.form: Enter in a number box would submit it (a student typing 150 queued a run), and the depth
    # choices must follow the chosen models. Widgets rerun the page; only the button queues.
    with st.container(border=True):
        c1, c2, c3 = st.columns(3)
        chosen = c1.multiselect(
            "Pretrained model(s)",
            models,
            default=["formation-energy-per-atom"] if "formation-energy-per-atom" in models else models[:1],
            format_func=lambda m: "scratch (no pretraining)" if m == SCRATCH else m,
            key="ft_models",
        )
        strategy, settings = strategy_choice()
        depths = launch.freeze_choices(chosen or models, store, strategy)
        all_train = strategy == "discriminative"  # depth 0 only; its own widget keeps the depths chosen before
        freezes = c2.multiselect(
            "Freeze depth(s)",
            depths,
            default=[min(2, depths[-1])],
            key="ft_freezes_all_train" if all_train else "ft_freezes",
            disabled=all_train,
            help="Discriminative fine-tuning trains every layer." if all_train else None,
        )
        if preset is None:
            target = c3.selectbox(
                "Target",
                targets,
                index=targets.index(STUDY.target) if STUDY.target in targets else 0,
                key="ft_target",
                format_func=lambda t: f"{t} ({TARGET_UNITS[t]})" if t in TARGET_UNITS else t,
            )
            s1, s2, s3, s4 = st.columns(4)
            n_train = s1.number_input("Train crystals", 2, 100_000, STUDY.n_train, step=100, key="ft_train")
            n_val = s2.number_input("Validation crystals", 1, 100_000, STUDY.n_val, step=100, key="ft_val")
            n_test = s3.number_input("Test crystals", 1, 100_000, STUDY.n_test, step=100, key="ft_test")
            epochs = s4.number_input("Epochs", 1, 500, STUDY.epochs, key="ft_epochs")
            protocol = RunProtocol(target, int(n_train), int(n_val), int(n_test), int(epochs))
        else:
            protocol = preset
            c3.text_input("Protocol (pinned by the teacher)", preset.describe(), disabled=True, key="ft_pinned")
        seeds = st.multiselect("Seeds (one run per seed)", list(range(10)), default=[0], key="ft_seeds")
        force = st.checkbox(
            "Train again",
            key="ft_force",
            help="An identical finished run is normally reused at once; tick this to compute a fresh one.",
        )
        specs = launch.make_specs(chosen, freezes, protocol, seeds, data=data_path, strategy=strategy,
                                  settings=settings)  # fmt: skip
        if specs:
            st.caption(plain.markdown(launch.preview(store, specs, force=force).summary()))
        submitted = st.button("Queue runs", type="primary", key="ft_submit")
    if submitted:
        if not user:
            st.error("Enter your display name in the sidebar first: runs are recorded under it.")
            return
        try:
            result = launch.launch(store, specs, owner=user, force=force)
        except CGCNNError as exc:
            st.error(plain.markdown(str(exc)))
            return
        st.success(plain.markdown(result.summary()))
        if result.run_ids:  # open the run just queued (and follow it) rather than the one opened before
            st.session_state["ft_open"] = result.run_ids[0]
        for label, why in result.refused:
            st.warning(plain.markdown(f"Not queued: {label}: {why}"))


def run_detail(store, view: tables.RunView, can_act: bool) -> None:
    """The opened run: progress, curves and parity plot (cached once it is done), the owner's actions."""
    entry, computed = view.entry, view.computed
    frac, text = tables.view_progress(view)
    md = plain.markdown
    st.markdown(f"**{md(tables.run_label(entry))}** · `{md(computed.status)}`")
    st.progress(frac, text=md(text))
    units = TARGET_UNITS.get(entry.target or "", "")
    a, b = st.columns(2)
    if computed.status == "done":
        curves, parity = app_ui.done_run_figures(computed.id, units, computed.finished_at or 0.0)
        app_ui.chart(curves, key="ft_curve_mae", container=a)
        app_ui.chart(parity, key="ft_parity", container=b)
    elif len(view.epochs):
        row_px = app_ui.style().legend_row_px
        app_ui.chart(figures.curves_figure(view.epochs, "mae", units=units, legend_row_px=row_px), "ft_curve_mae", a)
        app_ui.chart(figures.curves_figure(view.epochs, "loss", legend_row_px=row_px), "ft_curve_loss", b)
    if can_act:
        owner_actions(store, view)


def owner_actions(store, view: tables.RunView) -> None:
    entry = view.entry
    cols = st.columns([2, 1, 1, 1])
    if entry.is_active and cols[1].button("Cancel", key=f"cancel_{entry.id}"):
        force = is_teacher and entry.owner_key != name_key(user)
        for message in run_actions.cancel_each(store, [entry.id], lambda i: store.request_cancel(i, force=force)):
            st.toast(plain.markdown(message))
    asking = f"confirm_delete_{entry.id}"
    if not entry.is_active and cols[2].button("Delete run", key=f"delete_{entry.id}"):
        st.session_state[asking] = True
    if st.session_state.get(asking):  # a delete is not undone: ask once more
        st.warning(plain.markdown(f"Delete run {entry.id} with its curves and checkpoint? This cannot be undone."))
        yes, no = st.columns([1, 4])
        if yes.button("Yes, delete", key=f"delete_yes_{entry.id}", type="primary"):
            st.session_state.pop(asking, None)
            if is_teacher and entry.owner_key != name_key(user):  # a teacher deletes; a student only hides their entry
                store.delete(entry.id)
            else:
                store.hide(entry.id)
            st.rerun()
        if no.button("Keep it", key=f"delete_no_{entry.id}"):
            st.session_state.pop(asking, None)
            st.rerun()
    if entry.status == "done" and entry.source_run_id is None:
        name = cols[0].text_input("Save to the zoo as", value=entry.name or "", key=f"name_{entry.id}")
        if cols[3].button("Save name", key=f"save_{entry.id}"):
            try:
                saved = zoo.save_run_as(store, entry.id, name)
            except CGCNNError as exc:
                st.error(plain.markdown(str(exc)))
            else:
                app_ui.zoo_changed()
                st.toast(plain.markdown(f"run {entry.id} saved as {saved!r}") if saved else "name cleared")


def views_of(store, records) -> list[tables.RunView]:
    workers = classroom.worker_count(store.home)
    return tables.run_views(store, records, etas=lambda ids: app_ui.queue_etas(tuple(ids), workers))


def runs_section(store) -> None:
    """The compact live table of runs (a polling fragment), then one opened run (polling only while it runs)."""
    # Off by default for a student, also one who opened the page before typing a name (without a name there are
    # no own runs, so everyone's are listed whatever the switch says).
    everyone = st.toggle("Show everyone's runs", value=is_teacher, key="ft_everyone") or not user

    def shown_runs():
        return store.list_runs() if everyone else store.list_runs(owner=user)

    records = shown_runs()
    first = [records]  # the fragment's first draw uses these; its polls read the store again
    live = any(r.is_active for r in records)
    poll_s = app_ui.poll_seconds()  # longer as the class grows (cgcnn.app.polling)

    @st.fragment(run_every=poll_s if live else None)
    def runs_table() -> None:
        with app_ui.boundary("the run list"):
            app_ui.mark_active()
            recs = first.pop() if first else shown_runs()
            counts = store.counts()
            st.caption(
                f"Queue: {counts['queued']} queued, {counts['running']} running · "
                f"workers: {classroom.worker_count(store.home)} · {len(recs)} run(s) shown"
            )
            if not recs:
                st.info("No runs yet." if everyone else "You have no runs yet: queue one above.")
                return
            app_ui.runs_table(
                tables.compact_frame(views_of(store, recs), with_owner=everyone), height=min(38 + 35 * len(recs), 420)
            )
            if live and not any(r.is_active for r in recs):
                st.rerun()  # everything ended: a full rerun stops the polling

    runs_table()
    if not records:
        return
    by_id = {r.id: r for r in records}
    chosen = st.selectbox("Open a run", list(by_id), format_func=lambda i: tables.run_label(by_id[i]), key="ft_open")

    @st.fragment(run_every=poll_s if by_id[chosen].is_active else None)
    def opened_run() -> None:
        with app_ui.boundary("the opened run"), st.container(border=True):
            try:
                entry = store.get(chosen)
            except RunNotFound:  # deleted meanwhile (by its owner, or the teacher)
                entry = by_id[chosen]
            (view,) = views_of(store, [entry])
            run_detail(store, view, can_act=identity.can_modify(app_ui.identity(), entry, is_teacher))
            if by_id[chosen].is_active and not view.computed.is_active:
                st.rerun()  # it ended: a full rerun redraws it for good and stops the polling

    opened_run()


with app_ui.boundary("the fine-tune page"):
    store = app_ui.store()
    runner = classroom.start_runner(store)
    if runner is None:
        store.reap_stale(120)
        st.info("This server only queues runs (CGCNN_WORKERS=0): start `python -m cgcnn jobs` to run them.")
    launch_form(store)
    st.subheader("Runs")
    runs_section(store)
