"""The tables the pages show, as pandas frames: the zoo, a transfer's layers, runs, Table 2 and probes."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cgcnn.analysis.probe import linear_probe
from cgcnn.app.plain import text
from cgcnn.errors import CGCNNError
from cgcnn.experiments.study import MATCHED_ROW, STUDY_BASELINE, STUDY_TABLE2, STUDY_TABLE3_MATCHED, study_row
from cgcnn.names import name_key
from cgcnn.paths import project_path
from cgcnn.runs.estimates import format_duration, remaining_seconds
from cgcnn.runs.store import RunRecord, RunStore
from cgcnn.training.baselines import BASELINES
from cgcnn.training.protocol import STUDY
from cgcnn.training.transfer import is_scratch

# --------------------------------------------------------------------------------------------------- models


def model_choices(
    store: RunStore | None = None, include_classifier: bool = False, include_ensembles: bool = False
) -> list[str]:
    """Names a user can pick: the zoo's models (originals, own, saved runs), and shipped ensembles where asked.

    A shipped ensemble predicts (Predict, the viewer) but cannot be fine-tuned or probed as one model.
    """
    from cgcnn.zoo import list_cards

    cards = list_cards(store)
    return [
        c.name
        for c in cards
        if (include_classifier or c.task != "classification") and (include_ensembles or c.kind != "ensemble")
    ]


def cards_frame(store: RunStore | None = None) -> pd.DataFrame:
    """The zoo as a table (one row per model; ``shift penalty``: shifted / random test MAE, own models only).

    ``90% coverage (test)``: the shipped share of its test block inside the calibrated 90% interval, with the
    mean width (:mod:`cgcnn.app.zoo_coverage`), or "not calibrated" / "not measured".
    """
    from cgcnn.app.zoo_coverage import coverage_cell, shipped_coverage
    from cgcnn.zoo import list_cards

    measured = shipped_coverage()
    return pd.DataFrame(
        [
            {
                "name": c.name,
                "kind": c.kind,
                "property": c.property,
                "units": c.units,
                "train size": c.train_size,
                "MAE": c.mae,
                "metric": c.mae_metric,
                "task": c.task,
                "shift penalty": f"{c.shift_penalty['ratio']}x" if c.shift_penalty else None,
                "90% interval": interval_text(c.calibration),
                "90% coverage (test)": coverage_cell(c.calibration, measured.get(c.name)),
            }
            for c in list_cards(store)
        ]
    )


def zoo_card(name: str, store: RunStore | None = None):
    """The zoo's card of ``name`` (a shipped ensemble's too, which a loaded :class:`Ensemble` does not carry)."""
    from cgcnn.zoo import list_cards

    for card in list_cards(store):
        if card.name == name:
            return card
    raise CGCNNError(f"no model named {name!r} in the zoo")


def interval_text(calibration: dict) -> str:
    """What the zoo table says of a model's calibrated intervals (see ``ModelCard.calibration``)."""
    if not calibration or "half_width" not in calibration:
        return "none (original checkpoint)" if calibration.get("reason") else "none"
    if calibration.get("method", "").startswith("normalised"):
        return f"± {calibration['half_width']['90']:.2f} × seed spread (calibrated on {calibration['n_val']})"
    return f"± {calibration['half_width']['90']:.3f} (calibrated on {calibration['n_val']})"


def layer_frame(predictor, freeze: int) -> tuple[pd.DataFrame, Any]:
    """Per-layer parameters and state (frozen / kept / re-initialised) of a transfer at depth ``freeze``.

    Returns:
        ``(frame with layer, params, state, trainable; FreezeReport)``.

    Raises:
        CGCNNError: a freeze depth this model does not have.
    """
    from cgcnn.training.transfer import prepare_transfer

    model, report = prepare_transfer(predictor.model, freeze, ["new target"])
    rows = []
    for name in model.layer_names():
        module = model.get_submodule(name)
        params = sum(p.numel() for p in module.parameters())
        if name in report.frozen_layers:
            state = "frozen"
        elif name in report.pretrained_layers:
            state = "kept"
        else:
            state = "re-initialised"
        rows.append({"layer": name, "params": params, "state": state, "trainable": state != "frozen"})
    return pd.DataFrame(rows), report


def named_layers(frame: pd.DataFrame) -> pd.DataFrame:
    """A :func:`layer_frame` with the layers named as the diagram names them (``conv 1``, not ``convs.0``)."""
    from cgcnn.analysis.figures import layer_display_name

    return frame.assign(layer=[layer_display_name(name) for name in frame["layer"]])


# --------------------------------------------------------------------------------------------------- run views


def run_label(record: RunRecord) -> str:
    """``a1b2c3d4 · formation-energy-per-atom k2 · band_gap 1000/1000/1000 · 30 ep · seed 0 · alice``.

    Everything that tells two runs apart in a list: model, freeze depth, target, split sizes, epochs, seed and
    owner (plus the saved name), so runs of different protocols never look alike.
    """
    model = model_label(record)
    sizes = "/".join(str(n) for n in (record.n_train, record.n_val, record.n_test))
    epochs = (record.spec.get("hyperparams") or {}).get("epochs", "?")
    name = f" «{record.name}»" if record.name else ""
    owner = f" · {record.owner}" if record.owner else ""
    budget = "baseline" if record.pretrained in BASELINES else f"{epochs} ep"  # a baseline trains no epochs
    protocol = f"{record.target} {sizes} · {budget} · seed {record.seed}"
    strategy = record.spec.get("strategy") or "freeze"
    recipe = f"k{record.freeze}" + ("" if strategy == "freeze" else f" {strategy}")  # the study's recipe unnamed
    return text(f"{record.id} · {model} {recipe} · {protocol}{owner}{name}")  # no bidi controls


def protocol_of(record: RunRecord) -> tuple:
    """What makes runs comparable: target, split sizes and seed, epochs, data."""
    hyper = record.spec.get("hyperparams") or {}
    return (record.target, record.n_train, record.n_val, record.n_test, record.split_seed, hyper.get("epochs"),
            record.spec.get("data") or "default")  # fmt: skip


def default_comparison(records: list[RunRecord], user: str, limit: int = 5) -> list[str]:
    """The runs Compare opens with: the user's finished runs of their latest protocol (never a mix of protocols).

    Without a user (or finished runs of theirs), everyone's runs of the latest finished protocol.
    """
    done = sorted((r for r in records if r.status == "done"), key=lambda r: r.created_at, reverse=True)
    mine = [r for r in done if user and r.owner_key == name_key(user)] or done
    if not mine:
        return []
    protocol = protocol_of(mine[0])
    return [r.id for r in mine if protocol_of(r) == protocol][:limit]


def run_progress(record: RunRecord, epochs: pd.DataFrame) -> tuple[float, str]:
    """(fraction done, one line: epoch k/N, ETA, or the final state) of a run.

    The time left comes from the one speed model (:func:`cgcnn.runs.estimates.remaining_seconds`: the run's
    own epoch times), as the queue's ETAs do.
    """
    total = max(1, int((record.spec.get("hyperparams") or {}).get("epochs", STUDY.epochs) or STUDY.epochs))
    done = len(epochs)
    if record.status == "queued":
        return 0.0, "queued"
    if record.status == "running":
        if not done:
            return 0.02, "starting: loading data and building graphs"
        seconds = [float(s) for s in epochs["seconds"].dropna()]
        eta_text = ""
        if seconds:
            crystals = (record.n_train or 0) + (record.n_val or 0)
            eta_text = f", about {format_duration(remaining_seconds(crystals, total, seconds))} left"
        return min(done / total, 0.99), f"epoch {done}/{total}{eta_text}"
    if record.status == "done":
        mae = f", test MAE {record.test_mae:.4f}" if record.test_mae is not None else ""
        return 1.0, f"done in {format_duration(record.seconds or 0)}{mae}"
    # an error that only repeats the status (a cancel stores "cancelled") is not shown twice
    detail = record.error if record.error and record.error.strip() != record.status else ""
    return min(done / total, 1.0), f"{record.status}: {detail}".rstrip(": ")


def progress_as_percent(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its ``progress`` column (0-1) as text (``45%``), for tables that cannot draw bars."""
    if "progress" not in frame.columns:
        return frame
    return frame.assign(progress=[f"{100 * p:.0f}%" if pd.notna(p) else "" for p in frame["progress"]])


def runs_frame(records: list[RunRecord]) -> pd.DataFrame:
    """A table of runs for listings and CSV export.

    The columns that tell runs apart, and the test MAE, come first, so they stay on screen at 1280 px.
    """
    rows = []
    for r in records:
        rows.append(
            {
                "id": r.id,
                "test_mae": r.test_mae,
                "pretrained": model_label(r),
                "freeze": r.freeze,
                "target": r.target,
                "sizes": f"{r.n_train}/{r.n_val}/{r.n_test}",
                "epochs": (r.spec.get("hyperparams") or {}).get("epochs"),
                "seed": r.seed,
                "owner": r.owner,
                "status": r.status,
                "name": r.name or "",
                "data": r.spec.get("data") or "default",
                "seconds": r.seconds,
                "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created_at)),
            }
        )
    return pd.DataFrame(rows)


#: Columns of :func:`runs_frame` shown on the Compare page (the CSV keeps every column): the ones that tell runs
#: apart and the test MAE, few enough that none is clipped at 1280 px.
ON_SCREEN_RUN_COLUMNS = ["id", "test_mae", "pretrained", "freeze", "target", "sizes", "epochs", "seed", "owner"]


def on_screen_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """The :data:`ON_SCREEN_RUN_COLUMNS` of a :func:`runs_frame` (all of them for an empty frame)."""
    shown = frame[[c for c in ON_SCREEN_RUN_COLUMNS if c in frame.columns]]
    if "owner" in shown.columns:  # a legacy name with a right-to-left override must not reverse the row
        shown = shown.assign(owner=[text(o) if o else "" for o in shown["owner"]])
    return shown


def model_label(record: RunRecord) -> str:
    """The pretrained model of a run, ``scratch`` for none."""
    return "scratch" if is_scratch(record.pretrained) else str(record.pretrained)


def eta_text(seconds: float | None, ahead: int) -> str:
    """A queued run's wait in words: ``about 3 min, 5 runs ahead`` (``next in line`` with nothing ahead)."""
    where = "next in line" if ahead <= 0 else f"{ahead} run{'s' if ahead != 1 else ''} ahead"
    if seconds is None or math.isnan(seconds):
        return f"queued, {where}"
    rounded = max(5, round(seconds / 5) * 5) if seconds < 60 else math.ceil(seconds / 60) * 60  # no false precision
    return f"about {format_duration(rounded)}, {where}"


def reuse_text(entry: RunRecord, computed: RunRecord) -> str:
    """``reused from run X, trained by Y`` for an entry answered by another run; '' for a run computed itself."""
    if computed.id == entry.id:
        return ""
    return f"reused from run {computed.id}, trained by {computed.owner or 'someone'}"


@dataclass
class RunView:
    """One entry of a run list with what it shows: the computed run behind it, its epochs, its queue wait."""

    entry: RunRecord
    computed: RunRecord
    epochs: pd.DataFrame
    eta: tuple[float | None, int] | None = None


def queue_etas(store: RunStore, run_ids: list[str], workers: int | None = None) -> dict[str, tuple[float | None, int]]:
    """``RunStore.queue_eta`` of each queued computation (the page caches this for a few seconds)."""
    return {run_id: store.queue_eta(run_id, workers=workers) for run_id in run_ids}


def run_views(
    store: RunStore,
    records: list[RunRecord],
    etas: Callable[[list[str]], dict[str, tuple[float | None, int]]] | None = None,
) -> list[RunView]:
    """The entries with the computed runs behind them, in a few queries whatever the number of runs.

    A page with 100 runs must rerun in well under a second, so this reads every computed run once (entries
    that reuse the same computation share it), the epochs of unfinished runs in one query (a finished run
    needs none: its record has the result), and the queue estimate only for queued computations, through
    ``etas`` (ids → estimates; default :func:`queue_etas`), which a page can cache: each estimate simulates
    the whole queue.
    """
    by_id = {r.id: r for r in records}
    computed: dict[str, RunRecord] = {}
    for r in records:
        source = r.source_run_id
        if source is None:
            computed[r.id] = r
        else:
            if source not in by_id:
                by_id[source] = store.resolve(r.id)
            computed[r.id] = by_id[source]
    live = {c.id for c in computed.values() if c.status != "done"}
    epochs = store.epochs_many(sorted(live))
    groups = {run_id: frame for run_id, frame in epochs.groupby("run_id", sort=False)} if len(epochs) else {}
    empty = epochs.iloc[0:0]
    queued = sorted({c.id for c in computed.values() if c.status == "queued"})
    waits = (etas or (lambda ids: queue_etas(store, ids)))(queued) if queued else {}
    return [
        RunView(r, computed[r.id], groups.get(computed[r.id].id, empty), waits.get(computed[r.id].id)) for r in records
    ]


def view_progress(view: RunView) -> tuple[float, str]:
    """(fraction done, one line) of an entry: its computation's progress, the queue wait, the reuse."""
    frac, text = run_progress(view.computed, view.epochs)
    if view.computed.status == "queued" and view.eta is not None:
        text = eta_text(*view.eta)
    reused = reuse_text(view.entry, view.computed)
    return frac, f"{text} · {reused}" if reused else text


def compact_frame(views: list[RunView], with_owner: bool = False) -> pd.DataFrame:
    """One row per run entry: what it is (model, k, target, sizes, epochs, seed), where it stands, its result.

    Columns: ``id``, [``owner``], ``model``, ``k`` (freeze depth), ``target``, ``sizes`` (train/val/test),
    ``epochs``, ``seed``, ``status``, ``progress`` (0-1), ``state`` (epoch, ETA, reuse, error), ``test MAE``.
    """
    rows = []
    for view in views:
        r, c = view.entry, view.computed
        frac, state = view_progress(view)
        row = {"id": r.id}
        if with_owner:
            row["owner"] = r.owner
        row.update(
            {
                "model": model_label(r) + (f" «{r.name}»" if r.name else ""),
                "k": r.freeze,
                "target": r.target,
                "sizes": f"{r.n_train}/{r.n_val}/{r.n_test}",
                "epochs": (r.spec.get("hyperparams") or {}).get("epochs"),
                "seed": r.seed,
                "status": c.status,
                "progress": round(frac, 3),
                "state": state,
                "test MAE": c.test_mae,
            }
        )
        rows.append(row)
    columns = ["id", *(["owner"] if with_owner else []), "model", "k", "target", "sizes", "epochs", "seed"]
    columns += ["status", "progress", "state", "test MAE"]
    return pd.DataFrame(rows, columns=columns)


def narrow_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """A :func:`compact_frame` as the run lists show it: few columns that wrap, so nothing scrolls off at 1280 px.

    At 1280-1400 px a page's main column is about 820 px wide, and the twelve columns needed 1,154 px: *state*
    (ETA, "reused from … trained by …") and *test MAE* were scrolled off. Here what the run is takes two columns
    (``model`` with its freeze depth, ``protocol``: target, sizes, epochs, seed), the status is left to *state*
    (which says it in words), progress is a percentage, and user text loses bidirectional controls.
    """
    if frame.empty:
        return frame
    out = pd.DataFrame({"id": frame["id"]})
    if "owner" in frame.columns:
        out["owner"] = [text(o) if o else "" for o in frame["owner"]]
    out["model"] = [f"{text(m)} k{k}" for m, k in zip(frame["model"], frame["k"], strict=True)]
    out["protocol"] = [
        f"{t} · {s} · {e} ep · seed {seed}"
        for t, s, e, seed in zip(frame["target"], frame["sizes"], frame["epochs"], frame["seed"], strict=True)
    ]
    out["progress"] = progress_as_percent(frame)["progress"]
    out["state"] = [text(v) for v in frame["state"]]
    out["test MAE"] = frame["test MAE"]
    return out


def compact_runs(store: RunStore, records: list[RunRecord], with_owner: bool = False) -> pd.DataFrame:
    """:func:`compact_frame` of ``records`` read from ``store`` (the Fine-tune page's and the teacher's table)."""
    return compact_frame(run_views(store, records), with_owner=with_owner)


def table2_cells(records: list[RunRecord] | pd.DataFrame) -> pd.DataFrame:
    """Done runs of Table 2's protocol, grouped by (pretrained, freeze).

    The protocol: the study's (:data:`cgcnn.training.protocol.STUDY`: band gap, 1000/1000/1000, 30 epochs, no
    early stopping), split seed 0, freezing (not a warm start, nor another fine-tuning strategy), the default
    data. Any other run (another split, the 100-epoch budget, a user's data) would change what a cell's mean is
    a mean of, so it is left out.

    Args:
        records: run records of the store, or a sweep's ``runs.csv`` frame (see :func:`shipped_runs`; a frame
            without a ``split_seed`` column is split 0).

    Returns:
        columns ``row``, ``pretrained``, ``freeze``, ``mean``, ``std``, ``n`` (std over seeds; NaN for one).
    """
    if isinstance(records, pd.DataFrame):
        frame = records.assign(split_seed=records["split_seed"].fillna(0) if "split_seed" in records else 0)
        if "strategy" in frame:  # runs.csv names scratch's strategy "none"
            frame = frame[frame["strategy"].fillna("freeze").isin(["freeze", "none"])]
        frame = frame[["pretrained", "freeze", "target", "n_train", "n_val", "n_test", "split_seed", "test_mae"]]
        rows = [
            r
            for r in frame.dropna().rename(columns={"test_mae": "mae"}).to_dict("records")
            if int(r["split_seed"]) == 0 and STUDY.matches(r["target"], (r["n_train"], r["n_val"], r["n_test"]), {})
        ]
    else:
        rows = [
            {"pretrained": r.pretrained, "freeze": r.freeze, "mae": r.test_mae}
            for r in records
            if r.status == "done" and r.test_mae is not None and _is_table2_run(r)
        ]
    rows = [
        {"row": study_row(r["pretrained"]), "pretrained": r["pretrained"], "freeze": int(r["freeze"]), "mae": r["mae"]}
        for r in rows
    ]
    if not rows:
        return pd.DataFrame(columns=["row", "pretrained", "freeze", "mean", "std", "n"])
    frame = pd.DataFrame(rows)
    grouped = frame.groupby(["row", "pretrained", "freeze"], sort=True)["mae"].agg(["mean", "std", "count"])
    return grouped.rename(columns={"count": "n"}).reset_index()


def _is_table2_run(record: RunRecord) -> bool:
    """Whether a stored run followed Table 2's protocol (see :func:`table2_cells`)."""
    spec = record.spec
    return (
        not spec.get("data")
        and not spec.get("warm_start")
        and (spec.get("strategy") or "freeze") == "freeze"  # the study froze; other strategies are other recipes
        and int(record.split_seed or 0) == 0
        and STUDY.matches(
            record.target, (record.n_train or 0, record.n_val or 0, record.n_test or 0), record.hyperparams
        )
    )


#: The shipped sweeps Table 2 is read from: the study's grid (``table2``) and its matched-size row (``table3``),
#: both on split 0 with the study's protocol. The other folders (another split, the 100-epoch budget, reruns
#: kept for rescoring) answer other questions and stay out of the heatmap.
TABLE2_RESULTS = ("table2", "table3")


def shipped_results_dir() -> Path:
    """Folder of the sweep results that ship with the project (``docs/results``)."""
    return project_path("docs", "results")


def shipped_runs() -> pd.DataFrame:
    """The runs of Table 2's shipped sweeps (:data:`TABLE2_RESULTS`), so a fresh server has Table 2 at once."""
    paths = [shipped_results_dir() / name / "runs.csv" for name in TABLE2_RESULTS]
    frames = [pd.read_csv(p) for p in paths if p.is_file()]
    return pd.concat(frames, ignore_index=True).drop_duplicates("run_id") if frames else pd.DataFrame()


def study_frame() -> pd.DataFrame:
    """The study's Table 2 as rows (``row``, ``freeze``, ``mae``); the scratch baseline at freeze 0."""
    rows = [{"row": "scratch", "freeze": 0, "mae": STUDY_BASELINE}]
    rows += [{"row": row, "freeze": f, "mae": mae} for row, cells in STUDY_TABLE2.items() for f, mae in cells.items()]
    rows += [{"row": MATCHED_ROW, "freeze": f, "mae": mae} for f, mae in STUDY_TABLE3_MATCHED.items()]
    return pd.DataFrame(rows)


def table2_comparison(cells: pd.DataFrame) -> pd.DataFrame:
    """The store's cells beside the study's numbers (for the table and the CSV export)."""
    study = study_frame().rename(columns={"mae": "study_mae"})
    ours = cells.rename(columns={"mean": "mean_mae", "std": "std_mae"})
    merged = study.merge(ours, on=["row", "freeze"], how="outer")
    merged["difference"] = merged["mean_mae"] - merged["study_mae"]
    return merged.sort_values(["row", "freeze"]).reset_index(drop=True)


def significant(value: float, digits: int = 3) -> float:
    """``value`` rounded to ``digits`` significant digits (NaN stays NaN): 0.012345 → 0.0123."""
    if value is None or not math.isfinite(value) or value == 0:
        return value
    return float(f"{value:.{digits}g}")


def table2_display(comparison: pd.DataFrame) -> pd.DataFrame:
    """:func:`table2_comparison` as the page shows it: standard deviations to 3 significant digits.

    Five seeds say little beyond the second digit of a spread; 4-6 digits only made the column wide. The CSV
    export keeps every digit.
    """
    if "std_mae" not in comparison.columns:
        return comparison
    return comparison.assign(std_mae=[significant(v) for v in comparison["std_mae"]])


# --------------------------------------------------------------------------------------------------- crystals


def search_crystals(dataset, query: str = "", limit: int = 200) -> pd.DataFrame:
    """Crystals whose id or formula contains ``query`` (case-insensitive; exact matches first)."""
    ids = dataset.ids.astype(str)
    formulas = dataset.formulas.astype(str)
    sizes = np.diff(dataset.offsets)
    q = query.strip().lower()
    if q:
        mask = np.char.find(np.char.lower(ids), q) >= 0
        mask |= np.char.find(np.char.lower(formulas), q) >= 0
        exact = (np.char.lower(ids) == q) | (np.char.lower(formulas) == q)
        order = np.flatnonzero(mask)
        order = order[np.argsort(~exact[order], kind="stable")]
    else:
        order = np.arange(len(ids))
    order = order[:limit]
    return pd.DataFrame({"id": ids[order], "formula": formulas[order], "atoms": sizes[order]})


def dataset_glance(dataset) -> pd.DataFrame:
    """Crystals per label with units (for the home page)."""
    from cgcnn.data.datasets import TARGET_UNITS

    return pd.DataFrame(
        [{"label": k, "crystals": v, "units": TARGET_UNITS.get(k, "")} for k, v in dataset.label_counts().items()]
    )


# --------------------------------------------------------------------------------------------------- probes


def probe_frame(model_names: list[str], target: str, n_train: int, n_test: int) -> tuple[pd.DataFrame, list[str]]:
    """Linear-probe test MAE per depth for each model: ``(frame model, depth, mae, baseline; [errors])``."""
    rows, errors = [], []
    for name in model_names:
        try:
            result = linear_probe(name, target=target, n_train=n_train, n_test=n_test)
        except CGCNNError as exc:
            errors.append(f"{name}: {exc}")
            continue
        for k, depth in enumerate(result.depths):
            rows.append(
                {"model": name, "depth": k, "depth name": depth.depth, "mae": depth.test_mae,
                 "baseline": result.baseline_mae}
            )  # fmt: skip
    return pd.DataFrame(rows, columns=["model", "depth", "depth name", "mae", "baseline"]), errors
