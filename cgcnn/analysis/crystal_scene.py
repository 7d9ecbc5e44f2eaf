"""The 3D crystal scene: atoms, periodic images, graph edges and the cell, drawn by 3Dmol.js, as pure functions.

Nothing here imports Streamlit or runs a model: every function takes arrays and returns a :class:`Scene` or an
HTML string, so the viewer page stays thin and the scene can be tested on its own.

The crystal scene (:func:`build_scene`, :func:`crystal_scene_html`) draws

* the unit cell (12 lines),
* every atom of the cell as a sphere coloured by element (Jmol colours) or by a per-atom value,
* the crystal graph's edges as cylinders from the centre atom ``i`` (``edge_dst``) to its neighbour ``j``
  (``edge_src``) at ``frac_coords[j] + images[e]``; a neighbour outside the cell (non-zero image) is drawn as
  a translucent "ghost" sphere at that position, so edges that reach into neighbouring cells end on an atom;
* optionally, edges coloured and sized by a value (attention coefficient, gate magnitude);
* optionally, marked edges (e.g. the ones removed by the viewer's *Remove the top N edges*) as dashed red
  cylinders, always drawn whatever the edge filter (within the focus atom's edges when one atom is shown).

3Dmol.js is loaded from ``js_url`` (by default the app's own static copy, :data:`LOCAL_3DMOL_URL`), never
from a CDN, so the viewer works offline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cgcnn.analysis.colors import ATOM_COLORSCALE, VALUE_COLORSCALE, element_color, gradient_css, value_colors
from cgcnn.analysis.markup import html_text, js_file_name
from cgcnn.data.graph import CrystalGraph

#: Where the app serves its copy of 3Dmol.js (``static/3Dmol-min.js`` with static serving on).
LOCAL_3DMOL_URL = "/app/static/3Dmol-min.js"

_CELL_EDGES = [(0, 1), (0, 2), (0, 4), (1, 3), (1, 5), (2, 3), (2, 6), (3, 7), (4, 5), (4, 6), (5, 7), (6, 7)]


@dataclass
class SceneAtom:
    """A sphere of the scene: an atom of the cell, or a ghost (a periodic image reached by an edge)."""

    index: int
    element: str
    position: tuple[float, float, float]
    color: str
    radius: float
    image: tuple[int, int, int] = (0, 0, 0)
    ghost: bool = False
    value: float | None = None


@dataclass
class SceneEdge:
    """A drawn edge: centre atom ``centre`` (in the cell) to neighbour ``neighbour`` at lattice image ``image``."""

    edge: int
    centre: int
    neighbour: int
    image: tuple[int, int, int]
    start: tuple[float, float, float]
    end: tuple[float, float, float]
    distance: float
    color: str
    radius: float
    value: float | None = None
    marked: bool = False


#: Colour of marked edges (dashed): outside the edges' Viridis map, so a marked edge never reads as a value.
MARKED_COLOR = "#d62728"


@dataclass
class Scene:
    """Everything a viewer draws, plus its legend.

    Attributes:
        atoms: spheres of the cell's atoms.
        ghosts: translucent spheres of periodic images at the far end of edges.
        edges: cylinders.
        cell_lines: the 12 edges of the unit cell as (start, end) points.
        legend: element symbol → colour of the elements present.
        value_range: (min, max) of the colour bar of edge values, None without values.
        value_range_fixed: True when ``value_range`` was given (e.g. over every layer), not the drawn edges'.
        value_label: what the edge values are (for the colour bar).
        atom_value_range: (min, max) of the per-atom value colour bar, None when atoms are coloured by element.
        atom_value_label: what the per-atom values are.
        n_graph_edges: real (not fill-in) edges of the graph, before any filter.
        truncated: True when ``max_edges`` cut the drawing short.
        marked_label: what the dashed red edges are (legend line; '' without marked edges).
        value_note: a line under the edges' colour bar (the viewer: how faithful this colouring was measured).
    """

    atoms: list[SceneAtom]
    ghosts: list[SceneAtom]
    edges: list[SceneEdge]
    cell_lines: list[tuple[tuple[float, float, float], tuple[float, float, float]]]
    legend: dict[str, str] = field(default_factory=dict)
    value_range: tuple[float, float] | None = None
    value_label: str = ""
    value_range_fixed: bool = False
    atom_value_range: tuple[float, float] | None = None
    atom_value_label: str = ""
    n_graph_edges: int = 0
    truncated: bool = False
    marked_label: str = ""
    value_note: str = ""


def _atom_radius(symbol: str) -> float:
    from pymatgen.core import Element

    try:
        r = Element(symbol).atomic_radius
    except ValueError:
        r = None
    return float(np.clip(0.38 * float(r if r is not None else 1.3), 0.25, 0.8))


def _xyz(v: np.ndarray) -> tuple[float, float, float]:
    return (round(float(v[0]), 4), round(float(v[1]), 4), round(float(v[2]), 4))


def select_edges(
    graph: CrystalGraph,
    edge_values: np.ndarray | None = None,
    focus_atom: int | None = None,
    top_k: int | None = None,
    dedupe: bool | None = None,
) -> np.ndarray:
    """Indices of the graph edges to draw, in graph order.

    Args:
        graph: the crystal graph.
        edge_values: one value per edge (``(E,)``), needed for ``top_k``.
        focus_atom: keep only the edges whose centre is this atom.
        top_k: keep each centre atom's ``k`` edges of largest value.
        dedupe: drop the reverse twin of an edge (``j → i`` at ``-image`` when ``i → j`` at ``image`` is kept);
            default: only when there are no values and no focus atom (values are directed, a bond is not).

    Fill-in edges (``edge_mask`` False) are never drawn.
    """
    keep = np.flatnonzero(graph.edge_mask)
    if focus_atom is not None:
        keep = keep[graph.edge_dst[keep] == focus_atom]
    if top_k is not None and edge_values is not None:
        values = np.asarray(edge_values, dtype=float)
        chosen = []
        for centre in np.unique(graph.edge_dst[keep]):
            own = keep[graph.edge_dst[keep] == centre]
            chosen.extend(own[np.argsort(-values[own], kind="stable")[:top_k]].tolist())
        keep = np.array(sorted(chosen), dtype=np.int64)
    if dedupe is None:
        dedupe = edge_values is None and focus_atom is None
    if dedupe:
        seen: set[tuple[int, int, int, int, int]] = set()
        unique = []
        for e in keep.tolist():
            i, j = int(graph.edge_dst[e]), int(graph.edge_src[e])
            img = tuple(int(x) for x in graph.images[e])
            twin = (j, i, -img[0], -img[1], -img[2])
            if twin in seen:
                continue
            seen.add((i, j, *img))
            unique.append(e)
        keep = np.array(unique, dtype=np.int64)
    return keep


def build_scene(
    lattice: np.ndarray,
    frac_coords: np.ndarray,
    species: list[str],
    graph: CrystalGraph,
    edge_values: np.ndarray | None = None,
    *,
    focus_atom: int | None = None,
    top_k: int | None = None,
    dedupe: bool | None = None,
    atom_values: np.ndarray | None = None,
    value_label: str = "edge value",
    atom_value_label: str = "atom value",
    max_edges: int = 4000,
    value_range: tuple[float, float] | None = None,
    marked_edges: np.ndarray | None = None,
    marked_label: str = "marked edges",
    value_note: str = "",
) -> Scene:
    """Atoms, ghost atoms, edges and cell of one crystal (see the module docstring).

    Args:
        lattice: ``(3, 3)`` lattice vectors as rows, Å.
        frac_coords: ``(n, 3)`` fractional coordinates of the graph's atoms (same order as the graph).
        species: ``n`` element symbols.
        graph: the crystal graph of these atoms.
        edge_values: ``(E,)`` value per edge (a 2-D ``(E, H)`` array is averaged over heads); colours and
            thickens edges.
        focus_atom: draw only this atom's edges.
        top_k: draw only each atom's ``k`` largest-valued edges.
        dedupe: see :func:`select_edges`.
        atom_values: ``(n,)`` per-atom values: atoms are coloured by them instead of by element.
        value_label: colour bar title of the edge values.
        atom_value_label: colour bar title of the atom values.
        max_edges: draw at most this many edges (a huge cell must not freeze the browser).
        value_range: (min, max) of the edges' colour bar; default: the drawn edges' own range. Give one range
            for several scenes (e.g. every layer of a model) so that one colour means one value in all of them.
        marked_edges: edge indices drawn dashed in :data:`MARKED_COLOR` and added to the drawing whatever
            ``top_k`` keeps (with ``focus_atom``, only that atom's).
        marked_label: the legend's words for the marked edges.
        value_note: a line under the edges' colour bar.
    """
    lattice = np.asarray(lattice, dtype=float)
    frac = np.asarray(frac_coords, dtype=float)
    if len(frac) != graph.n_atoms or len(species) != graph.n_atoms:
        raise ValueError("frac_coords, species and the graph must describe the same atoms")
    values = None
    if edge_values is not None:
        values = np.asarray(edge_values, dtype=float)
        if values.ndim == 2:
            values = values.mean(axis=1)
        if values.shape != (len(graph.edge_src),):
            raise ValueError(f"edge_values must have one value per edge ({len(graph.edge_src)}), got {values.shape}")

    cart = frac @ lattice
    legend = {s: element_color(s) for s in dict.fromkeys(species)}
    atom_range = None
    if atom_values is not None:
        atom_values = np.asarray(atom_values, dtype=float)
        atom_colors = value_colors(atom_values, colorscale=ATOM_COLORSCALE)
        atom_range = (float(np.nanmin(atom_values)), float(np.nanmax(atom_values)))
    else:
        atom_colors = [legend[s] for s in species]
    atoms = [
        SceneAtom(
            index=i,
            element=s,
            position=_xyz(cart[i]),
            color=atom_colors[i],
            radius=_atom_radius(s),
            value=None if atom_values is None else float(atom_values[i]),
        )
        for i, s in enumerate(species)
    ]

    chosen = select_edges(graph, values, focus_atom, top_k, dedupe)
    marked = np.zeros(len(graph.edge_src), dtype=bool)
    if marked_edges is not None and len(marked_edges):
        marked[np.asarray(marked_edges, dtype=np.int64)] = True
        marked &= np.asarray(graph.edge_mask, dtype=bool)
        if focus_atom is not None:
            marked &= graph.edge_dst == focus_atom
        chosen = np.union1d(chosen, np.flatnonzero(marked)).astype(np.int64)
    truncated = len(chosen) > max_edges
    chosen = chosen[:max_edges]
    fixed = value_range is not None and values is not None
    if values is not None and len(chosen):
        drawn = values[chosen]
        if value_range is None:
            value_range = (float(drawn.min()), float(drawn.max()))
        value_range = (float(value_range[0]), float(value_range[1]))
        colors = value_colors(drawn, *value_range)
        span = value_range[1] - value_range[0]
        t = np.zeros_like(drawn) if span < 1e-12 else (drawn - value_range[0]) / span
        radii = 0.05 + 0.17 * np.clip(t, 0.0, 1.0)
    else:
        value_range = None
        colors = ["#9a9a9a"] * len(chosen)
        radii = np.full(len(chosen), 0.06)

    edges, ghosts, ghost_seen = [], [], set()
    for k, e in enumerate(chosen.tolist()):
        i, j = int(graph.edge_dst[e]), int(graph.edge_src[e])
        img = tuple(int(x) for x in graph.images[e])
        end = (frac[j] + np.asarray(img)) @ lattice
        edges.append(
            SceneEdge(
                edge=e,
                centre=i,
                neighbour=j,
                image=img,
                start=_xyz(cart[i]),
                end=_xyz(end),
                distance=float(graph.distances[e]),
                color=MARKED_COLOR if marked[e] else colors[k],
                radius=max(float(radii[k]), 0.1) if marked[e] else float(radii[k]),
                value=None if values is None else float(values[e]),
                marked=bool(marked[e]),
            )
        )
        if any(img) and (j, img) not in ghost_seen:
            ghost_seen.add((j, img))
            ghosts.append(
                SceneAtom(
                    index=j,
                    element=species[j],
                    position=_xyz(end),
                    color=atoms[j].color,
                    radius=atoms[j].radius * 0.8,
                    image=img,  # type: ignore[arg-type]
                    ghost=True,
                )
            )

    corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=float) @ lattice
    cell_lines = [(_xyz(corners[a]), _xyz(corners[b])) for a, b in _CELL_EDGES]
    return Scene(
        atoms=atoms,
        ghosts=ghosts,
        edges=edges,
        cell_lines=cell_lines,
        legend=legend,
        value_range=value_range,
        value_label=value_label if values is not None else "",
        value_range_fixed=fixed,
        atom_value_range=atom_range,
        atom_value_label=atom_value_label if atom_values is not None else "",
        n_graph_edges=int(graph.edge_mask.sum()),
        truncated=truncated,
        marked_label=marked_label if marked.any() else "",
        value_note=value_note if values is not None else "",
    )


def scene_from_structure(structure, graph: CrystalGraph, edge_values: np.ndarray | None = None, **kwargs) -> Scene:
    """:func:`build_scene` from a pymatgen ``Structure`` (the graph must be built from the same structure)."""
    species = [site.specie.symbol for site in structure]
    return build_scene(structure.lattice.matrix, structure.frac_coords, species, graph, edge_values, **kwargs)


def _p(xyz: tuple[float, float, float]) -> dict[str, float]:
    return {"x": xyz[0], "y": xyz[1], "z": xyz[2]}


def scene_html(
    scene: Scene,
    js_url: str = LOCAL_3DMOL_URL,
    width: int | str = 640,
    height: int = 480,
    zoom: float = 1.0,
    png_name: str | None = None,
    png_title: str = "",
    legend_px: int = 13,
    legend_first: bool = False,
) -> str:
    """A self-contained HTML fragment: the 3Dmol.js viewer of ``scene`` and its legend and colour bars.

    One ``addSphere`` per atom and ghost, one ``addCylinder`` per edge, one ``addLine`` per cell edge. The view
    is turned slightly off the axes, centred on everything drawn and zoomed to fit it (``zoomTo``), then by
    ``zoom``.

    Args:
        scene: what to draw.
        js_url: where the browser loads 3Dmol.js from (the app's own copy: the page works offline).
        width: pixels, or a CSS width such as ``"100%"`` (the scene then fills its frame).
        height: pixels.
        zoom: extra zoom after fitting (> 1 fills more of the frame).
        png_name: with a name, a *Download PNG* button under the view saves the scene as that file (the
            browser renders it with ``viewer.pngURI()``: nothing leaves the machine), with ``png_title`` above
            it and the element legend and colour bars below (:func:`png_spec`): a picture on a slide must say
            what it shows.
        png_title: the PNG's title line (crystal, model, layer, head, colouring).
        legend_px: text size of the legend and colour bars (16 in presentation mode).
        legend_first: the legend and colour bars above the view instead of below (presentation mode: a
            projector's 720 px put them below the fold); the colouring's evidence line then goes under the
            view, so the crystal itself stays above the fold.
    """
    import py3Dmol

    view = py3Dmol.view(width=width, height=height, js=js_url)
    view.setBackgroundColor("white")
    for a, b in scene.cell_lines:
        view.addLine({"start": _p(a), "end": _p(b), "color": "#555555"})
    for atom in scene.atoms:
        view.addSphere({"center": _p(atom.position), "radius": atom.radius, "color": atom.color})
    for ghost in scene.ghosts:
        view.addSphere({"center": _p(ghost.position), "radius": ghost.radius, "color": ghost.color, "opacity": 0.35})
    for edge in scene.edges:
        spec = {"start": _p(edge.start), "end": _p(edge.end), "radius": edge.radius, "color": edge.color}
        marked = {"dashed": True, "dashLength": 0.25, "gapLength": 0.18}
        spec.update(marked if edge.marked else {"fromCap": 1, "toCap": 1})
        view.addCylinder(spec)
    view.rotate(-20, "x")  # a slight oblique view: a cubic cell seen straight down an axis looks flat
    view.rotate(25, "y")
    view.zoomTo()
    if zoom != 1.0:
        view.zoom(float(zoom))
    view.startjs += "window.cgcnnViewer = viewer_UNIQUEID;\n"  # for the PNG button (and tests)
    viewer = view._make_html()
    png = png_button_html(png_name, png_spec(scene, png_title), font_px=legend_px) if png_name else ""
    if legend_first:
        return legend_html(scene, legend_px, with_note=False) + viewer + value_note_html(scene, legend_px) + png
    return viewer + legend_html(scene, legend_px) + png


#: The PNG button's script. The 3D canvas (3Dmol keeps its drawing buffer) is copied onto a 2D canvas between a
#: title line and the element legend and colour bars of ``window.cgcnnPngSpec`` (see :func:`png_spec`), drawn
#: at the canvas's own pixel density; then saved through a link. Text is drawn with ``fillText``: never markup.
_PNG_JS = """<script>
function cgcnnPngURI() {
  var viewer = window.cgcnnViewer;
  if (!viewer) { return null; }
  viewer.render();
  var gl = viewer.getCanvas();
  var spec = window.cgcnnPngSpec || {title: "", elements: [], bars: []};
  var k = gl.clientWidth ? gl.width / gl.clientWidth : 1;
  var font = Math.round(16 * k), pad = Math.round(10 * k), line = Math.round(24 * k), barW = Math.round(240 * k);
  var out = document.createElement("canvas");
  var ctx = out.getContext("2d");
  ctx.font = font + "px sans-serif";
  var rows = [], x = pad, row = [];
  spec.elements.forEach(function (e) {
    var w = line + ctx.measureText(e[0]).width + pad;
    if (x + w > gl.width - pad && row.length) { rows.push(row); row = []; x = pad; }
    row.push([e, x]); x += w;
  });
  if (row.length) { rows.push(row); }
  var titleH = spec.title ? line + pad : 0;
  out.width = gl.width;
  out.height = titleH + gl.height + pad + rows.length * line + spec.bars.length * 2 * line + pad;
  ctx = out.getContext("2d");
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(0, 0, out.width, out.height);
  ctx.textBaseline = "middle";
  var title = spec.title, size = font;
  ctx.font = "bold " + size + "px sans-serif";
  while (title && size > 8 && ctx.measureText(title).width > out.width - 2 * pad) {
    size -= 1; ctx.font = "bold " + size + "px sans-serif";
  }
  ctx.fillStyle = "#111111";
  if (title) { ctx.fillText(title, pad, pad + line / 2); }
  ctx.drawImage(gl, 0, titleH);
  var y = titleH + gl.height + pad + line / 2;
  ctx.font = font + "px sans-serif";
  rows.forEach(function (r) {
    r.forEach(function (item) {
      var e = item[0], x0 = item[1], radius = line / 2 - 3 * k;
      ctx.beginPath(); ctx.arc(x0 + line / 2, y, radius, 0, 2 * Math.PI);
      ctx.fillStyle = e[1]; ctx.fill(); ctx.strokeStyle = "#666666"; ctx.lineWidth = k; ctx.stroke();
      ctx.fillStyle = "#111111"; ctx.fillText(e[0], x0 + line, y);
    });
    y += line;
  });
  spec.bars.forEach(function (b) {
    ctx.fillStyle = "#111111";
    ctx.fillText(b.what + ": " + b.label, pad, y);
    y += line;
    ctx.fillText(b.low, pad, y);
    var x0 = pad + ctx.measureText(b.low).width + pad;
    var grad = ctx.createLinearGradient(x0, 0, x0 + barW, 0);
    b.stops.forEach(function (c, i) { grad.addColorStop(i / (b.stops.length - 1), c); });
    ctx.fillStyle = grad;
    ctx.fillRect(x0, y - line / 3, barW, 2 * line / 3);
    ctx.fillStyle = "#111111";
    ctx.fillText(b.high, x0 + barW + pad, y);
    y += line;
  });
  return out.toDataURL("image/png");
}
function cgcnnSavePng(name) {
  var uri = cgcnnPngURI();
  if (!uri) { return; }
  var link = document.createElement("a");
  link.href = uri;
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
}
</script>"""


def png_spec(scene: Scene, title: str = "") -> dict:
    """What the downloaded PNG shows around the 3D canvas: a title line, the element legend, each colour bar.

    The same legend and bars as :func:`legend_html` (element chips only while atoms are coloured by element).
    """
    elements = [[symbol, color] for symbol, color in scene.legend.items()] if scene.atom_value_range is None else []
    bars = [
        {"what": what, "label": label + note, "low": _short(rng[0]), "high": _short(rng[1]),
         "stops": value_colors(np.linspace(0.0, 1.0, 9), 0.0, 1.0, colorscale)}
        for what, label, rng, colorscale, note in _bars(scene)
    ]  # fmt: skip
    return {"title": title, "elements": elements, "bars": bars}


def png_button_html(file_name: str, spec: dict | None = None, font_px: int = 13) -> str:
    """A *Download PNG* button that saves the scene above it (see :func:`scene_html`) as ``file_name``.

    ``spec`` (:func:`png_spec`) adds the title, legend and colour bars to the picture; it is embedded as JSON
    with ``<`` escaped, so no text in it can end the script.
    """
    import json

    safe = js_file_name(file_name, default="crystal.png")
    data = json.dumps(spec or {"title": "", "elements": [], "bars": []}).replace("<", "\\u003c")
    return (
        _PNG_JS + f"<script>window.cgcnnPngSpec = {data};</script>"
        '<button type="button" class="cgcnn-png" '
        f'onclick="cgcnnSavePng(\'{safe}\')" style="margin-top:6px;font-size:{font_px}px;padding:3px 10px;'
        'border:1px solid #999;border-radius:4px;background:#f6f6f6;cursor:pointer">Download PNG</button>'
    )


def _short(value: float) -> str:
    """A colour bar's end as a student reads it: 3 significant digits, and 0 for float noise like 1e-25."""
    return "0" if abs(value) < 5e-4 else f"{value:.3g}"


def _bars(scene: Scene) -> list[tuple[str, str, tuple[float, float], str, str]]:
    """``(what, label, range, colour scale, note)`` of each colour bar the scene has (edges, then atoms)."""
    bars = (
        ("Edges", scene.value_label, scene.value_range, VALUE_COLORSCALE,
         " (fixed over all layers)" if scene.value_range_fixed else ""),
        ("Atoms", scene.atom_value_label, scene.atom_value_range, ATOM_COLORSCALE, ""),
    )  # fmt: skip
    return [bar for bar in bars if bar[2] is not None]


def value_note_html(scene: Scene, font_px: int = 13) -> str:
    """The line of evidence about the edges' colouring (``scene.value_note``); empty without one."""
    if not scene.value_note:
        return ""
    return (
        f'<div class="cgcnn-faithfulness" style="font-family:sans-serif;font-size:{font_px}px;margin-top:2px">'
        f"{html_text(scene.value_note)}</div>"
    )


def legend_html(scene: Scene, font_px: int = 13, with_note: bool = True) -> str:
    """Element chips (while atoms are coloured by element) and one labelled colour bar per coloured thing.

    Edges and atoms have different colour maps (:data:`VALUE_COLORSCALE`, :data:`ATOM_COLORSCALE`), so each
    bar is named for what it colours; the element chips go once atoms take a value's colour instead. Text at
    ``font_px`` (16 in presentation mode); chips and bars grow with it. ``with_note``: the colouring's
    evidence line (:func:`value_note_html`) under the edges' bar; without it the caller places that line.
    """
    chip, bar_w, bar_h = round(font_px * 1.1), round(font_px * 14), round(font_px * 0.9)
    parts = [f'<div class="cgcnn-legend" style="font-family:sans-serif;font-size:{font_px}px;margin-top:6px">']
    if scene.atom_value_range is None:
        parts.extend(
            f'<span class="cgcnn-element" style="display:inline-flex;align-items:center;margin-right:12px">'
            f'<span style="width:{chip}px;height:{chip}px;border-radius:{chip // 2}px;background:{color};'
            f'display:inline-block;border:1px solid #666;margin-right:4px"></span>{html_text(symbol)}</span>'
            for symbol, color in scene.legend.items()
        )
        parts.append('<span style="color:#555">(atoms coloured by element; translucent = periodic image)</span>')
    for what, label, rng, colorscale, note in _bars(scene):
        parts.append(
            f'<div class="cgcnn-colorbar" data-for="{what.lower()}" '
            'style="margin-top:6px;display:flex;align-items:center;gap:6px;flex-wrap:wrap">'
            f"<span><b>{what}</b>: {html_text(label)}{note}</span><span>{_short(rng[0])}</span>"
            f'<span style="width:{bar_w}px;height:{bar_h}px;display:inline-block;'
            f'background:linear-gradient(to right, {gradient_css(colorscale=colorscale)})"></span>'
            f"<span>{_short(rng[1])}</span></div>"
        )
        if what == "Edges" and with_note:
            parts.append(value_note_html(scene, font_px))
    if scene.marked_label:
        parts.append(
            f'<div class="cgcnn-marked" style="margin-top:6px;display:flex;align-items:center;gap:6px">'
            f'<span style="width:{bar_h * 3}px;height:0;border-top:{max(3, font_px // 4)}px dashed {MARKED_COLOR};'
            f'display:inline-block"></span><span>{html_text(scene.marked_label)}</span></div>'
        )
    parts.append("</div>")
    return "".join(parts)


def crystal_scene_html(
    structure,
    graph: CrystalGraph,
    edge_values: np.ndarray | None = None,
    *,
    js_url: str = LOCAL_3DMOL_URL,
    width: int = 640,
    height: int = 480,
    **scene_kwargs,
) -> str:
    """HTML of the 3Dmol.js view of a crystal and its graph (see :func:`build_scene` for ``scene_kwargs``)."""
    return scene_html(scene_from_structure(structure, graph, edge_values, **scene_kwargs), js_url, width, height)


def edge_table(scene: Scene) -> pd.DataFrame:
    """One row per drawn edge: centre, neighbour, element, distance, image, value (sorted by value)."""
    species = {a.index: a.element for a in scene.atoms}
    rows = [
        {
            "centre": e.centre,
            "neighbour": e.neighbour,
            "element": species[e.neighbour],
            "distance (Å)": round(e.distance, 3),
            "image": str(e.image),
            "coefficient": e.value,
            "removed": e.marked,
        }
        for e in scene.edges
    ]
    columns = ["centre", "neighbour", "element", "distance (Å)", "image", "coefficient", "removed"]
    frame = pd.DataFrame(rows, columns=columns)
    if not scene.marked_label:
        frame = frame.drop(columns=["removed"])
    if frame["coefficient"].notna().any():
        frame = frame.sort_values("coefficient", ascending=False, kind="stable").reset_index(drop=True)
    return frame


def count_drawn(html: str) -> dict[str, int]:
    """How many spheres, cylinders (of them ``dashed``: marked edges) and lines an HTML scene draws (for tests)."""
    return {
        "spheres": html.count(".addSphere("),
        "cylinders": html.count(".addCylinder("),
        "dashed": html.count('"dashed": true'),
        "lines": html.count(".addLine("),
    }
