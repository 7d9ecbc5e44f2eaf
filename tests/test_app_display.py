"""What the pages show, as pure functions: run lists that fit, Table 2's spreads, hints, user text made safe."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from cgcnn.app import hints, plain, tables

RLO = "\u202e"  # right-to-left override


def test_narrow_run_list_keeps_state_and_mae_in_few_columns():
    frame = pd.DataFrame(
        [{"id": "a1b2c3d4", "owner": f"ev{RLO}e", "model": "band-gap", "k": 2, "target": "band_gap",
          "sizes": "1000/1000/1000", "epochs": 30, "seed": 0, "status": "done", "progress": 1.0,
          "state": "done in 1 min · reused from run 0000aaaa, trained by bob", "test MAE": 0.41234}]
    )  # fmt: skip
    shown = tables.narrow_runs(frame)
    assert list(shown.columns) == ["id", "owner", "model", "protocol", "progress", "state", "test MAE"]
    row = shown.iloc[0]
    assert row["model"] == "band-gap k2" and row["protocol"] == "band_gap · 1000/1000/1000 · 30 ep · seed 0"
    assert row["progress"] == "100%" and row["owner"] == "eve" and "trained by bob" in row["state"]
    assert row["test MAE"] == 0.41234
    assert tables.narrow_runs(frame.drop(columns=["owner"])).columns[1] == "model"


def test_bidi_controls_are_dropped_wherever_user_text_is_shown():
    name = f"alice{RLO}gnp.exe"
    assert RLO not in plain.text(name) and RLO not in plain.markdown(name) and RLO not in plain.plotly(name)
    for control in "\u200e\u200f\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069\u061c":
        assert plain.text(f"a{control}b") == "ab"
    runs = pd.DataFrame({"id": ["x"], "test_mae": [0.5], "owner": [name]})
    assert RLO not in tables.on_screen_runs(runs)["owner"].iloc[0]


def test_table2_spreads_show_three_significant_digits():
    comparison = pd.DataFrame({"std_mae": [0.0123456, np.nan, 0.123456789, 1.23456], "mean_mae": [0.5123456] * 4})
    shown = tables.table2_display(comparison)
    assert shown["std_mae"].iloc[0] == 0.0123 and math.isnan(shown["std_mae"].iloc[1])
    assert list(shown["std_mae"].iloc[2:]) == [0.123, 1.23]
    assert shown["mean_mae"].iloc[0] == 0.5123456  # only the spreads are rounded


def test_a_metal_at_the_band_gap_models_floor_gets_a_note(cif_dir):
    from cgcnn.app.uploads import predict_uploads
    from cgcnn.zoo import load_model

    files = [(f"{i}.cif", (cif_dir / f"{i}.cif").read_bytes()) for i in ("mp-2260", "mp-684969")]
    table, errors = predict_uploads({"band-gap": load_model("band-gap")}, files)
    assert errors == []
    values = dict(zip(table["file"], table["band-gap (eV)"], strict=True))
    assert hints.at_floor("band-gap", values["mp-2260.cif"]) and not hints.at_floor("band-gap", values["mp-684969.cif"])
    (note,) = hints.floor_notes(table)
    assert note.startswith("1 crystal(s) at the floor of band-gap") and "0.3707 eV" in note
    assert not hints.at_floor("formation-energy-per-atom", 0.37074)
