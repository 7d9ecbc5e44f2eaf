from __future__ import annotations

import numpy as np
import pytest
from conftest import TIED, read
from pymatgen.core import Lattice, Structure

from cgcnn.data.elements import original_table
from cgcnn.data.graph import (
    BuildOptions,
    CrystalGraph,
    GraphParams,
    TooManyAtomsError,
    collate,
    gaussian_expand,
    graph_from_arrays,
    structure_to_graph,
)
from cgcnn.errors import CrystalInputError, NoNeighborsError, UnknownElementError


def rock_salt(a: float = 5.64) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_element_table_is_the_original_92_features():
    table = original_table()
    assert table.features.shape == (101, 92)
    assert table.known[1:].all() and not table.known[0]
    # every element is a concatenation of one-hot blocks: entries are 0 or 1
    assert set(np.unique(table.features[1:])) <= {0.0, 1.0}
    with pytest.raises(UnknownElementError, match="Z = \\[101\\]"):
        table.lookup(np.array([1, 101]))


def test_rock_salt_neighbour_shells():
    a = 5.64
    g = structure_to_graph(rock_salt(a), GraphParams())
    assert g.n_atoms == 8 and g.max_neighbors == 12 and len(g.edge_src) == 96
    d = g.distances.reshape(8, 12)
    # first shell: 6 unlike neighbours at a/2; second: 12 like neighbours at a/sqrt(2), cut after 6 of them
    np.testing.assert_allclose(d[:, :6], a / 2, atol=1e-6)
    np.testing.assert_allclose(d[:, 6:], a / np.sqrt(2), atol=1e-6)
    z = g.atomic_numbers
    src = g.edge_src.reshape(8, 12)
    for i in range(8):
        assert (z[src[i, :6]] != z[i]).all() and (z[src[i, 6:]] == z[i]).all()
    assert g.edge_mask.all()
    np.testing.assert_array_equal(g.edge_dst, np.repeat(np.arange(8), 12))


def test_images_place_neighbours_at_their_distance():
    s = read("mp-2184")
    g = structure_to_graph(s, GraphParams())
    frac = s.frac_coords[g.edge_src] + g.images
    vec = s.lattice.get_cartesian_coords(frac) - s.cart_coords[g.edge_dst]
    np.testing.assert_allclose(np.linalg.norm(vec, axis=1), g.distances, atol=1e-8)
    assert (g.images != 0).any(axis=1).sum() > 0  # some edges cross the cell


def test_bcc_iron_one_atom_cell_uses_periodic_images():
    a = 2.87
    s = Structure(Lattice.cubic(a), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]]).get_primitive_structure()
    g = structure_to_graph(s, GraphParams())
    assert g.n_atoms == 1
    assert (g.edge_src == 0).all()  # every neighbour is an image of the single atom
    np.testing.assert_allclose(g.distances[:8], a * np.sqrt(3) / 2, atol=1e-6)
    np.testing.assert_allclose(g.distances[8:], a, atol=1e-6)
    assert len({tuple(i) for i in g.images}) == 12


def test_gaussian_features():
    params = GraphParams()
    assert params.n_edge_features == 41
    f = gaussian_expand(np.array([0.0, 2.0, 9.0]), params)
    assert f.shape == (3, 41) and f.dtype == np.float32
    assert f[0, 0] == 1.0 and f[1, 10] == pytest.approx(1.0)
    assert f[1, 11] == pytest.approx(np.exp(-1.0), rel=1e-6)  # one step away: exp(-step^2/step^2)
    assert f[2].max() < 1e-10  # a fill-in distance r + 1 Å carries no feature


def test_sparse_atom_gets_original_fill_in_edges():
    # simple cubic, 7 Å: 6 neighbours inside 8 Å, so 6 fill-in edges (index 0 at r + 1, masked)
    g = structure_to_graph(Structure(Lattice.cubic(7.0), ["Cu"], [[0, 0, 0]]), GraphParams())
    assert g.edge_mask.sum() == 6
    np.testing.assert_allclose(g.distances[~g.edge_mask], 9.0)
    assert (g.edge_src[~g.edge_mask] == 0).all()


def test_no_neighbour_is_a_clear_error_or_a_widened_radius():
    lonely = Structure(Lattice.cubic(9.0), ["Cu"], [[0, 0, 0]])
    with pytest.raises(NoNeighborsError, match=r"no neighbour within 8 Å.*--widen-radius"):
        structure_to_graph(lonely, GraphParams())
    g = structure_to_graph(lonely, GraphParams(), options=BuildOptions(widen_radius=True))
    assert g.radius == 9.0 and g.edge_mask.sum() == 6
    huge = Structure(Lattice.cubic(100.0), ["Cu"], [[0, 0, 0]])
    with pytest.raises(NoNeighborsError, match="even 24 Å was not enough"):
        structure_to_graph(huge, GraphParams(), options=BuildOptions(widen_radius=True))


def test_bad_structures_are_refused_with_a_reason():
    disordered = Structure(Lattice.cubic(3.6), [{"Cu": 0.5, "Au": 0.5}], [[0, 0, 0]])
    with pytest.raises(CrystalInputError, match="partial occupancies"):
        structure_to_graph(disordered, GraphParams())
    with pytest.raises(UnknownElementError, match="118"):
        structure_to_graph(Structure(Lattice.cubic(3.0), ["Og"], [[0, 0, 0]]), GraphParams())
    with pytest.raises(TooManyAtomsError, match="limit is 10"):
        structure_to_graph(rock_salt() * 2, GraphParams(), options=BuildOptions(max_atoms=10))
    assert issubclass(TooManyAtomsError, CrystalInputError)


def _canonical_edges(g: CrystalGraph) -> np.ndarray:
    """Edges of each atom sorted by (distance, neighbour, image): equal distances may come in either order."""
    rows = np.column_stack([g.edge_dst, np.round(g.distances, 6), g.edge_src, g.images, g.edge_mask])
    return rows[np.lexsort(rows.T[::-1])]


@pytest.mark.parametrize("mp_id", ["mp-2184", "mp-567462", "mp-30"])
def test_compact_path_equals_structure_path(mp_id):
    """Same neighbours from stored arrays as from a Structure (order among equal distances aside)."""
    s = read(mp_id)
    a = structure_to_graph(s, GraphParams())
    b = graph_from_arrays(s.lattice.matrix, s.frac_coords, np.array(s.atomic_numbers), GraphParams())
    np.testing.assert_array_equal(a.node_features, b.node_features)
    np.testing.assert_allclose(_canonical_edges(a), _canonical_edges(b), atol=1e-9)


def test_arrays_round_trip():
    g = structure_to_graph(read("mp-30"), GraphParams())
    back = CrystalGraph.from_arrays(g.to_arrays())
    for key, value in g.to_arrays().items():
        np.testing.assert_array_equal(value, back.to_arrays()[key])


def test_graphs_equal_the_reference_featuriser(cif_dir, all_ids):
    """Same neighbours, order (ties included), distances and features as cgcnn2's CIFData."""
    pytest.importorskip("cgcnn2")
    from reference import reference_dataset

    ref = reference_dataset(cif_dir, all_ids)
    for k, mp_id in enumerate(all_ids):
        (atom_fea, nbr_fea, nbr_idx), _, cif_id = ref[k]
        g = structure_to_graph(read(cif_id), GraphParams())
        np.testing.assert_array_equal(g.edge_src.reshape(nbr_idx.shape), nbr_idx.numpy(), err_msg=mp_id)
        np.testing.assert_array_equal(g.node_features, atom_fea.numpy())
        feats = gaussian_expand(g.distances, GraphParams()).reshape(nbr_fea.shape)
        np.testing.assert_allclose(feats, nbr_fea.numpy(), atol=1e-6)
    assert set(all_ids) >= TIED


def test_collate_offsets_indices():
    g1, g2 = structure_to_graph(read("mp-30"), GraphParams()), structure_to_graph(read("mp-2260"), GraphParams())
    b = collate([g1, g2], GraphParams())
    assert b.n_crystals == 2 and b.n_atoms == g1.n_atoms + g2.n_atoms
    assert b.edge_features.shape == (b.n_atoms * 12, 41)
    assert b.edge_src[len(g1.edge_src) :].min() >= g1.n_atoms
    assert b.crystal_index.tolist() == [0] * g1.n_atoms + [1] * g2.n_atoms


def test_neighbour_ties_at_the_cut_are_found(all_ids):
    """The crystals tests/data/README.md lists as tied, and rock salt and SrTiO3 from the default dataset."""
    from cgcnn.data.datasets import load_default_dataset
    from cgcnn.data.graph import neighbour_tie

    found = {i for i in all_ids if neighbour_tie(read(i), GraphParams()) is not None}
    assert found == TIED
    dataset = load_default_dataset()
    salt = neighbour_tie(dataset.structure("mp-22862"), GraphParams())  # NaCl: 6 Cl, then 12 Na at a/√2
    assert salt is not None and (salt.kept, salt.shell) == (6, 12) and salt.atoms == tuple(range(8))
    assert "shell of 12 neighbours" in salt.describe(12)
    perovskite = dataset.structure("mp-5229")  # SrTiO3: Ti has 6 O, then 8 Sr of which 6 fit
    tie = neighbour_tie(perovskite, GraphParams())
    ti = next(k for k, site in enumerate(perovskite) if site.specie.symbol == "Ti")
    assert tie is not None and ti in tie.atoms
    assert neighbour_tie(perovskite, GraphParams(max_neighbors=20)) is None  # every shell kept whole
    assert neighbour_tie(rock_salt(), GraphParams(max_neighbors=18)) is None  # 6 + 12: the cut ends a shell
