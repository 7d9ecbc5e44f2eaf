"""Compatibility names for code written before the split: the pictures now live in three modules.

:mod:`cgcnn.analysis.crystal_scene` draws the 3D crystal scene, :mod:`cgcnn.analysis.figures` builds the plotly
figures, :mod:`cgcnn.analysis.colors` holds their colours and :mod:`cgcnn.analysis.markup` their escaping of
user text. New code imports those modules; this facade only resolves the old ``viz.<name>`` spellings (lazily,
so it costs nothing) and can go once no caller uses it.
"""

from __future__ import annotations

from cgcnn._facade import lazy_exports

_MODULES = {
    "cgcnn.analysis.colors": ("ATOM_COLORSCALE", "VALUE_COLORSCALE", "element_color", "gradient_css", "value_colors"),
    "cgcnn.analysis.crystal_scene": (
        "LOCAL_3DMOL_URL",
        "Scene",
        "SceneAtom",
        "SceneEdge",
        "build_scene",
        "count_drawn",
        "crystal_scene_html",
        "edge_table",
        "legend_html",
        "png_button_html",
        "scene_from_structure",
        "scene_html",
        "select_edges",
    ),
    "cgcnn.analysis.figures": (
        "HEATMAP_COLORSCALE",
        "LAYER_STATE_COLORS",
        "cell_text",
        "curves_figure",
        "histograms_figure",
        "layer_diagram",
        "layer_display_name",
        "parity_figure",
        "pca_figure",
        "probe_figure",
        "table2_heatmap",
    ),
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
