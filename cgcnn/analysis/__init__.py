"""Looking inside models: probes and maps, edge weights, attribution and its faithfulness, figures and 3D scenes."""

from __future__ import annotations

from cgcnn._facade import lazy_exports

_EXPORTS = {
    "linear_probe": "cgcnn.analysis.probe",
    "crystal_map": "cgcnn.analysis.probe",
    "edge_weight_layers": "cgcnn.analysis.explain",
    "atom_contributions": "cgcnn.analysis.explain",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
