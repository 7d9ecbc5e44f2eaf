"""Colours of the pictures: elements in Jmol colours, values on a colour scale, as ``#rrggbb`` strings.

The crystal scene and the figures share the value scale (:data:`VALUE_COLORSCALE`), so one colour means one
kind of number across the app; atoms' values get their own scale (:data:`ATOM_COLORSCALE`) so a student never
reads an atom's colour on the edges' bar.
"""

from __future__ import annotations

import functools

import numpy as np
from plotly.colors import sample_colorscale

#: Colour scale of values in figures, and of the crystal scene's edge values (plotly name).
VALUE_COLORSCALE = "Viridis"
#: Colour scale of the crystal scene's per-atom values: another map than the edges', so a student never reads an
#: atom's colour on the edges' bar (both are shown, each labelled).
ATOM_COLORSCALE = "Bluered"


@functools.cache
def _jmol_colors() -> dict[str, str]:
    from importlib import resources

    from monty.serialization import loadfn

    path = resources.files("pymatgen.vis") / "ElementColorSchemes.yaml"
    scheme = loadfn(str(path))["Jmol"]
    return {el: "#{:02x}{:02x}{:02x}".format(*(int(c) for c in rgb)) for el, rgb in scheme.items()}


def element_color(symbol: str) -> str:
    """Jmol colour of an element as ``#rrggbb`` (grey for unknown symbols)."""
    return _jmol_colors().get(symbol, "#808080")


def value_colors(
    values: np.ndarray, vmin: float | None = None, vmax: float | None = None, colorscale: str = VALUE_COLORSCALE
) -> list[str]:
    """Map values to ``#rrggbb`` colours on ``colorscale`` (``vmin``..``vmax``, default min..max)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return []
    lo = float(np.nanmin(values)) if vmin is None else vmin
    hi = float(np.nanmax(values)) if vmax is None else vmax
    t = np.zeros_like(values) if hi - lo < 1e-12 else np.clip((values - lo) / (hi - lo), 0.0, 1.0)
    t = np.nan_to_num(t, nan=0.0)
    return [_rgb_to_hex(c) for c in sample_colorscale(colorscale, t.tolist())]


def _rgb_to_hex(rgb: str) -> str:
    parts = rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")
    return "#{:02x}{:02x}{:02x}".format(*(round(float(p)) for p in parts[:3]))


def gradient_css(n: int = 9, colorscale: str = VALUE_COLORSCALE) -> str:
    """``n`` colour stops of ``colorscale`` for a CSS ``linear-gradient``: a colour bar drawn without plotly."""
    stops = value_colors(np.linspace(0.0, 1.0, n), 0.0, 1.0, colorscale)
    return ", ".join(stops)
