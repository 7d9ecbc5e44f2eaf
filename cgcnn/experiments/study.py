"""The study's published numbers (Table 2 and Table 3) and which zoo model stands for each of its rows."""

from __future__ import annotations

from cgcnn.training.transfer import SCRATCH, is_scratch

#: The study's numbers (test MAE on band gap, eV; one seed each). Table 2: by pretrained model and freeze depth.
STUDY_BASELINE = 0.812
STUDY_TABLE2: dict[str, dict[int, float]] = {
    "formation energy": {1: 0.797, 2: 0.765, 3: 0.865},
    "bulk modulus": {1: 0.776, 2: 0.897, 3: 0.956},
    "shear modulus": {1: 0.846, 2: 0.993, 3: 0.988},
    "combined": {1: 0.820, 2: 0.850, 3: 0.870},
}
#: Table 3: formation energy pretrained on as many crystals as the combined model (7,042 in the study).
STUDY_TABLE3_MATCHED = {1: 1.022, 2: 1.142, 3: 1.437}
MATCHED_ROW = "formation energy (matched size)"
#: Which zoo model plays each row of the study's tables here.
STUDY_ROWS = {
    SCRATCH: "scratch",
    "formation-energy-per-atom": "formation energy",
    "bulk-moduli": "bulk modulus",
    "shear-moduli": "shear modulus",
    "own-combined": "combined",
    "own-formation-energy-matched": MATCHED_ROW,
}


def study_row(pretrained: str | None) -> str:
    """The row of the study's tables that a pretrained model stands for (its own name if none)."""
    name = SCRATCH if is_scratch(pretrained) else pretrained
    return STUDY_ROWS.get(name, name)


def study_mae(pretrained: str | None, freeze: int) -> float | None:
    """The study's single-seed test MAE for the cell that ``pretrained`` and ``freeze`` stand for."""
    row = study_row(pretrained)
    if row == "scratch":
        return STUDY_BASELINE if freeze == 0 else None
    table = STUDY_TABLE3_MATCHED if row == MATCHED_ROW else STUDY_TABLE2.get(row, {})
    return table.get(freeze)
