"""Predict: upload crystal files (or a zip of them) and get every chosen model's prediction.

A seed ensemble of finished runs adds mean ± std per crystal; a zip with labels (a CGCNN folder) is also
scored as ``python -m cgcnn evaluate`` scores it.
"""

from __future__ import annotations

import streamlit as st

import app_ui
from cgcnn.analysis import figures
from cgcnn.analysis.evaluation import target_units
from cgcnn.app import ensembles, hints, plain, scoring, tables, uploads

NO_ENSEMBLE, PICK_RUNS = "none", "pick runs…"

user = app_ui.setup("Predict")
with app_ui.boundary("the predict page"):
    store = app_ui.store()
    names = tables.model_choices(store, include_classifier=True, include_ensembles=True)
    chosen = st.multiselect(
        "Models", names, default=[n for n in ("formation-energy-per-atom", "band-gap") if n in names], key="pred_models"
    )
    records = [r for r in store.list_runs(status="done") if ensembles.usable(r)]
    groups = {g.label: g.run_ids for g in ensembles.seed_ensembles(records)}
    choice = st.selectbox(
        "Seed ensemble (mean and seed spread over finished runs of one recipe)",
        [NO_ENSEMBLE, *groups, PICK_RUNS],
        key="pred_ensemble",
        help="Runs that differ only in their seed, predicting together: the spread shows how much the seed "
        "alone moves a prediction (a seed spread, not an error bar). Same as `python -m cgcnn predict --model "
        "run:A,run:B,...`.",
    )
    run_ids: tuple[str, ...] = groups.get(choice, ())
    if choice == PICK_RUNS:
        by_id = {r.id: r for r in records}
        run_ids = tuple(
            st.multiselect("Runs", list(by_id), format_func=lambda i: tables.run_label(by_id[i]), key="pred_members")
        )
    files = st.file_uploader(
        "Crystal files: CIF, POSCAR or pymatgen JSON, or a .zip of them (a zip with id_prop.csv labels is also scored)",
        accept_multiple_files=True,
        key="pred_files",
        help=f"Up to {uploads.MAX_PREDICT_FILES} crystals, {uploads.MAX_UPLOAD_MB} MB per upload. A zip of a CGCNN "
        "folder (id_prop.csv + CIFs, labels in the model's units) gets the metrics of `python -m cgcnn evaluate`.",
    )
    if not files:
        st.info("Upload one or more crystal files to predict them.")
        st.stop()
    if not chosen and not run_ids:
        st.warning("Choose at least one model or an ensemble.")
        st.stop()
    models = {name: app_ui.model(name) for name in chosen}
    if run_ids:
        models[ensembles.ensemble_name(len(run_ids))] = ensembles.build_ensemble(
            [app_ui.model(f"run:{i}") for i in run_ids]
        )
    uploaded = [(f.name, f.getvalue()) for f in files]
    table, errors = uploads.predict_uploads(models, uploaded)
    st.session_state["pred_table"] = table
    if len(table):
        st.success(f"Predicted {len(table)} crystal(s) with {len(models)} model(s).")
        main, members = uploads.split_members(table)
        app_ui.table(main)
        far = uploads.far_rows(main)
        if far:
            st.warning(f"{uploads.FAR_BADGE.capitalize()}: " + plain.markdown(", ".join(far)))
        for note in hints.floor_notes(main):
            st.info(plain.markdown(note))
        if len(members.columns) > 1:
            with st.expander("Each ensemble member's prediction"):
                app_ui.table(members)
        st.download_button("Download predictions (CSV)", table.to_csv(index=False), "predictions.csv", "text/csv")
    for line in errors:
        st.error(plain.markdown(line))

    labelled = scoring.labelled_zip(uploaded)
    if labelled is not None:
        st.subheader("Scored against the labels in " + plain.markdown(labelled[0]))
        choices = scoring.needs_target(models)
        target = st.selectbox("The labels hold", choices, key="pred_target") if choices else None
        scores = scoring.score_upload(store, *labelled, models, target=target)
        st.session_state["pred_scores"] = scores
        if scores.results:
            st.caption(
                "As `python -m cgcnn evaluate`: labels in the model's units; bias = mean prediction − label; "
                "mae Q1…Q5 = MAE in each fifth of the crystals sorted by label (Q1 lowest); mae_clamped = MAE "
                "with negative predictions set to 0. Scored outputs: "
                + plain.markdown(scoring.targets_line(scores.results))
            )
            app_ui.table(scoring.metrics_frame(scores.results))
            shown = st.selectbox("Parity plot of", scoring.best_first(scores.results), key="pred_parity_model")
            result = scores.results[shown]
            units = target_units(models[shown], result.target)
            title = f"{shown} on {labelled[0]}: predicted vs label"
            app_ui.chart(figures.parity_figure(scoring.parity_frame(result), units, title), key="pred_parity")
            calibration = scoring.calibration_frame(result)
            if len(calibration):
                st.caption(
                    "Does the ensemble's spread predict its error? Crystals binned by std: a useful spread has "
                    "rmse rising with std; within_1std near 0.68 would be calibrated."
                )
                app_ui.table(calibration)
        for line in scores.errors:
            st.error(plain.markdown(line))
