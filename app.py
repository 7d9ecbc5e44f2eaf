"""Home page of the CGCNN transfer-learning explorer (``streamlit run app.py``).

Widgets and layout only: every number comes from the ``cgcnn`` library.
"""

from __future__ import annotations

import streamlit as st

from cgcnn.zoo import list_cards

st.set_page_config(page_title="CGCNN explorer", page_icon="🔷", layout="wide")
st.title("Crystal graph transfer-learning explorer")
st.markdown(
    "Crystal Graph Convolutional Neural Networks (CGCNN) turn a crystal into a graph of atoms and their "
    "nearest neighbours and learn material properties from it. This tool lets you predict with the original "
    "pretrained models, fine-tune them to a new property with some layers frozen, and compare the runs."
)
st.subheader("Models available")
st.dataframe(
    [
        {"name": c.name, "property": c.property, "units": c.units, "train size": c.train_size, "MAE": c.mae}
        for c in list_cards()
    ],
    hide_index=True,
)
st.caption(
    "CGCNN: T. Xie and J. C. Grossman, Phys. Rev. Lett. 120, 145301 (2018). "
    "Data: Materials Project, A. Jain et al., APL Materials 1, 011002 (2013), CC BY 4.0."
)
