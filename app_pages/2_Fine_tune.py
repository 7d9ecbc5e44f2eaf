"""Fine-tune: queue runs (model × freeze depth × seed), follow them live, save or delete the finished ones."""

from __future__ import annotations

import streamlit as st

import app_ui
from cgcnn import zoo
from cgcnn.analysis import viz
from cgcnn.app import classroom, identity, launch, plain, tables, uploads
from cgcnn.data.datasets import TARGET_UNITS
from cgcnn.errors import CGCNNError
from cgcnn.training.transfer import SCRATCH

MAX_SHOWN = 12

user = app_ui.setup("Fine-tune")


def launch_form(store) -> None:
    data = app_ui.dataset()
    st.subheader("New fine-tune")
    upload = st.file_uploader(
        "Your own labelled data (optional): a .zip of a CGCNN folder (id_prop.csv + <id>.cif files)",
        type=["zip"],
        key="ft_upload",
        help=f"At most {uploads.MAX_UPLOAD_MB} MB. Without an upload the default Materials Project data is used.",
    )
    data_path, targets = None, data.targets
    if upload is not None:
        try:
            path, uploaded = launch.save_upload(store, upload.getvalue(), upload.name)
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
    models = [SCRATCH, *tables.model_choices(store)]
    with st.form("ft_form"):
        c1, c2, c3 = st.columns(3)
        chosen = c1.multiselect(
            "Pretrained model(s)",
            models,
            default=["formation-energy-per-atom"] if "formation-energy-per-atom" in models else models[:1],
            format_func=lambda m: "scratch (no pretraining)" if m == SCRATCH else m,
            key="ft_models",
        )
        depths = launch.freeze_choices(models, store)
        freezes = c2.multiselect("Freeze depth(s)", depths, default=[min(2, depths[-1])], key="ft_freezes")
        target = c3.selectbox(
            "Target",
            targets,
            index=targets.index("band_gap") if "band_gap" in targets else 0,
            key="ft_target",
            format_func=lambda t: f"{t} ({TARGET_UNITS[t]})" if t in TARGET_UNITS else t,
        )
        s1, s2, s3, s4 = st.columns(4)
        n_train = s1.number_input("Train crystals", 2, 100_000, 1000, step=100, key="ft_train")
        n_val = s2.number_input("Validation crystals", 1, 100_000, 1000, step=100, key="ft_val")
        n_test = s3.number_input("Test crystals", 1, 100_000, 1000, step=100, key="ft_test")
        epochs = s4.number_input("Epochs", 1, 500, 30, key="ft_epochs")
        seeds = st.multiselect("Seeds (one run per seed)", list(range(10)), default=[0], key="ft_seeds")
        submitted = st.form_submit_button("Queue runs", type="primary")
    if submitted:
        if not user:
            st.error("Enter your display name in the sidebar first: runs are recorded under it.")
            return
        specs = launch.make_specs(chosen, freezes, target, (n_train, n_val, n_test), epochs, seeds, data=data_path)
        try:
            result = launch.launch(store, specs, owner=user)
        except CGCNNError as exc:
            st.error(plain.markdown(str(exc)))
            return
        st.success(plain.markdown(f"Queued {len(result.run_ids)} run(s): {', '.join(result.run_ids)}"))
        for label, why in result.refused:
            st.warning(plain.markdown(f"Not queued: {label}: {why}"))


def run_panel(store, record, epochs, mine: bool) -> None:
    frac, text = tables.run_progress(record, epochs)
    status = record.status
    if status == "queued":
        pos = store.queue_position(record.id)
        text = f"queued, position {pos} in the queue" if pos else text
    md = plain.markdown
    st.markdown(f"**{md(tables.run_label(record))}** · owner {md(record.owner or '—')} · `{md(status)}`")
    st.progress(frac, text=md(text))
    if len(epochs):
        units = TARGET_UNITS.get(record.target or "", "")
        a, b = st.columns(2)
        a.plotly_chart(viz.curves_figure(epochs, "mae", units=units), width="stretch", key=f"mae_{record.id}")
        b.plotly_chart(viz.curves_figure(epochs, "loss"), width="stretch", key=f"loss_{record.id}")
    if not mine:
        return
    if record.is_active:
        if st.button("Cancel", key=f"cancel_{record.id}"):
            st.toast(md(f"run {record.id}: {store.request_cancel(record.id)}"))
        return
    if status == "done":
        with st.expander("Test set parity plot", expanded=False):
            st.plotly_chart(
                viz.parity_figure(store.predictions(record.id, "test"), TARGET_UNITS.get(record.target or "", "")),
                width="stretch",
                key=f"parity_{record.id}",
            )
        c1, c2 = st.columns([3, 1])
        name = c1.text_input("Save to the zoo as", value=record.name or "", key=f"name_{record.id}")
        if c2.button("Save name", key=f"save_{record.id}"):
            try:
                saved = zoo.save_run_as(store, record.id, name)
            except CGCNNError as exc:
                st.error(md(str(exc)))
            else:
                st.toast(md(f"run {record.id} saved as {saved!r}") if saved else "name cleared")
    if st.button("Delete run", key=f"delete_{record.id}"):
        store.delete(record.id)
        st.rerun()


def runs_section(store) -> None:
    everyone = st.toggle("Show everyone's runs", value=not user, key="ft_everyone")
    records = store.list_runs() if everyone or not user else store.list_runs(owner=user)
    live = any(r.is_active for r in records)

    @st.fragment(run_every=2.0 if live else None)
    def live_runs() -> None:
        with app_ui.boundary("the run list"):
            recs = store.list_runs() if everyone or not user else store.list_runs(owner=user)
            counts = store.counts()
            st.caption(
                f"Queue: {counts['queued']} queued, {counts['running']} running · "
                f"workers: {classroom.worker_count()} · {len(recs)} run(s) shown"
            )
            if not recs:
                st.info("No runs yet." if everyone else "You have no runs yet: queue one above.")
            shown = recs[:MAX_SHOWN]
            frames = store.epochs_many([r.id for r in shown])
            for record in shown:
                with st.container(border=True):
                    mine = identity.can_modify(app_ui.identity(), record, app_ui.is_teacher())
                    run_panel(store, record, frames[frames["run_id"] == record.id], mine=mine)
            if len(recs) > MAX_SHOWN:
                st.caption(f"{len(recs) - MAX_SHOWN} older run(s):")
                st.dataframe(tables.runs_frame(recs[MAX_SHOWN:]), hide_index=True, width="stretch")
            if live and not any(r.is_active for r in recs):
                st.rerun()  # everything ended: a full rerun stops the polling

    live_runs()


with app_ui.boundary("the fine-tune page"):
    store = app_ui.store()
    runner = classroom.start_runner(store)
    if runner is None:
        store.reap_stale(120)
        st.info("This server only queues runs (CGCNN_WORKERS=0): start `python -m cgcnn jobs` to run them.")
    launch_form(store)
    st.subheader("Runs")
    runs_section(store)
