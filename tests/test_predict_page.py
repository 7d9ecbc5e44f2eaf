"""The Predict page: a labelled zip is scored as ``evaluate`` scores it, a seed ensemble shows mean ± std.

Real crystals (``tests/data/cifs``, labelled with their default-dataset band gaps) and real runs (two tiny
fine-tunes trained here, 40/20/20 crystals, 1 epoch, seeds 0 and 1).
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cgcnn.app import ensembles, scoring
from cgcnn.cli.main import main
from cgcnn.data.datasets import load_default_dataset
from cgcnn.runs.store import RunStore
from devtools.sign_in import token_of

ROOT = Path(__file__).resolve().parent.parent

PAGE = str(ROOT / "app_pages" / "6_Predict.py")


@pytest.fixture(autouse=True)
def _cwd(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("CGCNN_WORKERS", "0")


def open_page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=180)
    at.query_params["user"] = "dana"
    at.query_params["token"] = token_of("dana")
    return at.run()


@pytest.fixture(scope="module")
def labelled_zip(tmp_path_factory, cif_dir) -> Path:
    """The test CIFs that have a band gap in the default data, zipped as a CGCNN folder, plus a broken CIF."""
    data = load_default_dataset()
    gaps = data.labels["band_gap"]
    rows = []
    path = tmp_path_factory.mktemp("labelled") / "gaps.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for cif in sorted(cif_dir.glob("*.cif")):
            if cif.stem in data and np.isfinite(gaps[cif.stem]):
                archive.write(cif, f"gaps/{cif.name}")
                rows.append(f"{cif.stem},{float(gaps[cif.stem])!r}")
        archive.writestr("gaps/broken.cif", "data_broken\n_cell_length_a oops\n")
        rows.append("broken,1.0")
        archive.writestr("gaps/id_prop.csv", "\n".join(rows) + "\n")
    assert len(rows) >= 6, "too few test crystals with a band gap"
    return path


@pytest.fixture(scope="module")
def two_seeds() -> list[str]:
    """Two finished tiny fine-tunes of one recipe (seeds 0 and 1), in the session's run store."""
    from cgcnn.training.finetune import FinetuneSpec, run_finetune

    ids = []
    for seed in (0, 1):
        spec = FinetuneSpec(pretrained="band-gap", freeze=2, n_train=40, n_val=20, n_test=20, seed=seed,
                            hyperparams={"epochs": 1})  # fmt: skip
        ids.append(run_finetune(spec, store=RunStore(), owner="dana").run_id)
    return ids


def _cli_json(args: list[str], capsys) -> tuple[int, dict]:
    code = main(args)
    out = capsys.readouterr().out
    return code, json.loads(out.strip().splitlines()[-1])


def test_labelled_zip_is_scored_like_the_cli(labelled_zip, capsys):
    code, cli = _cli_json(["evaluate", "--model", "band-gap", "--data", str(labelled_zip), "--json"], capsys)
    assert code == 1 and cli["failures"] == 1  # the broken CIF, as the page reports it

    at = open_page()
    at.multiselect(key="pred_models").set_value(["band-gap"])
    at.file_uploader(key="pred_files").set_value([(labelled_zip.name, labelled_zip.read_bytes(), "application/zip")])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    scores = at.session_state["pred_scores"]
    metrics = scores.results["band-gap"].metrics
    assert metrics["mae"] == cli["mae"]  # the same function on the same crystals: equal, not close
    for key in ("n", "rmse", "r2", "spearman", "bias", "failures", "mae_clamped"):
        assert metrics[key] == pytest.approx(cli[key]), key
    assert metrics["mae_by_quintile"] == pytest.approx(cli["mae_by_quintile"])
    shown = scoring.metrics_frame(scores.results).set_index("metric")["band-gap"]
    assert shown["mae"] == cli["mae"] and shown["mae_clamped"] == cli["mae_clamped"]  # band gap: clamping applies
    assert shown[[f"mae Q{k}" for k in range(1, 6)]].tolist() == pytest.approx(cli["mae_by_quintile"])
    assert any("broken" in e.value for e in at.error)  # the bad file is named
    assert at.get("plotly_chart"), "no parity plot"
    # the predictions table still lists every good crystal of the zip
    assert len(at.session_state["pred_table"]) == metrics["n"]


def test_formation_energy_metrics_have_no_clamped_column():
    from cgcnn.analysis.evaluation import EvaluationResult

    y = np.array([-1.0, -0.5, 0.2])
    metrics = {"n": 3, "mae": 0.1, "mae_by_quintile": [0.1] * 5, "mae_clamped": 0.3}
    result = EvaluationResult("formation_energy_per_atom", "target", ["a", "b", "c"], y, y + 0.1, metrics=metrics)
    assert "mae_clamped" not in scoring.metrics_frame({"m": result})["metric"].tolist()


def test_an_unlabelled_zip_is_only_predicted(cif_dir):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for cif in sorted(cif_dir.glob("*.cif"))[:2]:
            archive.write(cif, cif.name)
    assert scoring.labelled_zip([("plain.zip", buffer.getvalue())]) is None


def test_seed_ensembles_group_runs_of_one_recipe(two_seeds):
    records = RunStore().list_runs(status="done")
    groups = ensembles.seed_ensembles(records)
    mine = [g for g in groups if set(two_seeds) <= set(g.run_ids)]
    assert len(mine) == 1 and "2 runs (seeds 0, 1)" in mine[0].label
    assert mine[0].model_spec == ",".join(f"run:{i}" for i in mine[0].run_ids)


def test_ensemble_on_the_page_shows_mean_and_spread_like_the_cli(two_seeds, cif_dir, capsys):
    files = sorted(cif_dir.glob("*.cif"))[:3]
    at = open_page()
    label = next(g.label for g in ensembles.seed_ensembles(RunStore().list_runs()) if set(two_seeds) <= set(g.run_ids))
    at.selectbox(key="pred_ensemble").set_value(label)
    at.multiselect(key="pred_models").set_value([])
    at.file_uploader(key="pred_files").set_value([(p.name, p.read_bytes(), "chemical/x-cif") for p in files])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    table = at.session_state["pred_table"]
    name = ensembles.ensemble_name(2)
    mean = table[next(c for c in table.columns if c.startswith(name) and "±" not in c and "·" not in c)]
    spread = table[next(c for c in table.columns if c.startswith(f"{name} ±"))]
    members = table[[c for c in table.columns if c.startswith(f"{name} · ")]]
    assert members.shape == (3, 2)
    assert np.allclose(mean, members.mean(axis=1)) and np.allclose(spread, members.std(axis=1, ddof=1))
    assert (spread > 0).all()  # two seeds disagree

    spec = ",".join(f"run:{i}" for i in two_seeds)
    assert main(["predict", "--model", spec, *map(str, files)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert np.allclose([float(r["std"]) for r in rows], spread.to_numpy())

    at.selectbox(key="pred_ensemble").set_value("pick runs…").run()  # hand-picked members
    at.multiselect(key="pred_members").set_value(two_seeds).run()
    assert not at.exception and not at.error
    assert np.allclose(at.session_state["pred_table"][spread.name], spread)


def test_ensemble_of_one_run_is_a_message(two_seeds):
    with pytest.raises(Exception, match="at least two"):
        ensembles.build_ensemble([])


def test_ensemble_scored_on_labels_like_the_cli(two_seeds, labelled_zip, capsys):
    spec = ",".join(f"run:{i}" for i in two_seeds)
    _, cli = _cli_json(["evaluate", "--model", spec, "--data", str(labelled_zip), "--json"], capsys)
    at = open_page()
    at.selectbox(key="pred_ensemble").set_value("pick runs…").run()
    at.multiselect(key="pred_members").set_value(two_seeds)
    at.multiselect(key="pred_models").set_value([])
    at.file_uploader(key="pred_files").set_value([(labelled_zip.name, labelled_zip.read_bytes(), "application/zip")])
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = at.session_state["pred_scores"].results[ensembles.ensemble_name(2)].metrics
    assert metrics["mae"] == cli["mae"]
    assert metrics["spearman_abs_error_std"] == pytest.approx(cli["spearman_abs_error_std"], nan_ok=True)
    assert len(at.get("table")) + len(at.dataframe) >= 3  # predictions, members, metrics (and calibration)
