"""How well each zoo model's calibrated 90% interval covered its own test block, as the Model zoo page shows it.

The numbers are measured once and shipped (``docs/results/uncertainty/zoo-coverage.json``, written by
``docs/results/uncertainty/zoo_coverage.py`` with ``evaluate --test-block``'s call); the page reads them and
never evaluates a model. A model reads "not calibrated" when it has no calibration file (the originals: no
validation block of ours they did not train on), and "not measured" when it is calibrated but the shipped
results do not hold it (e.g. a retrained model, or a run).
"""

from __future__ import annotations

import json
from pathlib import Path

#: File of the shipped measurements, under ``docs/results/uncertainty``.
COVERAGE_FILE = "zoo-coverage.json"


def shipped_coverage(folder: Path | None = None) -> dict[str, dict]:
    """Each measured model's test-block metrics by name (``{}`` when the file is missing or unreadable)."""
    from cgcnn.paths import project_path

    path = (folder or project_path("docs", "results", "uncertainty")) / COVERAGE_FILE
    try:
        models = json.loads(path.read_text())["models"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return models if isinstance(models, dict) else {}


def calibrations(store=None) -> dict[str, dict]:
    """Each zoo model's calibration summary by name, as the zoo lists it (a loaded model's card lacks it)."""
    from cgcnn.zoo import list_cards

    return {c.name: c.calibration or {} for c in list_cards(store)}


def external_checks() -> dict[str, dict]:
    """The shipped external checks by model name (:func:`cgcnn.zoo.external_checks`)."""
    from cgcnn.zoo import external_checks as shipped

    return shipped()


def external_check_text(check: dict, units: str = "") -> str:
    """The card's sentence on its external check (plain text: every word comes from the shipped file)."""
    unit = f" {units}" if units else ""
    return (
        f"External check on {check['n']} elemental solids ({check['collection']}): MAE {check['mae']:.3f}{unit} "
        f"(bias {check['bias']:+.3f}); {check['mae_without_vdw']:.3f}{unit} on the {check['n_without_vdw']} that are "
        f"not van der Waals solids (Spearman {check['spearman_without_vdw']:.2f}). Caveat: {check['caveat']}."
    )


def coverage_cell(calibration: dict, measured: dict | None) -> str:
    """The zoo table's cell: ``0.951 of 531 (width 0.566)``, ``not calibrated`` or ``not measured``.

    Args:
        calibration: the card's calibration summary (``ModelCard.calibration``).
        measured: this model's row of :func:`shipped_coverage`, None when absent.
    """
    if not calibration or "half_width" not in calibration:
        return "not calibrated"
    if not measured or measured.get("coverage_90") is None:
        return "not measured"
    return f"{measured['coverage_90']:.3f} of {measured['n']} (width {measured['interval_width_90']:.3g})"


def coverage_sentence(name: str, calibration: dict, measured: dict | None, units: str = "") -> str:
    """The model card's sentence on its intervals, worded to what was measured (Markdown; ``name`` escaped)."""
    from cgcnn.app.plain import markdown

    units = f" {markdown(units)}" if units else ""
    if not calibration or "half_width" not in calibration:
        reason = calibration.get("reason") if calibration else None
        why = f" ({markdown(reason)})" if reason else ""
        return f"**Not calibrated**{why}: its predictions come without an interval."
    if not measured or measured.get("coverage_90") is None:
        return (
            f"**Calibrated 90% interval**, coverage not measured on a test block for {markdown(name)} "
            "(`docs/results/uncertainty/zoo_coverage.py` measures it)."
        )
    spread = measured.get("interval_width_90_std") or 0.0
    varies = (
        f", varying across crystals (std {spread:.3g})"
        if spread > 1e-9
        else ", the same for every crystal (one model: plain split conformal)"
    )
    return (
        f"**Calibrated 90% interval:** on its own test block ({measured['n']} crystals, never used to train or "
        f"calibrate) it held **{measured['coverage_90']:.1%}** of the true values (nominal 90%); mean width "
        f"{measured['interval_width_90']:.3g}{units}{varies}. 68%: {measured['coverage_68']:.1%}, 95%: "
        f"{measured['coverage_95']:.1%}. Guaranteed only for crystals like its validation block: under a "
        "chemistry shift expect lower coverage (not measured)."
    )
