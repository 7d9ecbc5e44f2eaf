"""Notes a page adds beside a prediction that a student would otherwise misread.

The original band-gap model (the CGCNN paper's) never predicts below about 0.3707 eV: its last layer's output
for a crystal with no gap sits on its bias. Several metals read 0.3707 eV, which looks like a small gap, so a
prediction at that floor gets a note saying what it means.
"""

from __future__ import annotations

import math

import pandas as pd

#: The lowest value a zoo model predicts (its floor), by model name: the value a metal (no gap) gets.
PREDICTION_FLOORS = {"band-gap": 0.37074}
#: A prediction this close to a floor is at the floor.
FLOOR_TOLERANCE = 1e-4


def at_floor(model: str, value: float) -> bool:
    """Whether ``value`` predicted by ``model`` sits at that model's floor (see :data:`PREDICTION_FLOORS`)."""
    floor = PREDICTION_FLOORS.get(model)
    return floor is not None and not math.isnan(value) and abs(value - floor) <= FLOOR_TOLERANCE


def floor_note(model: str) -> str:
    """What a prediction at ``model``'s floor means, in one sentence."""
    return (
        f"{PREDICTION_FLOORS[model]:.4f} eV is the lowest band gap the {model} model ever predicts: metals and other "
        "crystals without a gap get it, so read it as 'no gap or a small one', not as a measured 0.37 eV."
    )


def floor_notes(table: pd.DataFrame) -> list[str]:
    """Notes for the Predict page's table: one per model column holding predictions at that model's floor.

    Columns are named ``<model> (<units>)`` (see :func:`cgcnn.app.uploads.predict_uploads`).
    """
    notes = []
    for model in PREDICTION_FLOORS:
        for column in table.columns:
            if str(column).split(" (")[0] != model:
                continue
            values = pd.to_numeric(table[column], errors="coerce")
            hits = int(sum(at_floor(model, float(v)) for v in values.dropna()))
            if hits:
                notes.append(f"{hits} crystal(s) at the floor of {model}: " + floor_note(model))
    return notes
