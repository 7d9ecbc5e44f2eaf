"""Experiments over many fine-tunes: the study's numbers and sweeps with their statistics."""

from __future__ import annotations

from cgcnn._facade import lazy_exports

_EXPORTS = {
    "SweepGrid": "cgcnn.experiments.sweep",
    "LocalExecutor": "cgcnn.experiments.sweep",
    "run_sweep": "cgcnn.experiments.sweep",
    "summarize": "cgcnn.experiments.sweep",
    "curve_points": "cgcnn.experiments.learning_curve",
    "learning_curve_figure": "cgcnn.experiments.learning_curve",
    "save_learning_curve_png": "cgcnn.experiments.learning_curve",
    "study_mae": "cgcnn.experiments.study",
    "study_row": "cgcnn.experiments.study",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
