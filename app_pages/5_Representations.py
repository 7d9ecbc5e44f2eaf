"""Representations: linear probes per depth, and a 2-D map of crystal features that opens crystals in the viewer."""

from __future__ import annotations

import streamlit as st

import app_ui
from cgcnn.analysis import figures, probe, style
from cgcnn.app import plain, tables
from cgcnn.data.datasets import TARGET_UNITS


@st.cache_data(show_spinner="Probing every depth (one forward pass and a ridge fit per depth)…", max_entries=16)
def probes(models: tuple[str, ...], target: str, n_train: int, n_test: int):
    return tables.probe_frame(list(models), target, n_train, n_test)


@st.cache_data(show_spinner="Computing features and their PCA map…", max_entries=16)
def feature_map(model_name: str, depth: str, target: str, n: int):
    ids = probe.select_ids(app_ui.dataset(), target, n)
    frame, projection = probe.crystal_map(model_name, depth, ids, app_ui.dataset(), method="pca")
    return frame, projection.explained_variance_ratio


user = app_ui.setup("Representations")
with app_ui.boundary("the representations page"):
    data = app_ui.dataset()
    names = tables.model_choices(app_ui.store())
    targets = data.targets
    st.subheader("Linear probe per depth")
    st.caption(
        "A ridge regression fitted on the frozen features of each depth (0 = embedding, k = after convolution k, "
        "last = the pooled crystal feature) on the canonical split; lower MAE means the label is easier to read."
    )
    with st.form("probe_form"):
        c1, c2, c3, c4 = st.columns([3, 2, 1, 1])
        # fmt: off
        chosen = c1.multiselect(
            "Models", names, default=[n for n in ("formation-energy-per-atom", "bulk-moduli") if n in names],
            key="rep_models",
        )
        target = c2.selectbox("Label", targets, index=targets.index("band_gap") if "band_gap" in targets else 0,
                              key="rep_target")
        # fmt: on
        n_train = c3.number_input("Train", 20, 5000, 500, step=100, key="rep_train")
        n_test = c4.number_input("Test", 10, 1000, 500, step=100, key="rep_test")
        go = st.form_submit_button("Run probes")
    if go and chosen:
        st.session_state["rep_probe_args"] = (tuple(chosen), target, int(n_train), int(n_test))
    if "rep_probe_args" in st.session_state:
        args = st.session_state["rep_probe_args"]
        frame, errors = probes(*args)
        for line in errors:
            st.error(plain.markdown(line))
        if len(frame):
            app_ui.chart(figures.probe_figure(frame, TARGET_UNITS.get(args[1], "")), key="rep_probe")
            app_ui.table(frame)
    else:
        st.caption("Choose models and press *Run probes* (a few seconds per model).")

    st.subheader("Map of crystal features (PCA)")
    c1, c2, c3, c4 = st.columns(4)
    model_name = c1.selectbox("Model", names, key="rep_map_model")
    depths = probe.depth_names(app_ui.model(model_name))
    depth = c2.selectbox("Depth", depths, index=len(depths) - 1, key="rep_map_depth")
    color = c3.selectbox("Colour by", targets, index=targets.index("band_gap") if "band_gap" in targets else 0,
                         key="rep_map_color")  # fmt: skip
    n = c4.number_input("Crystals", 50, 3000, 400, step=50, key="rep_map_n")
    frame, ratios = feature_map(model_name, depth, color, int(n))
    share = " + ".join(f"{r:.0%}" for r in ratios)
    # on a projector the colours keep one meaning: the label's range over the whole dataset, not this sample's
    fixed = style.fixed_range(data.labels[color]) if app_ui.style().fixed_ranges else None
    event = app_ui.chart(
        figures.pca_figure(frame, color, f"{model_name}, {depth}: PCA ({share} of the variance)", color_range=fixed),
        on_select="rerun",
        selection_mode="points",
        key="rep_map",
    )
    st.caption("Click a point to open that crystal in the viewer.")
    points = event.selection.points if event and event.selection else []
    if points:
        index = points[0].get("point_index", points[0].get("point_number"))
        if index is not None and 0 <= int(index) < len(frame):
            picked = str(frame["id"].iloc[int(index)])
            st.session_state["open_crystal"] = picked
            st.switch_page(app_ui.VIEWER_PAGE, query_params={**app_ui.link_params(), "crystal": picked})
