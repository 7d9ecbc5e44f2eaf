"""Crystal & attention viewer: a crystal in 3D with its graph edges, coloured by a model's edge weights.

One source of truth (see :mod:`cgcnn.app.viewer`): each run builds one ``ViewState`` from the address and the
widgets, writes it back into both, and draws only from it.
"""

from __future__ import annotations

import streamlit as st

import app_ui
from cgcnn.app import classroom, faithfulness_view, hints, plain, tables, uploads, viewer

HEIGHT = 520
#: Presentation mode at 1280x720: the prediction, the colour bars and the faithfulness line under the edges' bar
#: (above the view) and the whole 3D scene fit above the fold under the page title; the PNG button may fall below.
PRESENT_SCENE_HEIGHT = 300
SOURCES = ["Default dataset", "Upload a file"]


def crystal_of(upload: tuple[str, bytes] | None, state: viewer.ViewState):
    """(structure, graph builder) of the crystal shown: the uploaded file's, else the dataset's."""
    if upload is None:
        return app_ui.dataset().structure(state.crystal), viewer.structure_to_graph
    return uploads.structure_from_upload(*upload), uploads.graph_builder_for_upload(upload[0])


@st.cache_data(show_spinner="Building the 3D scene…", max_entries=32)
def build_view(upload: tuple[str, bytes] | None, state: viewer.ViewState, height: int, zoom: float, present: bool):
    """(html, edge table, info dict) of one view; cached on the file, the whole state and the mode."""
    structure, graph_of = crystal_of(upload, state)
    legend_px = app_ui.style().table_px if present else 13
    view = viewer.view_of_state(
        structure,
        state,
        app_ui.model,
        height=height,
        zoom=zoom,
        legend_px=legend_px,
        legend_first=present,
        graph_of=graph_of,
    )
    return view.html, view.table, view.info


@st.cache_data(show_spinner="Computing this crystal's deletion curve…", max_entries=32)
def deletion_curve(upload: tuple[str, bytes] | None, state: viewer.ViewState):
    """This crystal's deletion curve of the colouring (see :func:`viewer.curve_of_state`); cached on what it uses."""
    structure, graph_of = crystal_of(upload, state)
    return viewer.curve_of_state(structure, state, app_ui.model, graph_of)


@st.cache_resource(show_spinner=False)
def crystal_index() -> viewer.CrystalIndex:
    return viewer.CrystalIndex.of(app_ui.dataset())


@st.cache_data(ttl=10, show_spinner=False)
def model_shape(name: str) -> viewer.ModelShape:
    return viewer.model_shape(name, app_ui.store())


@st.cache_data(ttl=10, show_spinner=False)
def ensemble_options(first: str) -> list[str]:
    return viewer.ensemble_options(first, app_ui.store())


def sync_address(state: viewer.ViewState) -> None:
    """The view's keys of the address follow ``state``; every other key (user, token, present) stays."""
    wanted = state.to_params()
    for key in viewer.URL_KEYS:
        if key in wanted and st.query_params.get(key) != wanted[key]:
            st.query_params[key] = wanted[key]
        elif key not in wanted and key in st.query_params:
            del st.query_params[key]


def prediction(info: dict, state: viewer.ViewState, note) -> None:
    """The prediction as a metric, with the ensemble's members and the hints that belong to it."""
    units = info["units"]
    st.metric(plain.markdown(f"Prediction: {info['target']}"), f"{info['prediction']:.3f} {units}")
    if "interval" in info:
        low, high = info["interval"]
        note(f"Calibrated 90% interval: {low:.3f} … {high:.3f} {units}")
    if info.get("far"):
        st.warning(f"{uploads.FAR_BADGE.capitalize()} (distance {info['distance']:.2f}; above 1 for 5% of crystals "
                   "like them).")  # fmt: skip
    if "std" not in info and hints.at_floor(state.model, info["prediction"]):
        note(plain.markdown(hints.floor_note(state.model)))
    if "members" in info:
        each = ", ".join(f"{name} {value:.3f}" for name, value in info["members"].items())
        spread = f"{uploads.SPREAD_LABEL} {info['std']:.3f}"
        note(plain.markdown(f"Mean over {len(info['members'])} models (seed ensemble), {spread}: {each}."))


def show_view(left, right, state: viewer.ViewState, upload: tuple[str, bytes] | None, present: bool) -> None:
    """The 3D view, prediction, colour notes and edge table of ``state`` (nothing else decides them).

    In presentation mode (a 1280x720 projector) the prediction and the colour bars sit above a 3D view that fits
    under them, notes are body text (16 px) instead of 14 px captions, and the edge table is a static table.
    """
    scene_height = PRESENT_SCENE_HEIGHT if present else HEIGHT - 60
    html, table, info = build_view(upload, state, scene_height, 1.0 if present else 1.1, present)
    st.session_state["viewer_html"], st.session_state["viewer_info"] = html, info
    note = st.markdown if present else st.caption
    summary = (
        f"**{plain.markdown(info['formula'])}** · {info['n_atoms']} atoms · "
        f"{info['drawn_edges']} of {info['graph_edges']} "
        f"graph edges drawn · {info['ghosts']} neighbour atoms in adjacent cells (translucent)"
    )
    with right:
        if info.get("tie"):  # the prediction depends on how the crystal is written down
            st.warning(plain.markdown(info["tie"][0].upper() + info["tie"][1:] + "."))
        if present and "prediction" in info:
            prediction(info, state, note)
        if not present:
            st.markdown(summary)
        # the scene, its legend (colour bars, the faithfulness line, the removed edges' line), the PNG button
        frame_height = scene_height + 240 if present else HEIGHT + 130
        st.iframe(html, height=frame_height, alt=f"3D view of {info['formula']}")
        if present:
            note(summary)
        if info.get("truncated"):
            note("Large cell: only the first edges are drawn.")
    with left:
        if "prediction" in info:
            if not present:
                prediction(info, state, note)
            note(
                ("Edge colour: occlusion attribution, the prediction minus the prediction without that edge's "
                 "message (model units; the same for every layer). " if state.colour == "occlusion" else
                 "Edge colour and thickness: attention coefficient of the chosen layer and head. " if info["kind"]
                 == "attention" else "Gated convolutions have no attention: edges show the mean filter gate "
                 "σ(·) of the chosen layer (0–1), how much each neighbour's message passes. ")
                + "Atom contribution: the model's head applied to that atom's final feature alone (what the "
                f"model predicts for a crystal of atoms like it); their mean is {info['contrib_mean']:.3f}, the "
                "crystal's prediction applies the head to the mean feature instead."
            )  # fmt: skip
            if info.get("attribution_note"):
                st.info(info["attribution_note"])
            faithfulness(info, state, upload, present, note)
        with st.expander("How to read this"):
            st.markdown(
                "- **Edges** are the crystal graph: each atom reads messages from its 12 nearest neighbours, "
                "including atoms in neighbouring cells (translucent).\n"
                "- **Attention** (attention models) says how an atom *mixes* its neighbours' messages in one layer; "
                "a **gate** (gated models) how much of each message passes. Neither says how much an edge "
                "changes the prediction.\n"
                "- **Occlusion attribution** does: remove that edge's message in every layer and predict again; "
                "the colour is the prediction minus that. Atoms: remove every message the atom sends.\n"
                "- Edges and atoms have **separate colour bars** (different colour maps). *Fixed colour range "
                "across layers* keeps one edge range for every layer, so layers compare by colour.\n"
                "- Attention and attribution often disagree: on 15 test crystals the rank correlation of "
                "attention with occlusion was 0.48 / 0.21 / 0.08 (attention / edge-aware / 4-head model) when the "
                "edge is deleted, 0.86 / 0.55 / 0.47 when its message is zeroed, which is partly built in "
                "(`python -m cgcnn explain` prints both).\n"
                "- **Is the colouring faithful?** The line under the edge colour bar and the note beside the view "
                "give its measured deletion AUC (shipped results): removing edges in the colouring's order, how "
                "fast does the prediction move, against random orders and occlusion. Try it yourself: *Remove the "
                "top N edges* predicts without the N edges it ranks first (dashed red) and without N random ones.\n"
                "- The page address holds this view: copy it to share exactly what you see."
            )
    focus = state.atom if state.edges == "atom" and state.members else None
    if state.members and len(table):
        st.subheader("Edges drawn" + (f" of atom {focus} ({info['species'][focus]})" if focus is not None else ""))
        edge_table(table, present, note)
    elif len(table):
        with st.expander("Edges of the crystal graph"):
            edge_table(table.drop(columns=["coefficient"]), present, note)
    if len(table) and state.members and table["coefficient"].notna().all():
        note("Rows sorted by coefficient, strongest first; image = lattice translation of the neighbour.")


def faithfulness(info: dict, state: viewer.ViewState, upload, present: bool, note) -> None:
    """Is the colouring faithful? The shipped measurement, *Remove the top N edges*, this crystal's curve."""
    note(info["faithfulness"].text)
    if "removal" in info:
        report, units = info["removal"], info["units"]
        n = report["removed"]
        top, rand = st.columns(2)
        for column, key, label in ((top, "prediction_without_top", f"Without the top {n} edges"),
                                   (rand, "prediction_without_random", f"Without {n} random edges")):  # fmt: skip
            column.metric(label, f"{report[key]:.3f} {units}", f"{report[key] - report['prediction']:+.3f}",
                          delta_color="off")  # fmt: skip
        note(info["removal_text"])
    curve = deletion_curve(upload, viewer.curve_state(state))
    if isinstance(curve, dict):
        figure = faithfulness_view.deletion_curve_figure(curve, height=360 if present else 300)
        app_ui.chart(figure, key="view_curve")
        note(
            "Removing this crystal's edges in the colouring's order (solid) against random orders (dashed): the "
            "curve is the share of the full change of the prediction (every real edge removed) reached after "
            "each fraction. Above the dashed line: the colouring's first edges matter more than random ones."
        )
    elif curve:
        note(curve)


def edge_table(table, present: bool, note) -> None:
    """The edges as a grid on a screen; in presentation mode a static 16 px table of the first rows."""
    if not present:
        st.dataframe(table, hide_index=True, width="stretch")
        return
    rows = app_ui.style().max_styled_rows
    app_ui.table(table.head(rows))
    if len(table) > rows:
        note(f"The first {rows} of {len(table)} edges (switch presentation mode off for all of them).")


user = app_ui.setup("Crystal & attention viewer")
with app_ui.boundary("the viewer"):
    data = app_ui.dataset()
    index = crystal_index()
    present = app_ui.presenting()
    if not classroom.local_3dmol_available():
        st.warning("The offline 3D viewer library is missing: run `make` (it copies 3Dmol.js into static/).")
    models = [viewer.NO_MODEL, *app_ui.model_choices(include_ensembles=True)]
    default = viewer.ViewState(crystal=index.default, model=viewer.default_model(models), fixed_range=present)

    # Another page opened a crystal here; a new search shows its first match.
    opened = st.session_state.pop("open_crystal", None)
    if opened:
        st.session_state["view_crystal"], st.session_state["view_source"] = str(opened), SOURCES[0]
    query = st.session_state.get("view_query", "")
    matches = tables.search_crystals(data, query)
    if query != st.session_state.get("view_query_seen", "") and not matches.empty:
        st.session_state["view_crystal"] = str(matches["id"].iloc[0])
    st.session_state["view_query_seen"] = query

    # The one state: the address, overridden by what the user just changed, checked, then shown by every widget.
    def parse(params, n_atoms=lambda crystal: None):
        return viewer.parse_view(params, index.n_atoms, models, model_shape, default, ensemble_options, n_atoms)

    from_address, ignored = parse(st.query_params.to_dict(), index.n_atoms.get)
    state, _ = parse({**from_address.to_params(), **viewer.params_from_widgets(st.session_state)})
    for key, value in viewer.widget_values(state).items():
        st.session_state[key] = value
    sync_address(state)
    st.session_state["viewer_state"] = state

    left, right = st.columns([1, 2])
    upload = None
    with left:
        if ignored:
            st.caption(plain.markdown("Not understood in the address, so shown as default: " + ", ".join(ignored)))
        source = st.radio("Crystal", SOURCES, horizontal=True, key="view_source")
        if source == SOURCES[0]:
            st.text_input("Search by formula or id", key="view_query")
            if matches.empty:
                st.warning(plain.markdown(f"No crystal matches {query!r}; showing all."))
                matches = tables.search_crystals(data, "")
            options = matches["id"].tolist()
            if state.crystal not in options:
                options = [state.crystal, *options]
            sizes = index.n_atoms
            formulas = dict(zip(matches["id"], matches["formula"], strict=True))
            formulas.setdefault(state.crystal, index.formulas[state.crystal])
            st.selectbox(
                "Crystal", options, format_func=lambda i: f"{i} · {formulas[i]} ({sizes[i]} atoms)", key="view_crystal"
            )
        else:
            file = st.file_uploader("A crystal file (CIF, POSCAR, pymatgen JSON)", key="view_upload")
            if file is not None:
                upload = (file.name, file.getvalue())
        st.selectbox("Model", models, key="view_model")
        if state.members:
            st.multiselect(
                "Seed ensemble: average with",
                ensemble_options(state.members[0]),
                key="view_ensemble",
                placeholder="other runs of this target",
                help="Models of the same target (e.g. one fine-tune recipe with several seeds): the prediction "
                "becomes their mean ± std, as `python -m cgcnn predict --model run:A,run:B`. The picture stays "
                "the first model's.",
            )
            st.slider("Convolution layer", 1, model_shape(state.members[0]).n_conv, key="view_layer")
            if state.heads > 1:
                st.selectbox(
                    "Attention head",
                    list(range(state.heads + 1)),
                    format_func=lambda h: "mean of the heads" if h == 0 else f"head {h}",
                    key="view_head",
                )
            st.radio("Edges shown", list(viewer.EDGE_MODES.values()), key="view_mode")
            if state.edges == "atom":
                st.number_input("Atom index", 0, 10_000, key="view_atom")
            elif state.edges == "top":
                st.slider("Strongest edges per atom", 1, viewer.MAX_TOP_K, key="view_topk")
            st.radio("Colour edges by", list(viewer.COLOURINGS.values()), key="view_colour_by")
            st.number_input(
                "Remove the top N edges (0: off)",
                0,
                faithfulness_view.MAX_REMOVE,
                key="view_remove",
                help="Predict again without the N edges this colouring ranks first (drawn dashed red), beside the "
                "same for N random edges: a faithful colouring's top edges move the prediction more.",
            )
            st.radio(
                "Remove edges by",
                list(faithfulness_view.REMOVAL_LABELS.values()),
                key="view_removal",
                help="delete: the edge is gone and attention renormalises over the remaining neighbours; zero: "
                "its message is multiplied by 0 after the softmax. The same for gated models.",
            )
            st.toggle("Colour atoms too", key="view_contrib")
            st.toggle(
                "Fixed colour range across layers",
                key="view_fixed",
                help="One edge colour range over every layer of this model and crystal, so the same colour is the "
                "same weight in every layer (on by default in presentation mode).",
            )

    if source == SOURCES[1] and upload is None:
        with right:
            st.info("Upload a file to view it.")
    else:
        show_view(left, right, state, upload, present)
