"""Predict: upload crystal files (or a zip of them) and get every chosen model's prediction."""

from __future__ import annotations

import streamlit as st

import app_ui
from cgcnn.app import plain, tables, uploads

user = app_ui.setup("Predict")
with app_ui.boundary("the predict page"):
    names = tables.model_choices(app_ui.store(), include_classifier=True)
    chosen = st.multiselect(
        "Models", names, default=[n for n in ("formation-energy-per-atom", "band-gap") if n in names], key="pred_models"
    )
    files = st.file_uploader(
        "Crystal files: CIF, POSCAR or pymatgen JSON, or a .zip of them",
        accept_multiple_files=True,
        key="pred_files",
        help=f"Up to {uploads.MAX_PREDICT_FILES} crystals, {uploads.MAX_UPLOAD_MB} MB per upload.",
    )
    if not files:
        st.info("Upload one or more crystal files to predict them.")
        st.stop()
    if not chosen:
        st.warning("Choose at least one model.")
        st.stop()
    predictors = {name: app_ui.model(name) for name in chosen}
    table, errors = uploads.predict_uploads(predictors, [(f.name, f.getvalue()) for f in files])
    st.session_state["pred_table"] = table
    if len(table):
        st.success(f"Predicted {len(table)} crystal(s) with {len(chosen)} model(s).")
        st.dataframe(table, hide_index=True, width="stretch")
        st.download_button("Download predictions (CSV)", table.to_csv(index=False), "predictions.csv", "text/csv")
    for line in errors:
        st.error(plain.markdown(line))
