"""Model zoo: every model with its card, and what a freeze depth does to the chosen one."""

from __future__ import annotations

import streamlit as st

import app_ui
from cgcnn.analysis import figures
from cgcnn.app import plain, tables, zoo_coverage


@st.cache_data(ttl=60, show_spinner=False)
def coverage() -> dict[str, dict]:
    return zoo_coverage.shipped_coverage()


@st.cache_data(ttl=60, show_spinner=False)
def external_checks() -> dict[str, dict]:
    return zoo_coverage.external_checks()


@st.cache_data(ttl=10, show_spinner=False)
def calibrations() -> dict[str, dict]:
    return zoo_coverage.calibrations(app_ui.store())


app_ui.setup("Model zoo")
with app_ui.boundary("the model zoo"):
    cards = app_ui.cards()
    look = app_ui.style()
    if not look.presenting:  # on a projector the wrapped card table (~2,000 px) comes after the diagram
        app_ui.table(cards)

    names = cards["name"].tolist()
    default = names.index("formation-energy-per-atom") if "formation-energy-per-atom" in names else 0
    name = st.selectbox("Model", names, index=default, key="zoo_model")
    loaded = app_ui.model(name)
    members = getattr(loaded, "members", None)  # a shipped ensemble: its card is the zoo's, its diagram a member's
    predictor = members[0] if members else loaded
    card = tables.zoo_card(name, app_ui.store()) if members else loaded.card
    # On a projector the diagram comes first, at the full width; the card follows.
    right, left = (st.container(), st.container()) if look.presenting else st.columns([2, 3])[::-1]
    with left:
        md = plain.markdown
        st.markdown(f"### {md(card.name)}")
        st.markdown(
            f"**Predicts** {md(card.property)} ({md(card.units or 'no units')}) · **task** {md(card.task)}  \n"
            f"**Trained on** {md(card.train_size if card.train_size is not None else '?')} crystals  \n"
            f"**Error** {md(f'{card.mae:.3g}' if card.mae is not None else 'n/a')} ({md(card.mae_metric)})  \n"
            f"**Source** {md(card.source)}"
        )
        calibration = calibrations().get(card.name, {})
        st.markdown(zoo_coverage.coverage_sentence(card.name, calibration, coverage().get(card.name), card.units))
        if members:
            st.markdown(f"**Seed ensemble** of {len(members)} models ({md(', '.join(loaded.names))}): it predicts "
                        "their mean; the diagram shows its first member.")  # fmt: skip
        if card.notes:
            st.info(md(card.notes))
        check = external_checks().get(card.name) if card.kind in ("original", "own") else None
        if check:
            st.info(md(zoo_coverage.external_check_text(check, card.units)))
        if card.shift_penalty:
            st.warning(f"**Shift penalty {card.shift_penalty['ratio']}x.** {md(card.shift_penalty['statement'])}")
        with st.expander("All card details"):
            st.json(card.to_dict())
    with right:
        n_conv = predictor.model.config.n_conv
        freeze = st.slider(
            "Freeze depth (embedding + first k convolutions frozen)", 0, n_conv, min(2, n_conv), key="zoo_freeze"
        )
        layers, report = tables.layer_frame(predictor, freeze)
        title = f"Transfer of {card.name} with freeze {freeze}"
        app_ui.chart(figures.layer_diagram(layers, title, font_size=look.diagram_px), key="zoo_diagram")
        a, b = st.columns(2)
        a.metric("Frozen parameters", f"{report.frozen_params:,}")
        b.metric("Trainable parameters", f"{report.trainable_params:,}")
        st.caption(
            "Frozen: pretrained and not trained. Kept: pretrained weights, trained further. Re-initialised: fresh "
            "weights (the deeper convolutions and the head, as in the study; freeze 0 keeps every convolution)."
        )
        app_ui.table(tables.named_layers(layers))
    if look.presenting:
        st.subheader("Every model of the zoo")
        app_ui.table(cards)
