"""Issue 13: hostile crystal files are screened and parsed out of the caller, with time and memory limits.

Small bombs with small caps set by each test, so every case runs in seconds.
"""

from __future__ import annotations

import re
import time
import warnings

import numpy as np
import pytest
from conftest import CIF_DIR

from cgcnn.data.crystal_io import read_crystal_bytes
from cgcnn.data.parse_pool import ParsePool
from cgcnn.data.screen import ScreenLimits, screen_text
from cgcnn.errors import CrystalInputError

GOOD = (CIF_DIR / "mp-841.cif").read_text()

NACL_FM3M = """data_NaCl
_symmetry_space_group_name_H-M   'F m -3 m'
_cell_length_a   5.64
_cell_length_b   5.64
_cell_length_c   5.64
_cell_angle_alpha   90
_cell_angle_beta   90
_cell_angle_gamma   90
loop_
 _atom_site_label
 _atom_site_type_symbol
 _atom_site_fract_x
 _atom_site_fract_y
 _atom_site_fract_z
 _atom_site_occupancy
 Na1 Na 0 0 0 1
 Cl1 Cl 0.5 0.5 0.5 1
"""


def with_cell(text: str, length: float) -> str:
    return re.sub(r"_cell_length_(\w)\s+\S+", lambda m: f"_cell_length_{m.group(1)} {length}", text)


#: Sites of a file that stalls a 1 s parse: ~3 s on this machine, a margin for a faster one (2000 took 0.8 s).
STALL_SITES = 4000


def p1_cif(n: int) -> str:
    """A valid P1 CIF of n silicon sites (pymatgen parses it in time quadratic in n: ~0.8 s for 2000)."""
    a = (n * 20.0) ** (1 / 3)
    coords = np.random.default_rng(0).random((n, 3))
    rows = [f"Si{k} Si {x:.5f} {y:.5f} {z:.5f} 1" for k, (x, y, z) in enumerate(coords)]
    head = ["data_big", "_symmetry_space_group_name_H-M 'P 1'", *(f"_cell_length_{c} {a:.4f}" for c in "abc")]
    head += ["_cell_angle_alpha 90", "_cell_angle_beta 90", "_cell_angle_gamma 90", "loop_",
             "_symmetry_equiv_pos_as_xyz", "'x, y, z'", "loop_", "_atom_site_label", "_atom_site_type_symbol",
             "_atom_site_fract_x", "_atom_site_fract_y", "_atom_site_fract_z", "_atom_site_occupancy"]  # fmt: skip
    return "\n".join(head + rows) + "\n"


@pytest.fixture(scope="module")
def pool():
    pool = ParsePool(workers=2)
    yield pool
    pool.close()


def test_trailing_blank_lines_are_collapsed_before_parsing():
    structure = read_crystal_bytes("blank.cif", (GOOD + "\n \n" * 200_000).encode())
    assert len(structure) == 8


def test_many_real_lines_are_refused_by_count():
    text = GOOD + "# comment\n" * 5000
    with pytest.raises(CrystalInputError, match="lines is too many"):
        screen_text("long.cif", text, "cif", ScreenLimits(max_atoms=100))


def test_tiny_cell_is_refused_before_pymatgen():
    with pytest.raises(CrystalInputError, match=r"tiny\.cif: the cell holds .* per atom"):
        read_crystal_bytes("tiny.cif", with_cell(GOOD, 0.05).encode())


def test_huge_cell_gives_a_message_not_memory_error():
    with pytest.raises(CrystalInputError, match=r"huge\.cif: a cell edge of 1e\+06 Å"):
        read_crystal_bytes("huge.cif", with_cell(GOOD, 1_000_000).encode())


def test_symmetry_expansion_is_estimated_before_building():
    # 2 sites x 192 operations of Fm-3m: refused under a cap of 100 without pymatgen expanding anything
    with pytest.raises(CrystalInputError, match=r"about 384 atoms after applying the symmetry operations"):
        screen_text("fm3m.cif", NACL_FM3M, "cif", ScreenLimits(max_atoms=100))
    assert len(read_crystal_bytes("fm3m.cif", NACL_FM3M.encode(), max_atoms=1000)) == 8


def test_poscar_and_json_are_screened():
    from pymatgen.core import Lattice, Structure

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tiny = Structure(Lattice.cubic(0.05), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(CrystalInputError, match="per atom"):
        read_crystal_bytes("POSCAR", tiny.to(fmt="poscar").encode())
    with pytest.raises(CrystalInputError, match="per atom"):
        read_crystal_bytes("tiny.json", tiny.to(fmt="json").encode())


def test_stalled_file_is_killed_and_the_others_still_parse(pool):
    files = [("first.cif", GOOD.encode()), ("stall.cif", p1_cif(STALL_SITES).encode()), ("last.cif", GOOD.encode())]
    parsed, errors = pool.parse_many(files, seconds=1.0)
    assert [name for name, _ in parsed] == ["first.cif", "last.cif"]
    assert len(errors) == 1 and errors[0].startswith("stall.cif: parsing took longer than 1 s")
    assert pool.killed == 1
    assert len(pool.parse("again.cif", GOOD.encode())) == 8  # the killed worker was replaced


def test_memory_limit_in_the_worker_gives_a_message():
    small = ParsePool(workers=1, memory_mb=8)
    try:
        with pytest.raises(CrystalInputError, match=r"^big\.cif: .*(memory|crashed)"):
            small.parse("big.cif", p1_cif(3000).encode(), seconds=60)
    finally:
        small.close()


def test_predict_uploads_reports_bad_files_by_name_and_predicts_the_rest(monkeypatch):
    from cgcnn.app.uploads import predict_uploads
    from cgcnn.zoo import load_model

    monkeypatch.setenv("CGCNN_PARSE_SECONDS", "0.3")  # scaled by lines: 0.9 s for the 2,000-site file
    files = [
        ("good.cif", GOOD.encode()),
        ("tiny.cif", with_cell(GOOD, 0.03).encode()),
        ("huge.cif", with_cell(GOOD, 1e6).encode()),
        ("stall.cif", p1_cif(STALL_SITES).encode()),
    ]
    table, errors = predict_uploads({"band-gap": load_model("band-gap")}, files)
    assert table["file"].tolist() == ["good.cif"]
    assert sorted(e.split(":")[0] for e in errors) == ["huge.cif", "stall.cif", "tiny.cif"]


def test_library_graph_refuses_huge_and_tiny_cells_without_memory_error():
    from pymatgen.core import Lattice, Structure

    from cgcnn.data.graph import GraphParams, structure_to_graph

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        huge = Structure(Lattice.cubic(1e6), ["Na"], [[0, 0, 0]])
        tiny = Structure(Lattice.cubic(0.05), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(CrystalInputError, match="cell edge of 1e\\+06 Å"):
        structure_to_graph(huge, GraphParams())
    with pytest.raises(CrystalInputError, match="per atom"):
        structure_to_graph(tiny, GraphParams())


def test_max_neighbors_below_one_is_refused():
    from cgcnn.data.graph import GraphParams

    with pytest.raises(CrystalInputError, match="max_neighbors must be at least 1"):
        GraphParams(max_neighbors=0)


def test_cli_max_atoms_supercell_predicts_like_its_primitive_cell(tmp_path, capsys):
    from pymatgen.core import Lattice, Structure

    from cgcnn.cli.main import main

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        primitive = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
        (tmp_path / "prim.vasp").write_text(primitive.to(fmt="poscar"))
        (tmp_path / "super.vasp").write_text((primitive * (16, 16, 8)).to(fmt="poscar"))  # 4,096 atoms
    paths = [str(tmp_path / "prim.vasp"), str(tmp_path / "super.vasp")]
    assert main(["predict", "--model", "formation-energy-per-atom", "--max-atoms", "4000", *paths]) == 1
    assert "4096 atoms" in capsys.readouterr().err.replace(",", "")
    assert main(["predict", "--model", "formation-energy-per-atom", *paths]) == 0
    lines = capsys.readouterr().out.strip().splitlines()[1:]
    values = {line.split(",")[0]: float(line.split(",")[1]) for line in lines}
    assert abs(values["prim"] - values["super"]) < 1e-4
    assert main(["predict", "--model", "band-gap", "--max-atoms", "0", paths[0]]) == 2


def test_a_waiting_call_gets_a_fresh_worker_when_the_only_one_is_killed():
    from concurrent.futures import ThreadPoolExecutor

    one = ParsePool(workers=1)
    try:
        one.parse("warm.cif", GOOD.encode())  # the one worker is started and idle

        def parse(item):
            try:
                return len(one.parse(item[0], item[1], seconds=1.0))
            except CrystalInputError as exc:
                return str(exc)

        with ThreadPoolExecutor(2) as threads:  # two sessions at once; the second waits for the only worker
            stalled = threads.submit(parse, ("stall.cif", p1_cif(STALL_SITES).encode()))
            time.sleep(0.2)
            after = threads.submit(parse, ("after.cif", GOOD.encode()))
            assert str(stalled.result(timeout=60)).startswith("stall.cif: parsing took longer")
            assert after.result(timeout=60) == 8
    finally:
        one.close()
