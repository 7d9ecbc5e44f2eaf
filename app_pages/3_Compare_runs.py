"""Compare runs: overlaid curves, test MAEs, the study's Table 2 rebuilt from the run store, learning curves."""

from __future__ import annotations

import streamlit as st

import app_ui
from cgcnn.analysis import figures, style
from cgcnn.app import learning_curves, tables
from cgcnn.data.datasets import TARGET_UNITS
from cgcnn.experiments import study
from cgcnn.experiments.learning_curve import learning_curve_figure
from cgcnn.names import name_key


def learning_curve_section() -> None:
    """Test MAE against training-set size, shipped or this server's runs (logic: cgcnn.app.learning_curves)."""
    st.subheader("Learning curves: when does pretraining pay?")
    shipped = learning_curves.shipped_view()
    options = ["shipped with the project", "this server's run store"]
    source = st.radio("Learning-curve results", options, index=0 if shipped else 1, horizontal=True, key="lc_source")
    if source == options[0]:
        view = shipped
        if view is None:
            st.info("No learning-curve results ship with this copy yet (docs/results/learning_curves/).")
            return
    else:
        records = app_ui.store().list_runs()
        protocols = learning_curves.store_protocols(records)
        if not protocols:
            st.info("No finished run on this server yet: queue some on the Fine-tune page, or run `sweep --sizes`.")
            return
        labels = [protocol.label(count) for protocol, count in protocols]
        pick = st.selectbox("Runs of one protocol", range(len(labels)), format_func=labels.__getitem__,
                            key="lc_protocol")  # fmt: skip
        view = learning_curves.store_view(records, protocols[pick][0])
    st.markdown(
        "Mean test MAE over split seeds at each training-set size (log–log), with its 95% band (a t-interval over "
        "the splits' MAEs; with one split, over model seeds). Baselines without a network are dashed; stars mark "
        f"published numbers at their own training sizes. Source: {view.source}."
    )
    look = app_ui.style()
    band_gap = view.target == learning_curves.BAND_GAP
    figure = learning_curve_figure(
        view.points, references=band_gap, units=TARGET_UNITS.get(view.target, ""), legend_row_px=look.legend_row_px
    )
    app_ui.chart(figure, key="cmp_learning_curve")
    app_ui.table(learning_curves.points_table(view.points))
    if view.crossover is not None and len(view.crossover):
        st.markdown("Where each recipe stops (or starts) beating scratch: the zero of its mean difference in log n.")
        app_ui.table(learning_curves.crossover_display(view.crossover))
    st.download_button(
        "Download the learning-curve points (CSV)", view.points.to_csv(index=False), "learning_curve.csv", "text/csv",
        key="lc_csv",
    )  # fmt: skip


user = app_ui.setup("Compare runs")
with app_ui.boundary("the compare page"):
    store = app_ui.store()
    look = app_ui.style()
    records = store.list_runs()
    finished = [r for r in records if r.status in ("done", "cancelled", "failed")]
    by_id = {r.id: r for r in records}
    if not records:
        st.info("No runs stored yet: queue some on the Fine-tune page.")
    mine_only = st.toggle("Only my runs", value=False, key="cmp_mine", disabled=not user)
    pool = [r for r in records if not mine_only or r.owner_key == name_key(user)]
    default = tables.default_comparison(pool, user)
    chosen = st.multiselect(
        "Runs to compare",
        [r.id for r in pool],
        default=default,
        format_func=lambda i: tables.run_label(by_id[i]),
        key="cmp_runs",
    )
    if chosen:
        labels = {i: tables.run_label(by_id[i]) for i in chosen}
        epochs = store.epochs_many(chosen)
        units = TARGET_UNITS.get(by_id[chosen[0]].target or "", "")
        table = tables.runs_frame([by_id[i] for i in chosen])
        st.subheader("Test MAE of the chosen runs")
        app_ui.table(tables.on_screen_runs(table))
        if len({tables.protocol_of(by_id[i]) for i in chosen}) > 1:
            st.warning("These runs use different protocols (target, sizes, epochs or data): compare MAEs with care.")
        mae_tab, loss_tab = st.tabs(["MAE curves", "Loss curves"])
        row_px = look.legend_row_px
        app_ui.chart(figures.curves_figure(epochs, "mae", labels, units, legend_row_px=row_px), "cmp_mae", mae_tab)
        app_ui.chart(figures.curves_figure(epochs, "loss", labels, legend_row_px=row_px), "cmp_loss", loss_tab)
        st.download_button(
            "Download these runs (CSV)", table.to_csv(index=False), "runs.csv", "text/csv", key="cmp_csv_runs"
        )

    st.subheader("The study's Table 2, over seeds")
    source = st.radio(
        "Results",
        ["shipped with the project (5 seeds per cell)", "this server's run store"],
        horizontal=True,
        key="cmp_source",
    )
    st.markdown(
        "Done band-gap runs of the 1000/1000/1000 protocol on the default data, grouped by pretrained model and "
        "freeze depth: mean ± standard deviation over seeds (n = number of seeds). The right panel holds the "
        f"study's numbers (one seed; test MAE in eV; training from scratch: {study.STUDY_BASELINE}). "
        "The shipped results come from `python -m cgcnn sweep` (see README, docs/results)."
    )
    shipped = source.startswith("shipped")
    cells = tables.table2_cells(tables.shipped_runs() if shipped else records)
    study_cells = tables.study_frame()
    if cells.empty:
        st.info(
            "No run of the protocol yet (band gap, 1000/1000/1000, default data, done): the heatmap shows the "
            "study's numbers only."
        )
    panel = "shipped results (5 seeds per cell)" if shipped else "this server's runs"
    heatmap = figures.table2_heatmap(
        cells,
        study_cells,
        source=panel,
        font_size=look.heatmap_px,
        zrange=style.TABLE2_MAE_RANGE_EV if look.fixed_ranges else None,
        stacked=True,  # side by side, at 1280 px the cells' "mean ± std" overlapped and the scratch cell was cut
    )
    app_ui.chart(heatmap, key="cmp_table2")
    comparison = tables.table2_comparison(cells)
    app_ui.table(tables.table2_display(comparison))
    st.download_button(
        "Download Table 2 comparison (CSV)", comparison.to_csv(index=False), "table2.csv", "text/csv", key="cmp_csv"
    )
    if finished:
        st.caption(f"{len(finished)} finished run(s) in the store, {len(records) - len(finished)} queued or running.")

with app_ui.boundary("the learning curves"):
    learning_curve_section()
