"""What the crystal viewer says about its own edge colouring: is it faithful to what moves the prediction?

A colour map of attention can look convincing and still not be an explanation. The viewer therefore puts three
pieces of evidence beside it (issue 20), each worded to what it shows:

- the colouring's **measured faithfulness for this model**, read from the shipped results
  (``docs/results/faithfulness``, :func:`cgcnn.analysis.faithfulness.shipped_faithfulness`): the deletion AUC of
  this ranking against random orderings and against occlusion, with the paired 95 % intervals; "not measured"
  for a model those results do not cover. Never computed in the server: it takes minutes per model.
- **this crystal's deletion curve** for the colouring against random orderings, computed on demand (one batch of
  deletion copies; up to :data:`CURVE_MAX_ATOMS` atoms).
- **"Remove the top N edges"**: the prediction without the N edges the colouring ranks first, beside the same
  for N random real edges (:func:`cgcnn.analysis.faithfulness.remove_top_edges`, the code path of
  ``explain --remove-top``, so the numbers are the CLI's).

Pure functions of a predictor, a graph and the shipped files: no Streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from cgcnn.analysis import faithfulness
from cgcnn.analysis.markup import plotly_text
from cgcnn.app.plain import markdown
from cgcnn.data.graph import CrystalGraph
from cgcnn.nn.predictor import Predictor

#: The on-demand deletion curve is drawn for crystals of up to this many atoms (21 fractions × 11 orderings of
#: copies in one batch: 1.0 s for 6 atoms, 3.9 s for 32 on the shared 2-core machine under load 3.4).
CURVE_MAX_ATOMS = 32
#: Removal modes of *Remove the top N edges* (URL value ``removal=``) → the radio's label.
REMOVAL_LABELS = {
    "delete": "delete (the other neighbours renormalise)",
    "zero": "zero the message (no renormalising)",
}
#: Largest N the page accepts (a crystal's real edges cap it further, and the page says so).
MAX_REMOVE = 10_000


def colouring_method(kind: str, layer: int, head: int | None, occlusion: bool, n_atoms: int, limit: int) -> str:
    """The faithfulness method key of what the viewer paints on the edges.

    Args:
        kind: ``attention`` or ``gate`` (the model's convolutions).
        layer: convolution from 0.
        head: attention head from 0, None for the heads' mean.
        occlusion: edges coloured by occlusion attribution (``delete`` mode, as the viewer computes it).
        n_atoms: atoms of the crystal; past ``limit`` the viewer paints gradient × input instead of occlusion.
        limit: the viewer's occlusion limit (``OCCLUSION_MAX_ATOMS``).
    """
    if occlusion:
        return "occlusion_delete" if n_atoms <= limit else "gradient_input"
    return faithfulness.method_for_colouring(kind, layer, head)


def method_words(method: str) -> str:
    """A method key as a student reads it: ``attention_layer4_head1`` → ``attention (conv 4, head 1)``."""
    fixed = {
        "occlusion_delete": "occlusion (delete)",
        "occlusion_zero": "occlusion (zero)",
        "gradient_input": "gradient × input",
        "integrated_gradients": "integrated gradients",
        "random": "random order",
    }
    if method in fixed:
        return fixed[method]
    family, _, rest = method.partition("_")
    if rest == "mean":
        return f"{family} (mean over layers)"
    layer, _, head = rest.removeprefix("layer").partition("_head")
    return f"{family} (conv {layer}" + (f", head {head})" if head else ")")


@dataclass(frozen=True)
class ShippedEvidence:
    """The measured faithfulness of one colouring of one model, as the page shows it.

    Attributes:
        measured: the shipped results hold this model and method.
        short: one line for under the edges' colour bar.
        text: the full sentence(s) for the page, Markdown (the model's name is escaped: a run's name is typed by a
            user).
        numbers: :func:`cgcnn.analysis.faithfulness.shipped_faithfulness`'s dict, None when not measured.
    """

    measured: bool
    short: str
    text: str
    numbers: dict | None = None


def _verdict(paired: dict | None, other: str) -> str:
    """How a paired difference's 95 % interval reads: better, worse, or not distinguishable from ``other``."""
    if paired is None:
        return ""
    low, high = paired["ci"]
    numbers = f"{paired['mean']:+.2f} [{low:+.2f}, {high:+.2f}]"
    if low > 0:
        return f"more faithful than {other} ({numbers})"
    if high < 0:
        return f"less faithful than {other} ({numbers})"
    return f"not distinguishable from {other} on these crystals ({numbers})"


def shipped_evidence(model: str, method: str, folder=None) -> ShippedEvidence:
    """What the shipped faithfulness results say about colouring ``model``'s edges by ``method``.

    ``folder`` replaces ``docs/results/faithfulness`` (tests).
    """
    words = method_words(method)
    found = faithfulness.shipped_faithfulness(model, method, folder)
    if found is None:
        return ShippedEvidence(
            False,
            "faithfulness of this colouring: not measured for this model",
            f"**Faithfulness of this colouring: not measured** for {markdown(model)}. The shipped results "
            "(`docs/results/faithfulness`) cover the zoo's attention and gated models; measuring one takes "
            "minutes, so the viewer never does it (`python -m cgcnn faithfulness --model NAME` does). Until "
            "then, read the colours as what the layer computes, not as what moves the prediction.",
        )
    low, high = found["deletion_auc_ci"]
    auc, floor, occlusion = found["deletion_auc"], found["random_deletion_auc"], found["occlusion_deletion_auc"]
    short = (
        f"faithfulness (deletion AUC on {found['n']} test crystals): this colouring {auc:.2f}, "
        f"random {floor:.2f}, occlusion {occlusion:.2f}"
    )
    verdicts = [v for v in (_verdict(found.get("vs_random"), "random order"),
                            _verdict(found.get("vs_occlusion"), "occlusion")) if v]  # fmt: skip
    text = (
        f"**How faithful is this colouring?** Measured on {found['n']} test crystals of {markdown(model)} "
        f"(`docs/results/faithfulness`, edges removed with `{found['occlusion']}`): removing edges in the order "
        f"of {words} gives a deletion AUC of **{auc:.2f}** (95% CI {low:.2f}–{high:.2f}); random order gives "
        f"{floor:.2f}, occlusion {occlusion:.2f}. The AUC is the area under the curve below: 1 means the first "
        "edges removed carry the whole change of the prediction."
    )
    if verdicts:
        text += " Per crystal (paired, 95% CI): " + "; ".join(verdicts) + "."
    return ShippedEvidence(True, short, text, found)


def removal_text(report: dict, method: str, units: str, ensemble: bool = False) -> str:
    """The words beside *Remove the top N edges*: what was removed, how, and how to read the two shifts."""
    n, mode = report["removed"], report["occlusion"]
    top = report["prediction_without_top"] - report["prediction"]
    rand = report["prediction_without_random"] - report["prediction"]
    how = (
        "deleted (each atom's attention renormalises over its remaining neighbours)"
        if mode == "delete"
        else "zeroed (their messages × 0, the other attention weights unchanged)"
    )
    ratio = f" The top edges moved it {abs(top) / abs(rand):.1f}× as much as random ones." if abs(rand) > 1e-9 else ""
    text = (
        f"The {n} edges ranked first by {method_words(method)} (of {report['real_edges']} real edges; dashed red in "
        f"the picture), {how} in every convolution: the prediction moves by {top:+.3f} {units}; without {n} random "
        f"real edges (mean of {faithfulness.RANDOM_ORDERINGS} draws) by {rand:+.3f} {units}.{ratio} A faithful "
        "colouring's top edges move the prediction more than random ones."
    )
    if report.get("note"):
        text += f" Note: {report['note']}."
    if ensemble:
        text += " (The first model of the ensemble, the one whose weights colour the picture.)"
    return text


def crystal_curve(
    predictor: Predictor, graph: CrystalGraph, method: str, mode: str = "delete"
) -> dict[str, object] | str:
    """This crystal's deletion curve of ``method`` against random, with both AUCs; or why it is not drawn.

    Returns:
        ``{"method", "mode", "fractions", "curve", "random", "auc", "random_auc"}`` or a sentence.
    """
    if graph.n_atoms > CURVE_MAX_ATOMS:
        return (
            f"This crystal's deletion curve is computed for crystals of up to {CURVE_MAX_ATOMS} atoms (its "
            f"{len(faithfulness.FRACTIONS)} × {faithfulness.RANDOM_ORDERINGS + 1} removed copies go through the "
            f"model at once); this one has {graph.n_atoms}."
        )
    result = faithfulness.crystal_deletion_curve(predictor, graph, method, mode)
    if isinstance(result, str):
        return f"No deletion curve for this crystal: {result}."
    return {
        "method": method,
        "mode": mode,
        "fractions": np.asarray(result["fractions"]),
        "curve": np.asarray(result[method]),
        "random": np.asarray(result["random"]),
        "auc": faithfulness.auc(result[method]),
        "random_auc": faithfulness.auc(result["random"]),
    }


def deletion_curve_figure(curve: dict, height: int = 300) -> go.Figure:
    """This crystal's deletion curve (solid) against random orderings (dashed), AUCs in the legend.

    Font sizes are the app's (``app_ui.chart`` applies presentation mode's projector sizes).
    """
    words = method_words(str(curve["method"]))
    x = [float(v) for v in curve["fractions"]]  # plain lists: the chart's JSON holds the numbers as they are
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=x, y=[float(v) for v in curve["curve"]], mode="lines+markers", name=plotly_text(
                f"{words}: AUC {curve['auc']:.2f}"), line={"color": "#1f77b4", "width": 3}, marker={"size": 5},
            hovertemplate="%{x:.0%} removed: %{y:.2f}<extra></extra>",
        )
    )  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=x, y=[float(v) for v in curve["random"]], mode="lines",
            name=f"random order: AUC {curve['random_auc']:.2f}",
            line={"color": "black", "dash": "dash", "width": 2},
            hovertemplate="%{x:.0%} removed: %{y:.2f}<extra></extra>",
        )
    )  # fmt: skip
    fig.update_xaxes(title=f"fraction of real edges removed ({curve['mode']})", range=[0, 1], tickformat=".0%")
    fig.update_yaxes(title="share of the full change", range=[0, 1.05])
    fig.update_layout(
        title=plotly_text("This crystal's deletion curve"),
        height=height,
        margin={"l": 60, "r": 10, "t": 40, "b": 50},
        legend={"orientation": "h", "yanchor": "bottom", "y": 0.02, "xanchor": "right", "x": 0.98},
    )
    return fig
