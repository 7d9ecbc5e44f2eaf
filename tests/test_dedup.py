"""Structure-level duplicates: the same crystal under two ids is found, different ones are not."""

from __future__ import annotations

import pandas as pd
from pymatgen.core import Lattice, Structure

from cgcnn.data.datasets import dataset_from_structures, load_default_dataset
from cgcnn.data.dedup import GROUPS_KEY, duplicate_groups, groups_for, twins
from cgcnn.data.splits import canonical_blocks, pretraining_ids, twins_of_test_block
from cgcnn.paths import project_path


def _rock_salt(a: float) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_equivalent_cells_under_other_ids_are_one_group():
    conventional = _rock_salt(5.64)
    primitive = conventional.get_primitive_structure()  # 2 atoms instead of 8: same crystal
    shifted = conventional.copy()
    shifted.translate_sites(list(range(len(shifted))), [0.1, 0.2, 0.3])  # another origin: same crystal
    cesium_chloride = Structure(Lattice.cubic(3.3), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])  # same formula
    iron = Structure(Lattice.cubic(2.87), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    entries = [("a", conventional), ("b", cesium_chloride), ("c", primitive), ("d", iron), ("e", shifted)]
    labels = pd.DataFrame({"target": [1.0] * 5}, index=[e[0] for e in entries])
    ds = dataset_from_structures(entries, labels, "test", "test", "tiny")
    groups = duplicate_groups(ds)
    assert groups == [["a", "c", "e"]]
    assert duplicate_groups(ds, ids=["a", "b", "d"]) == []
    assert twins(groups, ["c"]) == {"a", "e"} and twins(groups, ["d"]) == set()


# ---- the shipped dataset ------------------------------------------------------------------------------------


def test_groups_for_reads_stored_groups_or_computes_them():
    import dataclasses

    conventional = _rock_salt(5.64)
    cesium_chloride = Structure(Lattice.cubic(3.3), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    entries = [("a", conventional), ("c", conventional.get_primitive_structure()), ("d", cesium_chloride)]
    ds = dataset_from_structures(entries, pd.DataFrame({"t": [1.0] * 3}, index=["a", "c", "d"]), "s", "s", "x")
    assert groups_for(ds, ["c"]) == [["a", "c"]]  # no stored groups: computed for the bucket of "c"
    stored = dataclasses.replace(ds, metadata={GROUPS_KEY: [["a", "d"]]})
    assert groups_for(stored, ["a"]) == [["a", "d"]] and groups_for(stored, ["c"]) == []


def test_shipped_groups_match_a_recomputation_on_a_few_buckets():
    ds = load_default_dataset()
    groups = ds.metadata[GROUPS_KEY]
    assert len(groups) == 76 and sum(len(g) for g in groups) == 165
    assert all(g == sorted(g) and len(g) >= 2 for g in groups) and groups == sorted(groups)
    formula_of = dict(zip(ds.ids.tolist(), ds.formulas.tolist(), strict=True))
    assert all(len({formula_of[c] for c in g}) == 1 for g in groups)  # a group never spans two formulas
    members: dict[str, list[str]] = {}
    for cid, formula in formula_of.items():
        members.setdefault(formula, []).append(cid)
    with_group = sorted({formula_of[g[0]] for g in groups}, key=lambda f: len(members[f]))[:4]
    without = sorted((f for f in members if len(members[f]) in (2, 3) and f not in with_group), key=str)[:3]
    for formula in with_group + without:
        expected = [g for g in groups if formula_of[g[0]] == formula]
        assert duplicate_groups(ds, ids=members[formula]) == expected, formula


def test_pretraining_ids_hold_no_twin_of_the_band_gap_test_block():
    ds = load_default_dataset()
    test = set(canonical_blocks(ds, "band_gap", 0).test)
    twin_ids = twins(ds.metadata[GROUPS_KEY], test)
    assert twins_of_test_block(ds, 0) == twin_ids and len(twin_ids) == 25
    for target in ("formation_energy_per_atom", "log10_K_VRH"):
        new, old = pretraining_ids(ds, target, 0), pretraining_ids(ds, target, 0, exclude_twins=False)
        assert not set(new) & (test | twin_ids)
        assert set(old) - set(new) == twin_ids & set(ds.with_target(target))
        assert new == [cid for cid in old if cid not in twin_ids]  # same canonical order, twins left out
    assert (
        len(pretraining_ids(ds, "formation_energy_per_atom", 0, exclude_twins=False))
        - len(pretraining_ids(ds, "formation_energy_per_atom", 0))
        == 25
    )


def test_data_info_reports_the_groups(capsys):
    import json

    from cgcnn.cli.main import main

    assert main(["data", "info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(info["duplicate_groups"]) == 76
    leaks = info["twins_of_test_block"]
    assert leaks["n_leaked"] == 20 and leaks["n_with_twin_in"]["finetune_train"] == 3
    readme = (project_path("assets", "README.md")).read_text()
    assert "76 groups holding 165 crystals" in readme and "The 20 with a twin in training or pretraining" in readme
