"""Runs grouped by recipe (issue 22, item 6): the recipe key, the grouping, the bands, and the Compare page.

The grouping tests use hand-made runs with known numbers (written through the store's public API), so the
band's value can be checked by hand: three runs with test MAE 0.5, 0.6, 0.7 have mean 0.6, sd 0.1 and a 95%
t-interval of 0.6 ± 4.3027 × 0.1 / √3. The page tests fill a store of their own with a class's worth of runs
(30 students, 300 runs; :mod:`devtools.class_runs`): the view must stay one line and one row per recipe.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cgcnn.analysis import figures
from cgcnn.app import recipes
from cgcnn.experiments.stats import t_interval
from cgcnn.runs.store import RunStore, compute_spec_key, recipe_key
from cgcnn.training.finetune import FinetuneSpec
from devtools.class_runs import make_class
from devtools.homes import own_home
from devtools.sign_in import token_of

ROOT = Path(__file__).resolve().parent.parent
T_975_2 = 4.302652729911275  # two-sided 95% t quantile with 2 degrees of freedom


def spec(**fields) -> dict:
    base = {"pretrained": "formation-energy-per-atom", "freeze": 2, "n_train": 40, "n_val": 20, "n_test": 20,
            "hyperparams": {"epochs": 2}}  # fmt: skip
    return FinetuneSpec(**{**base, **fields}).to_dict()


# ------------------------------------------------------------------------------------------------- recipe key


def test_recipe_key_ignores_the_seed_and_the_split_seed():
    reference = spec()
    for change in ({"seed": 3}, {"split_seed": 4}, {"seed": 1, "split_seed": 2}):
        other = spec(**change)
        assert compute_spec_key(other) != compute_spec_key(reference)  # another computation...
        assert recipe_key(other) == recipe_key(reference)  # ...of the same recipe


def test_recipe_key_keeps_every_other_field():
    reference = recipe_key(spec())
    changes = [
        {"pretrained": "band-gap"},
        {"freeze": 1},
        {"target": "formation_energy_per_atom"},
        {"n_train": 41},
        {"n_val": 21},
        {"n_test": 21},
        {"data": "my-crystals.zip"},
        {"warm_start": True},
        {"hyperparams": {"epochs": 3}},
        {"hyperparams": {"epochs": 2, "lr": 0.01}},
        {"hyperparams": {"epochs": 2, "batch_size": 32}},
    ]
    keys = [recipe_key(spec(**change)) for change in changes]
    assert reference not in keys and len(set(keys)) == len(keys)
    unknown = {**spec(), "strategy": "lp-ft"}  # a field added later separates recipes too
    assert recipe_key(unknown) != reference


def test_recipe_key_is_canonical_like_the_spec_key():
    written_out = spec(hyperparams={"epochs": 2, "batch_size": 64, "lr": 0.003, "threads": 2})  # defaults
    assert recipe_key(written_out) == recipe_key(spec())
    assert recipe_key({**spec(), "owner": "alice", "torch_threads": 2, "sweep_id": "s1"}) == recipe_key(spec())


# ------------------------------------------------------------------------------------------------- grouping


def finished(store: RunStore, run_spec: dict, owner: str, test_mae: float, val_maes: list[float]) -> str:
    run_id = store.create_run(run_spec, owner=owner, status="running")
    for epoch, value in enumerate(val_maes, start=1):
        store.add_epoch(run_id, epoch, 1.0, 1.0, 1.0, value, 0.5)
    store.finish(run_id, "done", test_mae=test_mae, seconds=1.0)
    return run_id


@pytest.fixture
def two_recipes(store: RunStore) -> RunStore:
    """Recipe A: fine-tune k2 on seeds 0, 1, 2 of split 0. Recipe B: scratch, seed 0 on split seeds 0, 1, 2."""
    for seed, mae, curve in ((0, 0.5, [1.0, 0.8]), (1, 0.6, [1.2, 0.9]), (2, 0.7, [1.4, 1.0])):
        finished(store, spec(seed=seed), f"student-{seed}", mae, curve)
    for split, mae, curve in (
        (0, 0.8, [2.0, 1.5]),
        (1, 0.9, [2.0, 1.5]),
        (2, 1.3, [2.0]),
    ):
        finished(store, spec(pretrained="none", freeze=0, split_seed=split), "teacher", mae, curve)
    return store


def test_two_recipes_of_three_runs_each_with_t_bands(two_recipes):
    groups = recipes.group_recipes(two_recipes.list_runs())
    assert [g.n for g in groups] == [3, 3]
    tuned, scratch = groups
    assert tuned.label == "formation-energy-per-atom k2 · band_gap 40/20/20 · 2 ep"
    assert scratch.label == "scratch k0 · band_gap 40/20/20 · 2 ep"
    assert (tuned.band_over, scratch.band_over) == ("seeds", "splits")
    assert (tuned.owners, scratch.owners) == (3, 1)

    table = recipes.recipe_table(groups).set_index("recipe")
    row = table.loc[tuned.label]
    half = T_975_2 * 0.1 / math.sqrt(3)
    assert row["n"] == 3 and row["test_mae_mean"] == pytest.approx(0.6)
    assert row["test_mae_std"] == pytest.approx(0.1)
    assert (row["ci95_low"], row["ci95_high"]) == (pytest.approx(0.6 - half), pytest.approx(0.6 + half))
    assert row["replicates"] == "model seeds" and row["model_seeds"] == "0, 1, 2" and row["split_seeds"] == "0"
    row = table.loc[scratch.label]
    assert row["test_mae_mean"] == pytest.approx(1.0) and row["test_mae_std"] == pytest.approx(math.sqrt(0.07))
    assert row["replicates"] == "split seeds" and row["split_seeds"] == "0, 1, 2"

    points = recipes.recipe_curves(groups, recipes.recipe_epochs(two_recipes, groups))
    first = points[(points["recipe"] == tuned.key) & (points["epoch"] == 1)].iloc[0]
    assert first["n"] == 3 and first["mean"] == pytest.approx(1.2)
    assert first["high"] - first["mean"] == pytest.approx(T_975_2 * 0.2 / math.sqrt(3))
    # the scratch run on split 2 stopped after one epoch: epoch 2 averages the two runs that reached it
    second = points[(points["recipe"] == scratch.key) & (points["epoch"] == 2)].iloc[0]
    assert second["n"] == 2 and second["low"] == second["high"] == pytest.approx(1.5)  # equal values: no width


def test_entries_sharing_a_computation_count_once(two_recipes):
    store = two_recipes
    for student in range(30):  # a class queues the same spec: answered by the finished computation
        assert store.launch(spec(seed=0), owner=f"class-{student}").source_run_id is not None
    (tuned, _) = recipes.group_recipes(store.list_runs())
    assert tuned.n == 3 and tuned.owners == 33
    retrained = finished(store, spec(seed=0), "student-0", 0.55, [1.1, 0.85])  # "train again": newest counts
    (tuned, _) = recipes.group_recipes(store.list_runs())
    assert tuned.n == 3 and retrained in tuned.computations
    assert recipes.recipe_table([tuned])["test_mae_mean"].iloc[0] == pytest.approx((0.55 + 0.6 + 0.7) / 3)


def test_filters_by_owner_and_by_a_set_of_run_ids(two_recipes):
    store = two_recipes
    records = store.list_runs()
    mine = recipes.filter_runs(records, owners=["Student-1", "student-2"])  # names match as the store does
    assert sorted(r.owner for r in mine) == ["student-1", "student-2"]
    (only,) = recipes.group_recipes(mine)
    assert only.n == 2 and only.band_over == "seeds"
    assert recipes.filter_runs(records, owners=[]) == records  # nobody picked: everyone

    entry = store.launch(spec(pretrained="none", freeze=0, split_seed=1), owner="late-student")  # reuses a run
    session = {entry.id, *(r.id for r in records if r.owner == "student-0")}  # e.g. a lesson session's runs
    picked = recipes.filter_runs(store.list_runs(), run_ids=session)
    assert {r.id for r in picked} == session  # the teacher's computation the entry reuses is not in the session
    shared = recipes.filter_runs(store.list_runs(), run_ids={entry.source_run_id})
    assert {r.id for r in shared} == {entry.source_run_id, entry.id}  # a computation's id matches its entries
    groups = recipes.group_recipes(picked)
    assert [(g.n, g.band_over) for g in groups] == [(1, "none"), (1, "none")]
    assert recipes.recipe_table(groups)["test_mae_std"].isna().all()  # one run: no spread, no interval


def test_t_interval():
    mean, low, high = t_interval([0.5, 0.6, 0.7, float("nan")])
    assert mean == pytest.approx(0.6) and mean - low == high - mean == pytest.approx(T_975_2 * 0.1 / math.sqrt(3))
    assert t_interval([0.4]) == (0.4, 0.4, 0.4)
    assert all(math.isnan(v) for v in t_interval([]))


def test_band_figure_draws_a_band_per_recipe_and_says_what_it_spans(two_recipes):
    groups = recipes.group_recipes(two_recipes.list_runs())
    points = recipes.recipe_curves(groups, recipes.recipe_epochs(two_recipes, groups))
    fig = figures.recipe_band_figure(points, "eV")
    bands = [t for t in fig.data if t.fill == "toself"]
    lines = [t for t in fig.data if t.fill != "toself"]
    assert len(bands) == 2 and len(lines) == 2
    assert "n=3 · band over model seeds" in lines[0].name and "n=3 · band over split seeds" in lines[1].name
    assert fig.layout.yaxis.title.text == "validation MAE (eV)"
    assert list(lines[0].y) == pytest.approx([1.2, 0.9])


def test_a_hostile_label_is_inert_in_the_figure(store):
    finished(store, spec(data='<a href="http://evil.example">x</a>.zip'), "x", 0.5, [1.0])
    (group,) = recipes.group_recipes(store.list_runs())
    fig = figures.recipe_band_figure(recipes.recipe_curves([group], recipes.recipe_epochs(store, [group])))
    assert "<a " not in fig.data[-1].name


# ------------------------------------------------------------------------------------------------- the page


@pytest.fixture(scope="module")
def class_home(tmp_path_factory):
    """A store of its own holding 300 runs of 30 students (done, shared, failed; no queue a runner could take)."""
    for home in own_home(tmp_path_factory.mktemp("recipes_home")):
        make_class(RunStore(home / "runs.sqlite"), 300, owners=30, queued=0, running=0, epochs=2, predictions=False)
        yield home


def open_compare(present: bool) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app_pages/3_Compare_runs.py"), default_timeout=180)
    at.query_params["user"] = "student-01"
    at.query_params["token"] = token_of("student-01")
    if present:
        at.query_params["present"] = "1"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def recipe_chart(at: AppTest) -> dict:
    (chart,) = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if "per recipe" in c.proto.spec]
    return chart


def test_compare_shows_a_class_as_one_line_and_one_row_per_recipe(class_home, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("CGCNN_WORKERS", "0")
    store = RunStore(class_home / "runs.sqlite")
    expected = recipes.group_recipes(store.list_runs())
    assert len(expected) == 10 and sum(g.n for g in expected) > 200  # 3 models x 3 freezes + scratch
    at = open_compare(present=False)
    (table,) = [d.value for d in at.dataframe if "test_mae_mean" in d.value.columns]
    assert sorted(table["recipe"]) == sorted(g.label for g in expected)
    assert table["n"].tolist() == [g.n for g in expected]
    chart = recipe_chart(at)
    lines = [t for t in chart["data"] if t.get("fill") != "toself"]
    assert len(lines) == 10 and all("band over model seeds" in t["name"] for t in lines)
    assert sum(t.get("fill") == "toself" for t in chart["data"]) == 10

    at.multiselect(key="cmp_rec_owners").set_value(["student-03", "student-07"]).run()
    assert not at.exception
    (table,) = [d.value for d in at.dataframe if "test_mae_mean" in d.value.columns]
    owned = recipes.group_recipes(recipes.filter_runs(store.list_runs(), owners=["student-03", "student-07"]))
    assert table["n"].tolist() == [g.n for g in owned] and table["n"].sum() < 30
    assert (table["owners"] <= 2).all()


def test_compare_recipes_in_presentation_mode_are_projector_sized(class_home, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("CGCNN_WORKERS", "0")
    at = open_compare(present=True)
    chart = recipe_chart(at)
    assert chart["layout"]["legend"]["font"]["size"] >= 16
    assert chart["layout"]["xaxis"]["tickfont"]["size"] >= 16
    tables = at.get("table")  # static tables with large text, not a 14 px grid
    assert tables and not [d for d in at.dataframe if "test_mae_mean" in d.value.columns]
    sizes = [int(s) for t in tables for s in re.findall(r"font-size:\s*(\d+)px", t.proto.arrow_data.styler.styles)]
    assert sizes and min(sizes) >= 16
