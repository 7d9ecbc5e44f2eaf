from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import TIED, read
from test_checkpoint import _small_predictor

from cgcnn.cli.main import main
from cgcnn.nn.checkpoint import save_checkpoint
from cgcnn.zoo import load_model

BAD_CIFS = {
    "empty": "",
    "malformed": "data_broken\n_cell_length_a 3.0\nthis is not a CIF\n",
    "disordered": """data_CuAu
_symmetry_space_group_name_H-M 'P 1'
_cell_length_a 3.6
_cell_length_b 3.6
_cell_length_c 3.6
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Cu1 Cu 0 0 0 0.5
Au1 Au 0 0 0 0.5
""",
}


def _cif(symbol: str, a: float) -> str:
    return (
        f"data_X\n_symmetry_space_group_name_H-M 'P 1'\n_cell_length_a {a}\n_cell_length_b {a}\n"
        f"_cell_length_c {a}\n_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\n"
        "loop_\n_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n"
        f"_atom_site_fract_z\n_atom_site_occupancy\n{symbol}1 {symbol} 0 0 0 1\n"
    )


BAD_CIFS["unknown_element"] = _cif("Og", 3.0)
BAD_CIFS["isolated_atom_huge_cell"] = _cif("Cu", 100.0)


def run_cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_models_json_lists_every_card(capsys):
    code, out, _ = run_cli(["models", "--json"], capsys)
    cards = json.loads(out)
    assert code == 0 and len(cards) >= 8
    for card in cards:
        assert {"name", "kind", "property", "units", "train_size", "mae", "source"} <= set(card)
    names = {c["name"] for c in cards}
    assert {"formation-energy-per-atom", "semi-metal-classification", "shear-moduli"} <= names


def test_predict_folder_to_stdout_matches_the_library(cif_dir, all_ids, capsys):
    code, out, err = run_cli(["predict", "--model", "formation-energy-per-atom", str(cif_dir)], capsys)
    # stderr: only the tie warnings of the tied crystals (issue 24), in file order
    assert code == 0 and [line.split(":")[1].strip() for line in err.splitlines()] == sorted(f"{i}.cif" for i in TIED)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0])[:2] == ["id", "prediction"]
    assert [r["id"] for r in rows] == all_ids
    expected = load_model("formation-energy-per-atom").predict_structures([read(i) for i in all_ids])[:, 0]
    np.testing.assert_allclose([float(r["prediction"]) for r in rows], expected, atol=1e-6)


def test_bad_files_are_reported_and_good_ones_still_predicted(tmp_path, cif_dir, capsys):
    shutil.copy(cif_dir / "mp-30.cif", tmp_path)
    for name, text in BAD_CIFS.items():
        (tmp_path / f"{name}.cif").write_text(text)
    out_csv = tmp_path / "out.csv"
    code, out, err = run_cli(["predict", "--model", "bulk-moduli", "--out", str(out_csv), str(tmp_path)], capsys)
    assert code == 1 and out == ""
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["id"] for r in rows] == ["mp-30"]
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == len(BAD_CIFS)
    for name in BAD_CIFS:
        assert any(f"{name}.cif" in line for line in lines), name
    assert "Traceback" not in err
    assert any("partial occupancies" in line for line in lines)
    assert any("no neighbour" in line for line in lines)


def test_widen_radius_is_said_plainly(tmp_path, capsys):
    (tmp_path / "sparse.cif").write_text(_cif("Cu", 9.0))
    code, _, err = run_cli(["predict", "--model", "band-gap", str(tmp_path / "sparse.cif")], capsys)
    assert code == 1 and "--widen-radius" in err
    code, out, err = run_cli(["predict", "--model", "band-gap", "--widen-radius", str(tmp_path)], capsys)
    assert code == 0 and "widened from 8 to 9 Å" in err and out.count("\n") == 2


def test_multi_output_model_writes_a_column_per_target(tmp_path, cif_dir, capsys):
    path = save_checkpoint(tmp_path / "multi.pt", _small_predictor(("energy", "gap")))
    code, out, _ = run_cli(["predict", "--model", str(path), str(cif_dir / "mp-30.cif")], capsys)
    row = next(csv.DictReader(io.StringIO(out)))
    assert code == 0
    assert row["prediction"] == row["prediction_energy"] and "prediction_gap" in row


def test_classifier_gives_a_probability(cif_dir, capsys):
    code, out, _ = run_cli(["predict", "--model", "semi-metal-classification", str(cif_dir)], capsys)
    values = [float(r["prediction"]) for r in csv.DictReader(io.StringIO(out))]
    assert code == 0 and all(0.0 <= v <= 1.0 for v in values)


@pytest.mark.parametrize("model", ["no-such-model"])
def test_unknown_model_is_one_line_not_a_traceback(model, cif_dir):
    proc = subprocess.run(
        [sys.executable, "-m", "cgcnn", "predict", "--model", model, str(cif_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: unknown model") and "Traceback" not in proc.stderr
