from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from cgcnn.data import graph_cache
from cgcnn.data.datasets import dataset_from_structures, load_default_dataset
from cgcnn.data.graph import BuildOptions, GraphParams, structure_to_graph
from cgcnn.data.graph_cache import GraphCacheWarning, cache_path, get_graphs

IDS = ["mp-10", "mp-2", "mp-13", "mp-19", "mp-21"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CGCNN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def small():
    return load_default_dataset().subset(IDS)


@pytest.fixture
def calls(monkeypatch):
    """Count featuriser calls (a cache hit makes none)."""
    seen: list[int] = []
    real = graph_cache.structure_to_graph

    def counting(*args, **kwargs):
        seen.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(graph_cache, "structure_to_graph", counting)
    return seen


def assert_same_graph(a, b):
    for name, value in a.to_arrays().items():
        other = b.to_arrays()[name]
        assert value.dtype == other.dtype, name
        np.testing.assert_array_equal(value, other, err_msg=name)


def test_miss_then_hit(home, small, calls):
    graphs, failures = get_graphs(small, None, GraphParams())
    assert failures == [] and list(graphs) == IDS and len(calls) == 5
    path = cache_path(small, GraphParams())
    assert path.is_file() and path.parent == home / "graphs"
    again, _ = get_graphs(small, ["mp-13", "mp-10"], GraphParams())
    assert len(calls) == 5 and list(again) == ["mp-13", "mp-10"]
    for cid in IDS:
        assert_same_graph(graphs[cid], structure_to_graph(small.structure(cid), GraphParams()))
        assert_same_graph(again.get(cid, graphs[cid]), graphs[cid])


def test_incremental_fill(home, small, calls):
    get_graphs(small, IDS[:2], GraphParams())
    assert len(calls) == 2
    graphs, _ = get_graphs(small, IDS, GraphParams())
    assert len(calls) == 5 and list(graphs) == IDS
    get_graphs(small, None, GraphParams())
    assert len(calls) == 5


def test_key_separates_params_and_datasets(home, small, calls):
    get_graphs(small, None, GraphParams())
    params = GraphParams(radius=6.0, max_neighbors=8)
    graphs, _ = get_graphs(small, None, params)
    assert len(calls) == 10
    assert graphs["mp-10"].max_neighbors == 8
    assert cache_path(small, params) != cache_path(small, GraphParams())
    assert cache_path(small.subset(IDS[:2]), GraphParams()) != cache_path(small, GraphParams())


def test_corrupt_file_is_rebuilt(home, small, calls):
    get_graphs(small, None, GraphParams())
    path = cache_path(small, GraphParams())
    path.write_bytes(b"garbage")
    with pytest.warns(GraphCacheWarning, match="unreadable"):
        graphs, _ = get_graphs(small, None, GraphParams())
    assert len(calls) == 10 and len(graphs) == 5
    get_graphs(small, None, GraphParams())
    assert len(calls) == 10  # the rebuilt file is good


def test_tampered_arrays_are_detected(home, small, calls):
    get_graphs(small, None, GraphParams())
    path = cache_path(small, GraphParams())
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["distances"] = arrays["distances"] + 1e-9
    np.savez_compressed(path, **arrays)
    with pytest.warns(GraphCacheWarning, match="corrupt"):
        get_graphs(small, None, GraphParams())
    assert len(calls) == 10


def test_stale_file_is_rebuilt(home, small, calls):
    other = small.subset(IDS[:3])
    get_graphs(other, None, GraphParams())
    cache_path(small, GraphParams()).parent.mkdir(parents=True, exist_ok=True)
    right_name = cache_path(small, GraphParams())
    right_name.write_bytes(cache_path(other, GraphParams()).read_bytes())  # right name, wrong content
    with pytest.warns(GraphCacheWarning, match="stale"):
        graphs, _ = get_graphs(small, None, GraphParams())
    assert list(graphs) == IDS


def test_failures_are_reported_and_cached(home, calls):
    good = Structure(Lattice.cubic(3.0), ["Na"], [[0, 0, 0]])
    lonely = Structure(Lattice.cubic(20.0), ["Cl"], [[0, 0, 0]])  # nearest image 20 Å away
    labels = pd.DataFrame({"y": [1.0, 2.0]}, index=["good", "lonely"])
    ds = dataset_from_structures([("good", good), ("lonely", lonely)], labels, "test", "test", "tiny")
    graphs, failures = get_graphs(ds, None, GraphParams())
    assert list(graphs) == ["good"]
    assert [f[0] for f in failures] == ["lonely"] and "no neighbour" in failures[0][1]
    assert len(calls) == 2
    _, failures_again = get_graphs(ds, None, GraphParams())
    assert failures_again == failures and len(calls) == 2


def test_no_cache_mode_writes_nothing(home, small, calls):
    graphs, _ = get_graphs(small, None, GraphParams(), use_cache=False)
    assert len(graphs) == 5 and not home.exists()


def test_unknown_id(home, small):
    with pytest.raises(KeyError, match="mp-404"):
        get_graphs(small, ["mp-404"], GraphParams())


def test_progress_callback(home, small):
    seen = []
    get_graphs(small, None, GraphParams(), progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (5, 5)


def test_the_atom_limit_is_not_part_of_the_key_and_applies_on_every_read(home, calls):
    """One cache file serves every CGCNN_MAX_ATOMS; a crystal refused for its size is built once the limit rises."""
    small_cell = Structure(Lattice.cubic(3.0), ["Na"], [[0, 0, 0]])
    big_cell = small_cell * (2, 2, 2)  # 8 atoms
    labels = pd.DataFrame({"y": [1.0, 2.0]}, index=["one", "eight"])
    ds = dataset_from_structures([("one", small_cell), ("eight", big_cell)], labels, "test", "test", "two sizes")
    tight, roomy = BuildOptions(max_atoms=4), BuildOptions(max_atoms=20_000)
    assert cache_path(ds, GraphParams(), options=tight) == cache_path(ds, GraphParams(), options=roomy)

    graphs, failures = get_graphs(ds, None, GraphParams(), options=tight)
    assert list(graphs) == ["one"] and failures[0][0] == "eight" and "the limit is 4" in failures[0][1]
    graphs, failures = get_graphs(ds, None, GraphParams(), options=roomy)  # not remembered as a failure
    assert list(graphs) == ["one", "eight"] and failures == []
    assert len(calls) == 3  # "eight" was tried twice, "one" built once
    graphs, failures = get_graphs(ds, None, GraphParams(), options=tight)  # cached, and still over the limit
    assert list(graphs) == ["one"] and failures == [("eight", failures[0][1])] and "the limit is 4" in failures[0][1]
    assert len(calls) == 3


def test_a_widening_radius_uses_its_own_file(home, small):
    widening = BuildOptions(widen_radius=True)
    assert cache_path(small, GraphParams(), options=widening) != cache_path(small, GraphParams())
