"""Runs grouped by recipe: what Compare shows a class instead of one line per run.

Thirty students with a few runs each put a hundred lines on one chart, and nobody can read "does freezing
help?" from it. The question is about recipes (a pretrained model, a freeze depth, a target, sizes, epochs,
hyperparameters), each run on several model seeds or split seeds; the answer is each recipe's mean with a band
that says how far the mean can be trusted. A recipe is the spec without its seeds
(:func:`cgcnn.runs.store.recipe_key`).

Replicates are computations, not entries: when 30 students queue the same spec, the store computes it once and
gives each an entry pointing to it (:mod:`cgcnn.runs.sharing`); counting the 30 entries as 30 runs would make a
band of zero width from one computation. So a recipe holds one computation per (model seed, split seed): the
newest finished one ("train again" of the same seeds gives the same numbers at one thread, and would count one
replicate twice).

The band is a 95% t-interval of the mean over the recipe's replicates (:func:`cgcnn.experiments.stats.t_interval`),
labelled with what varied between them: model seeds (initialisation and data order on one split), split seeds
(other training, validation and test crystals), or both.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import pandas as pd

from cgcnn.app.plain import text
from cgcnn.experiments.stats import t_interval
from cgcnn.names import name_key
from cgcnn.runs.schema import HYPERPARAM_KEY_DEFAULTS, REPLICATE_SPEC_KEYS, canonical_spec
from cgcnn.runs.store import RunRecord, RunStore, recipe_key
from cgcnn.training.transfer import is_scratch

#: What varied between a recipe's replicates (the ``band_over`` column), in the words the legend uses.
BAND_OVER = {
    "seeds": "model seeds",
    "splits": "split seeds",
    "seeds and splits": "model and split seeds",
    "none": "one run, no band",
}
#: Epoch rows fetched per query (SQLite versions before 3.32 allow 999 parameters per statement).
EPOCH_QUERY_CHUNK = 500


def filter_runs(
    records: Iterable[RunRecord],
    owners: Collection[str] | None = None,
    run_ids: Collection[str] | None = None,
) -> list[RunRecord]:
    """The runs a comparison looks at: of some owners, and/or among a set of run ids.

    Args:
        records: runs of the store (``RunStore.list_runs``).
        owners: display names (matched by :func:`cgcnn.names.name_key`, as the store matches them); None or
            empty: everyone.
        run_ids: the runs of a lesson session (or any selection: a sweep, an export); an entry matches by its
            own id or by the computation it reuses. None: no restriction. A lesson session's runs come as a set
            of ids (``LessonBook.experiment_runs(...)["run_id"]``); a later ``session_id`` column would be read
            into such a set by the caller, so this function keeps one way of saying "these runs".
    """
    keys = {name_key(o) for o in owners} if owners else None
    ids = set(run_ids) if run_ids is not None else None
    return [
        r
        for r in records
        if (keys is None or r.owner_key in keys)
        and (ids is None or r.id in ids or (r.source_run_id is not None and r.source_run_id in ids))
    ]


@dataclass(frozen=True)
class Recipe:
    """One recipe and its replicates: one finished computation per (model seed, split seed).

    Attributes:
        key: :func:`~cgcnn.runs.store.recipe_key` of the runs' specs.
        label: the recipe in words (model, freeze, target, sizes, epochs, then any other setting).
        runs: one entry per replicate (the newest finished computation of that seed pair), oldest seed first.
        computations: the id of the computation behind each entry of ``runs`` (its epochs are stored there).
        owners: how many people own an entry of this recipe (entries that reuse a computation included).
    """

    key: str
    label: str
    runs: tuple[RunRecord, ...]
    computations: tuple[str, ...]
    owners: int

    @property
    def n(self) -> int:
        """Number of replicates."""
        return len(self.runs)

    @property
    def band_over(self) -> str:
        """What varied between the replicates: ``seeds``, ``splits``, ``seeds and splits`` or ``none``."""
        if self.n < 2:
            return "none"
        seeds = len({r.seed for r in self.runs}) > 1
        splits = len({r.split_seed for r in self.runs}) > 1
        return {(True, False): "seeds", (False, True): "splits"}.get((seeds, splits), "seeds and splits")

    @property
    def target(self) -> str:
        """The recipe's target (one per recipe: the target is part of the recipe key)."""
        return str(self.runs[0].target or "")


def recipe_label(spec: dict[str, Any]) -> str:
    """A recipe in words: ``formation-energy-per-atom k2 · band_gap 1000/1000/1000 · 30 ep · lr=0.01``.

    The fixed part names what every recipe has; every other field of the canonical spec (a strategy, a
    non-default hyperparameter, the user's data) follows as ``key=value``, so two recipes never share a label
    unless they share a key.
    """
    clean = {k: v for k, v in canonical_spec(spec).items() if k not in REPLICATE_SPEC_KEYS}
    pretrained = clean.pop("pretrained", None)
    model = "scratch" if pretrained is None or is_scratch(str(pretrained)) else str(pretrained)
    freeze = clean.pop("freeze", 0)
    target = clean.pop("target", "?")
    sizes = "/".join(str(clean.pop(k, "?")) for k in ("n_train", "n_val", "n_test"))
    hyper = dict(clean.pop("hyperparams", None) or {})
    epochs = hyper.pop("epochs", "?")
    clean.pop("model_kind", None)  # follows from the pretrained model
    parts = [f"{model} k{freeze}", f"{target} {sizes}", f"{epochs} ep"]
    for key, value in sorted(clean.items()):
        if key == "data" and value:
            value = PurePath(str(value)).name
        parts.append(f"{key}={value}")
    parts.extend(f"{key}={value}" for key, value in sorted(hyper.items()) if key not in HYPERPARAM_KEY_DEFAULTS
                 or value != HYPERPARAM_KEY_DEFAULTS[key])  # fmt: skip
    return text(" · ".join(parts))


def group_recipes(records: Iterable[RunRecord]) -> list[Recipe]:
    """Finished (``done``) runs grouped by recipe, one replicate per (model seed, split seed), sorted by label.

    Entries that reuse one computation count once; of several computations of the same seed pair, the newest.
    """
    done = [r for r in records if r.status == "done"]
    owners: dict[str, set[str]] = {}
    best: dict[tuple[str, Any, Any], RunRecord] = {}
    # by finish time: an entry carries its computation's (FOLLOW_COLUMNS), so the newest computation wins
    for record in sorted(done, key=lambda r: (r.finished_at or r.created_at, r.created_at)):
        key = recipe_key(record.spec)
        owners.setdefault(key, set()).add(record.owner_key)
        slot = (key, record.seed, record.split_seed)
        previous = best.get(slot)
        if previous is None or _computation(previous) != _computation(record):
            best[slot] = record
    grouped: dict[str, list[RunRecord]] = {}
    for (key, _, _), record in best.items():
        grouped.setdefault(key, []).append(record)
    recipes = []
    for key, runs in grouped.items():
        runs.sort(key=lambda r: (-1 if r.split_seed is None else r.split_seed, -1 if r.seed is None else r.seed))
        recipes.append(
            Recipe(
                key=key,
                label=recipe_label(runs[0].spec),
                runs=tuple(runs),
                computations=tuple(_computation(r) for r in runs),
                owners=len(owners[key]),
            )
        )
    return sorted(recipes, key=lambda r: (r.label, r.key))


def _computation(record: RunRecord) -> str:
    return record.source_run_id or record.id


def recipe_table(recipes: Sequence[Recipe]) -> pd.DataFrame:
    """One row per recipe: n replicates and the mean, standard deviation and 95% t-interval of their test MAE."""
    rows = []
    for recipe in recipes:
        maes = [r.test_mae for r in recipe.runs if r.test_mae is not None]
        mean, low, high = t_interval(maes)
        std = float(pd.Series(maes, dtype=float).std(ddof=1)) if len(maes) > 1 else float("nan")
        rows.append(
            {
                "recipe": recipe.label,
                "n": len(maes),
                "test_mae_mean": mean,
                "test_mae_std": std,
                "ci95_low": low if len(maes) > 1 else float("nan"),
                "ci95_high": high if len(maes) > 1 else float("nan"),
                "replicates": BAND_OVER[recipe.band_over],
                "model_seeds": _values(r.seed for r in recipe.runs),
                "split_seeds": _values(r.split_seed for r in recipe.runs),
                "owners": recipe.owners,
            }
        )
    columns = ["recipe", "n", "test_mae_mean", "test_mae_std", "ci95_low", "ci95_high", "replicates",
               "model_seeds", "split_seeds", "owners"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def _values(values: Iterable[Any]) -> str:
    unique = sorted({v for v in values if v is not None})
    return ", ".join(str(v) for v in unique)


def recipe_epochs(store: RunStore, recipes: Sequence[Recipe]) -> pd.DataFrame:
    """The epochs of every replicate, read by computation id (one query per :data:`EPOCH_QUERY_CHUNK` runs)."""
    ids = list(dict.fromkeys(c for recipe in recipes for c in recipe.computations))
    parts = [store.epochs_many(ids[k : k + EPOCH_QUERY_CHUNK]) for k in range(0, len(ids), EPOCH_QUERY_CHUNK)]
    return pd.concat(parts, ignore_index=True) if parts else store.epochs_many([])


def recipe_curves(recipes: Sequence[Recipe], epochs: pd.DataFrame, metric: str = "val_mae") -> pd.DataFrame:
    """Per recipe and epoch: how many replicates reached it, their mean ``metric`` and its 95% t-interval.

    Args:
        recipes: from :func:`group_recipes`.
        epochs: ``run_id`` (a computation id), ``epoch`` and ``metric`` columns (:func:`recipe_epochs`).
        metric: an epoch column (``val_mae`` by default: what early stopping and the class look at).

    Returns:
        Columns ``recipe`` (key), ``label``, ``band_over``, ``epoch``, ``n``, ``mean``, ``low``, ``high``. A run
        stopped early by patience has fewer epochs; later epochs average the runs that reached them (``n``
        says how many), and an epoch reached by one run has no band (``low == high == mean``).
    """
    columns = ["recipe", "label", "band_over", "epoch", "n", "mean", "low", "high"]
    if epochs.empty or metric not in epochs.columns:
        return pd.DataFrame(columns=columns)
    by_run = {run_id: part for run_id, part in epochs.groupby("run_id", sort=False)}
    rows = []
    for recipe in recipes:
        parts = [by_run[c] for c in recipe.computations if c in by_run]
        if not parts:
            continue
        frame = pd.concat(parts)
        for epoch, part in frame.groupby("epoch", sort=True):
            values = part[metric].dropna().to_numpy(dtype=float)
            if not len(values):
                continue
            mean, low, high = t_interval(values)
            rows.append([recipe.key, recipe.label, recipe.band_over, int(epoch), len(values), mean, low, high])
    return pd.DataFrame(rows, columns=columns)


def most_common_target(recipes: Sequence[Recipe]) -> str | None:
    """The target with the most replicates (Compare opens on it when recipes of several targets are stored)."""
    counts: dict[str, int] = {}
    for recipe in recipes:
        counts[recipe.target] = counts.get(recipe.target, 0) + recipe.n
    return max(counts, key=lambda t: (counts[t], t)) if counts else None
