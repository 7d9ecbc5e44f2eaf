"""Calibrated intervals, the applicability domain and shipped ensembles (issue 21).

The ensemble machinery is tested on a temporary zoo of two real own checkpoints that share one split
(``own-attention`` and ``own-attention-edge``), calibrated here on small parts of their real training and
validation blocks (the full blocks take minutes); the shipped ``own-formation-energy-matched`` calibration is
used as shipped.
"""

from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from cgcnn.analysis.evaluation import evaluate_model
from cgcnn.analysis.metrics import INTERVAL_KEYS, error_auroc
from cgcnn.cli.main import main
from cgcnn.data.datasets import load_default_dataset
from cgcnn.errors import CGCNNError, CheckpointError
from cgcnn.nn.checkpoint import save_checkpoint
from cgcnn.nn.conformal import NORMALISED, PLAIN, fit_calibration
from cgcnn.nn.domain import fit_domain
from cgcnn.nn.predictor import Ensemble, predict_crystals
from cgcnn.nn.uncertainty import calibration_path, read_uncertainty, save_uncertainty
from cgcnn.paths import project_path
from cgcnn.training.calibrate import Block, calibrate_ensemble, calibrate_model, save_ensemble
from cgcnn.zoo import list_cards, load_model, load_model_or_ensemble, locate_checkpoint, pretrained_dir

MEMBERS = ["own-attention", "own-attention-edge"]
ENSEMBLE = "tmp-attention-ensemble"


def _cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def _bcc(element: str, a: float) -> Structure:
    return Structure(Lattice.cubic(a), [element] * 2, [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture(scope="module")
def blocks():
    """Parts of the real split of the attention models: 150 training, 60 validation, 40 test crystals."""
    from cgcnn.data.graph import GraphParams, structure_to_graph
    from cgcnn.training.pretrain import PretrainSpec, resolve_split

    dataset = load_default_dataset()
    card = json.loads((pretrained_dir() / f"{MEMBERS[0]}.json").read_text())
    split, _ = resolve_split(PretrainSpec.from_dict(card["details"]["spec"]), dataset, pretrained_dir())
    assert split.content_hash == card["details"]["split"]["hash"]
    labels = dataset.labels["formation_energy_per_atom"]

    def block(ids):
        ids = list(ids)
        graphs = [structure_to_graph(dataset.structure(cid), GraphParams()) for cid in ids]
        return Block(ids, graphs, labels[ids].to_numpy(dtype=np.float64))

    return block(split.train[:150]), block(split.val[:60]), block(split.test[:40]), dataset


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, blocks):
    """A zoo folder with the two members, their calibrations and the ensemble's manifest and calibration."""
    train, val, _, _ = blocks
    folder = tmp_path_factory.mktemp("zoo")
    for name in MEMBERS:
        for suffix in (".pt", ".json"):
            shutil.copy(pretrained_dir() / f"{name}{suffix}", folder / f"{name}{suffix}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CGCNN_PRETRAINED", str(folder))
        predictors = []
        for name in MEMBERS:
            model = load_model(name)
            save_uncertainty(
                calibration_path(folder / f"{name}.pt"), calibrate_model(model, folder / f"{name}.pt", train, val)
            )
            predictors.append(model)
        ensemble = Ensemble(predictors, name=ENSEMBLE)
        uncertainty = calibrate_ensemble(ensemble, [folder / f"{m}.pt" for m in MEMBERS], val)
        save_ensemble(folder, ENSEMBLE, MEMBERS, uncertainty, n_test=40, notes="a test ensemble")
    return folder


@pytest.fixture
def in_zoo(zoo, monkeypatch):
    monkeypatch.setenv("CGCNN_PRETRAINED", str(zoo))
    return zoo


# ---------------------------------------------------------------------------------------------- calibration


def test_conformal_quantile_is_the_split_conformal_order_statistic():
    rng = np.random.default_rng(0)
    y = rng.normal(size=199)
    pred = y + rng.normal(scale=0.3, size=199)
    plain = fit_calibration("t", y, pred)
    assert plain.method == PLAIN and np.all(np.diff(plain.scores) >= 0)
    low, high = plain.intervals(np.array([1.0, 2.0]), None, 0.90)
    half = high[0] - 1.0
    assert high - np.array([1.0, 2.0]) == pytest.approx([half, half]) and low[0] == pytest.approx(1.0 - half)
    # split conformal: one of the validation errors, at least 90% of them inside (n = 199: the 180th or above)
    assert np.isclose(plain.scores, half).any() and np.mean(plain.scores <= half + 1e-12) >= 0.90
    # one calibration serves every confidence, nested
    widths = [np.diff(np.column_stack(plain.intervals(np.zeros(1), None, c)))[0, 0] for c in (0.68, 0.90, 0.95)]
    assert widths[0] < widths[1] < widths[2]


def test_normalised_intervals_scale_with_the_spread():
    rng = np.random.default_rng(1)
    std = rng.uniform(0.1, 1.0, size=300)
    y = rng.normal(scale=std)
    cal = fit_calibration("t", y, np.zeros(300), std)
    assert cal.method == NORMALISED
    low, high = cal.intervals(np.zeros(3), np.array([0.1, 0.2, 0.4]), 0.90)
    assert (high - low) == pytest.approx(np.array([1.0, 2.0, 4.0]) * (high[0] - low[0]))
    with pytest.raises(ValueError, match="std"):
        cal.intervals(np.zeros(3), None, 0.9)
    with pytest.raises(ValueError, match="too few"):
        fit_calibration("t", y[:10], np.zeros(10))


def test_far_is_five_percent_of_crystals_like_the_validation_block():
    rng = np.random.default_rng(2)
    domain = fit_domain(rng.normal(size=(500, 8)), rng.normal(size=(200, 8)))
    assert np.mean(domain.distance(rng.normal(size=(200, 8))) > 1) < 0.15  # about 5% by construction
    assert np.all(domain.distance(rng.normal(loc=6.0, size=(20, 8))) > 1)


def test_error_auroc_finds_the_largest_errors():
    err = np.arange(100.0)
    assert error_auroc(err, err) == pytest.approx(1.0)
    assert error_auroc(err, -err) == pytest.approx(0.0)
    assert np.isnan(error_auroc(err[:5], err[:5]))


# ---------------------------------------------------------------------------------------------- the zoo


def test_ensemble_by_name_in_the_zoo(in_zoo, capsys):
    ensemble = load_model_or_ensemble(ENSEMBLE)
    assert isinstance(ensemble, Ensemble) and ensemble.names == MEMBERS
    assert ensemble.uncertainty is not None and ensemble.uncertainty.calibration.method == NORMALISED
    cards = {c.name: c for c in list_cards()}
    assert cards[ENSEMBLE].members == MEMBERS and cards[ENSEMBLE].kind == "ensemble"
    code, out, _ = _cli(["models", "--json"], capsys)
    shown = {c["name"]: c for c in json.loads(out)}
    assert code == 0 and shown[ENSEMBLE]["members"] == MEMBERS
    assert shown[ENSEMBLE]["calibration"]["method"] == NORMALISED and shown[ENSEMBLE]["calibration"]["n_val"] == 60
    assert (
        shown["band-gap"]["calibration"]["intervals"] is None
        and "original" in shown["band-gap"]["calibration"]["reason"]
    )
    from cgcnn.zoo import reserved_names

    assert ENSEMBLE in reserved_names()
    with pytest.raises(CheckpointError, match=f"{ENSEMBLE} is an ensemble"):
        locate_checkpoint(ENSEMBLE)
    code, _, err = _cli(["finetune", "--pretrained", ENSEMBLE, "--target", "band_gap", "--epochs", "1"], capsys)
    assert code == 2 and f"{ENSEMBLE} is an ensemble" in err and "fine-tuned" in err


def test_members_that_do_not_fit_are_refused_by_name():
    with pytest.raises(CGCNNError, match="own-attention and band-gap"):
        Ensemble([load_model("own-attention"), load_model("band-gap")], name="mixed")


def test_predict_columns_of_the_ensemble(in_zoo, blocks, tmp_path, capsys):
    _, _, _, dataset = blocks
    test_id = json.loads((in_zoo / f"{MEMBERS[0]}.json").read_text())["details"]["split"]["test_ids"][0]
    dataset.structure(test_id).to(filename=str(tmp_path / "crystal.cif"))
    code, out, err = _cli(["predict", "--model", ENSEMBLE, str(tmp_path / "crystal.cif")], capsys)
    assert code == 0 and "note:" not in err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["id", "prediction", "std", *(f"member_{m}" for m in MEMBERS), "lower_90", "upper_90",
                             "distance", "far", "formula"]  # fmt: skip
    row = rows[0]
    assert float(row["lower_90"]) < float(row["prediction"]) < float(row["upper_90"])
    assert float(row["distance"]) > 0 and row["far"] in ("0", "1")


def test_a_modified_checkpoint_leaves_the_interval_cells_empty(in_zoo, tmp_path, capsys):
    model = load_model(MEMBERS[1])
    with __import__("torch").no_grad():
        model.model.fc_out.bias.add_(0.01)
    save_checkpoint(in_zoo / f"{MEMBERS[1]}.pt", model)  # the weights change, the old calibration stays
    try:
        cif = tmp_path / "Cu.cif"
        Structure(Lattice.cubic(3.6), ["Cu"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]).to(
            filename=str(cif)
        )
        code, out, err = _cli(["predict", "--model", ENSEMBLE, str(cif)], capsys)
        notes = [line for line in err.splitlines() if line.startswith("note:")]
        assert code == 0 and len(notes) == 1 and ENSEMBLE in notes[0] and "another checkpoint" in notes[0]
        row = next(csv.DictReader(io.StringIO(out)))
        assert row["lower_90"] == row["upper_90"] == row["distance"] == row["far"] == "" and row["prediction"]
        single = load_model(MEMBERS[1])
        assert single.uncertainty is None and MEMBERS[1] in single.uncertainty_note
    finally:
        shutil.copy(project_path("pretrained") / f"{MEMBERS[1]}.pt", in_zoo / f"{MEMBERS[1]}.pt")  # as shipped


def test_evaluate_reports_intervals_and_distances(in_zoo, blocks):
    _, _, test, dataset = blocks
    data = dataset.subset(test.ids)
    ensemble = evaluate_model(load_model_or_ensemble(ENSEMBLE), data)
    single = evaluate_model(load_model(MEMBERS[0]), data)
    for result in (ensemble, single):
        assert set(INTERVAL_KEYS) <= set(result.metrics)
        assert 0.0 <= result.metrics["coverage_68"] <= result.metrics["coverage_90"] <= result.metrics["coverage_95"]
        assert result.metrics["far_fraction"] is not None and not np.isnan(result.metrics["error_auroc_distance"])
    assert ensemble.metrics["interval_width_90_std"] > 0  # normalised by the spread: widths vary
    assert single.metrics["interval_width_90_std"] == 0  # plain split conformal: one width
    assert np.isnan(single.metrics["error_auroc_std"]) and not np.isnan(ensemble.metrics["error_auroc_std"])
    original = evaluate_model(load_model("formation-energy-per-atom"), data)
    assert all(np.isnan(original.metrics[k]) for k in INTERVAL_KEYS) and original.note == ""


# ---------------------------------------------------------------------------------------------- the badge


def test_training_crystal_is_near_and_an_unseen_element_is_far():
    """The shipped calibration of own-formation-energy-matched: francium is in none of its training crystals."""
    from cgcnn.data.splits import dataset_elements
    from cgcnn.training.pretrain import PretrainSpec, resolve_split

    model = load_model("own-formation-energy-matched")
    assert model.uncertainty is not None and model.uncertainty.domain is not None and model.uncertainty_note == ""
    card = json.loads((pretrained_dir() / "own-formation-energy-matched.json").read_text())
    dataset = load_default_dataset()
    split, _ = resolve_split(PretrainSpec.from_dict(card["details"]["spec"]), dataset, pretrained_dir())
    assert not any("Fr" in elements for elements in dataset_elements(dataset, list(split.train)).values())
    trained_on = split.train[0]
    near, far = predict_crystals(model, [(trained_on, dataset.structure(trained_on)), ("Fr", _bcc("Fr", 5.0))])
    assert near.far is False and far.far is True and far.distance > 1.5
    assert near.interval is not None and near.interval[0] < near.values[0] < near.interval[1]


# ---------------------------------------------------------------------------------------------- runs


def test_a_finished_run_calibrates_on_its_validation_block(store):
    from cgcnn.training.finetune import FinetuneSpec, run_finetune

    spec = FinetuneSpec("none", 0, hyperparams={"epochs": 1, "batch_size": 16}, n_train=32, n_val=24, n_test=8)
    outcome = run_finetune(spec, store=store)
    record = store.get(outcome.run_id)
    val = store.predictions(outcome.run_id, split="val")
    assert len(val) == 24 and val["y_pred"].notna().all()
    found = read_uncertainty(calibration_path(record.checkpoint_path))
    assert found.calibration is not None and found.calibration.method == PLAIN and len(found.calibration.scores) == 24
    model = load_model(f"run:{outcome.run_id}", store)
    assert model.uncertainty is not None and model.uncertainty_note == ""
    # the stored validation predictions are the scores' errors
    assert np.sort(np.abs(val["y_true"] - val["y_pred"]).to_numpy()) == pytest.approx(found.calibration.scores)


# ---------------------------------------------------------------------------------------------- the app


def test_predict_page_table_and_viewer_show_the_badge():
    """Predict's table and the viewer: a training crystal is near, a francium crystal gets the badge."""
    from cgcnn.app import uploads, viewer

    model = load_model("own-formation-energy-matched")
    card = json.loads((pretrained_dir() / "own-formation-energy-matched.json").read_text())
    trained = load_default_dataset().structure(card["details"]["split"]["test_ids"][0])
    files = [("known.json", trained.to_json().encode()), ("Fr.json", _bcc("Fr", 5.0).to_json().encode())]
    table, errors = uploads.predict_uploads({"m": model}, files)
    assert errors == [] and uploads.far_rows(table) == ["Fr.json"]
    assert list(table["m: training data"]) == ["near", uploads.FAR_BADGE]
    low, high = (float(v) for v in table["m 90% interval (eV/atom)"][0].split(" … "))
    assert low < table["m (eV/atom)"][0] < high
    structure = uploads.structure_from_upload(*files[1])
    info = viewer.view_of_state(structure, viewer.ViewState("Fr", "own-formation-energy-matched"), load_model).info
    assert info["far"] is True and info["distance"] > 1 and len(info["interval"]) == 2


def test_the_shipped_ensemble_loads_by_name_with_its_calibration():
    """``own-formation-energy-ensemble``: five seeds of one recipe, its calibration current (no note)."""
    ensemble = load_model_or_ensemble("own-formation-energy-ensemble")
    assert isinstance(ensemble, Ensemble) and len(ensemble.members) == 5 and ensemble.uncertainty_note == ""
    assert ensemble.uncertainty.calibration.method == NORMALISED and len(ensemble.uncertainty.calibration.scores) == 531
    assert all(m.uncertainty is not None and m.uncertainty.domain is not None for m in ensemble.members)
    seeds = [m.card.details["spec"]["seed"] for m in ensemble.members]
    flags = [{k: v for k, v in m.card.details["spec"].items() if k not in ("seed", "name")} for m in ensemble.members]
    assert seeds == [0, 1, 2, 3, 4] and all(f == flags[0] for f in flags)  # one flag set for every member
