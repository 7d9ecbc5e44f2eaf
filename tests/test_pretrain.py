from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cgcnn.cli.main import main
from cgcnn.data.datasets import load_default_dataset
from cgcnn.data.graph import GraphParams, GraphSet
from cgcnn.data.graph_cache import get_graphs
from cgcnn.data.splits import canonical_blocks, pretraining_ids, twins_of_test_block
from cgcnn.errors import CGCNNError
from cgcnn.training.pretrain import PretrainSpec, PretrainStopped, pretrain, resolve_split, resume_path, split_ids
from cgcnn.training.train import LabelledGraphs, TrainConfig, train_model
from cgcnn.training.transfer import prepare_transfer
from cgcnn.zoo import load_model

ZOO = ["own-combined", "own-formation-energy-matched", "own-attention", "own-attention-edge"]
TINY = {"atom_fea_len": 12, "n_conv": 2, "h_fea_len": 12, "hyperparams": {"batch_size": 16}}


@pytest.fixture(scope="module")
def dataset():
    return load_default_dataset()


@pytest.fixture(scope="module")
def half_labelled_ids(dataset):
    """40 crystals with a bulk modulus and 40 without: the second target is missing for half of them."""
    with_k = set(dataset.with_target("log10_K_VRH"))
    pool = pretraining_ids(dataset, "formation_energy_per_atom")
    return [i for i in pool if i in with_k][:40] + [i for i in pool if i not in with_k][:40]


def tiny_spec(ids, **changes) -> PretrainSpec:
    values = {"targets": ["formation_energy_per_atom", "log10_K_VRH"], "epochs": 3, "ids": ids, **TINY}
    return PretrainSpec.from_dict({**values, **changes})


def test_missing_labels_still_train_and_every_target_is_reported(tmp_path, dataset, half_labelled_ids):
    card = pretrain(tiny_spec(half_labelled_ids, epochs=2), tmp_path / "tiny.pt")
    labels = card.details["data"]["labels"]
    total = {t: sum(labels[role][t] for role in labels) for t in ("formation_energy_per_atom", "log10_K_VRH")}
    assert total == {"formation_energy_per_atom": 80, "log10_K_VRH": 40}
    assert set(card.details["test_mae"]) == {"formation_energy_per_atom", "log10_K_VRH"}
    assert all(np.isfinite(v) for v in card.details["test_mae"].values())
    assert card.kind == "own" and card.targets == ["formation_energy_per_atom", "log10_K_VRH"]
    assert "smaller than the study" in card.notes
    on_disk = json.loads((tmp_path / "tiny.json").read_text())
    assert on_disk["details"]["split"]["hash"] == card.details["split"]["hash"]
    assert not resume_path(tmp_path / "tiny.pt").exists()  # removed once the model is written
    predictor = load_model(str(tmp_path / "tiny.pt"))
    assert predictor.predict_structures([dataset.structure(half_labelled_ids[0])]).shape == (1, 2)


def test_interrupted_pretraining_resumes_to_the_same_numbers(tmp_path, half_labelled_ids):
    spec = tiny_spec(half_labelled_ids)
    straight = pretrain(spec, tmp_path / "straight.pt")
    with pytest.raises(PretrainStopped, match="resume"):
        pretrain(spec, tmp_path / "resumed.pt", on_epoch=lambda stats: stats.epoch >= 1)
    assert resume_path(tmp_path / "resumed.pt").is_file() and not (tmp_path / "resumed.pt").exists()
    resumed = pretrain(spec, tmp_path / "resumed.pt")
    assert resumed.details["resumed_from_epoch"] == 1
    assert resumed.details["test_mae"] == straight.details["test_mae"]
    assert resumed.details["val_mae_history"] == straight.details["val_mae_history"]
    a, b = load_model(str(tmp_path / "straight.pt")).model, load_model(str(tmp_path / "resumed.pt")).model
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    # running the recipe again finds the finished model and does not train it again
    again = pretrain(spec, tmp_path / "resumed.pt", on_epoch=lambda stats: pytest.fail("trained again"))
    assert again.details["trained_at"] == resumed.details["trained_at"]


def test_a_resume_file_of_another_spec_is_ignored(tmp_path, half_labelled_ids):
    with pytest.raises(PretrainStopped):
        pretrain(tiny_spec(half_labelled_ids, seed=5), tmp_path / "m.pt", on_epoch=lambda stats: True)
    with pytest.warns(UserWarning, match="another spec"):
        card = pretrain(tiny_spec(half_labelled_ids, epochs=1), tmp_path / "m.pt")
    assert card.details["resumed_from_epoch"] is None


def test_split_is_deterministic_disjoint_and_excludes_the_band_gap_test_block(dataset):
    ids = [f"x-{i}" for i in range(50)]
    a, b = split_ids(ids, 3, 0.1, 0.2), split_ids(list(reversed(ids)), 3, 0.1, 0.2)
    assert a == b and a.sizes == (35, 5, 10)
    assert not set(a.train) & set(a.test) and not set(a.val) & set(a.test)
    assert split_ids(ids, 4, 0.1, 0.2).content_hash != a.content_hash
    with pytest.raises(CGCNNError, match="too few"):
        split_ids(ids[:3], 0, 0.1, 0.1)

    targets = ["formation_energy_per_atom", "log10_K_VRH"]
    for exclude_twins in (True, False):
        spec = PretrainSpec.from_dict({"targets": targets, "exclude_twins": exclude_twins})
        split, origin = resolve_split(spec, dataset)
        everything = set(split.train + split.val + split.test)
        assert not everything & set(canonical_blocks(dataset, "band_gap", 0).test)
        assert everything == {cid for t in targets for cid in pretraining_ids(dataset, t, 0, exclude_twins)}
        assert "band-gap" in origin["rule"]
    assert origin.get("twins_dropped") is None  # the id-only rule drops none


def test_pretraining_sets_drop_the_twins_of_the_test_block_and_say_how_many(dataset):
    twins = twins_of_test_block(dataset, 0)
    split, origin = resolve_split(PretrainSpec(), dataset)  # new specs: the twin rule
    assert not set(split.train + split.val + split.test) & twins
    assert origin["twins_dropped"] == len(twins) == 25 and "structure twins" in origin["rule"]
    # the spec says so, and a spec stored before the rule (no key) reads as the id-only rule it was trained with
    assert PretrainSpec().to_dict()["exclude_twins"] is True
    assert PretrainSpec.from_dict(PretrainSpec().to_dict()).exclude_twins is True
    assert PretrainSpec.from_dict({"targets": ["log10_K_VRH"]}).exclude_twins is False
    assert PretrainSpec(ids="matched:own-combined").exclude_twins is False  # follows its source


def test_the_card_records_the_twins_left_out(tmp_path, dataset):
    """A tiny pretraining on the crystals that have a twin: the test block of that subset has twins outside it."""
    groups = dataset.metadata["duplicate_groups"]
    subset = dataset.subset(sorted({cid for g in groups for cid in g}), name="twins only")
    twins = twins_of_test_block(subset, 0)
    assert twins  # some test crystal of the subset has its twin outside the subset's test block
    spec = {"targets": ["formation_energy_per_atom"], "epochs": 1, **TINY}
    new = pretrain(PretrainSpec.from_dict({**spec, "exclude_twins": True}), tmp_path / "new.pt", dataset=subset)
    old = pretrain(PretrainSpec.from_dict(spec), tmp_path / "old.pt", dataset=subset)
    with_label = twins & set(subset.with_target("formation_energy_per_atom"))
    assert new.details["split"]["twins_dropped"] == len(with_label)
    assert new.details["data"]["twins_of_band_gap_test_block"] == 0
    assert old.details["data"]["twins_of_band_gap_test_block"] == len(with_label)
    assert new.details["data"]["overlaps_band_gap_test_block"] == 0
    assert old.details["data"]["overlaps_band_gap_test_block"] == 0


def test_matched_ids_take_the_crystals_and_roles_of_another_model(tmp_path, dataset, half_labelled_ids):
    pretrain(tiny_spec(half_labelled_ids, epochs=1), tmp_path / "combo.pt")
    source, _ = resolve_split(tiny_spec(half_labelled_ids), dataset)
    matched, origin = resolve_split(
        PretrainSpec.from_dict({"targets": ["log10_K_VRH"], "ids": "matched:combo", **TINY}), dataset, zoo_dir=tmp_path
    )
    assert origin["matched_to"] == "combo"
    for role in ("train", "val", "test"):
        kept = [i for i in getattr(source, role) if np.isfinite(dataset.labels.loc[i, "log10_K_VRH"])]
        assert list(getattr(matched, role)) == kept
    with pytest.raises(CGCNNError, match="no card"):
        resolve_split(PretrainSpec(ids="matched:nope"), dataset, zoo_dir=tmp_path)


def test_invalid_specs_fail_with_a_message(dataset):
    with pytest.raises(CGCNNError, match="unknown convolution"):
        PretrainSpec.from_dict({"conv": "transformer"})
    with pytest.raises(CGCNNError, match="no heads"):
        PretrainSpec.from_dict({"conv": "gated", "heads": 2})
    with pytest.raises(CGCNNError, match="no target"):
        resolve_split(PretrainSpec.from_dict({"targets": ["total_energy"]}), dataset)
    with pytest.raises(CGCNNError, match="not in the dataset"):
        resolve_split(PretrainSpec(ids=["mp-nope"]), dataset)


def test_cli_pretrain_writes_model_and_card(tmp_path, half_labelled_ids, capsys):
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(half_labelled_ids[:30]) + "\n")
    argv = ["pretrain", "--name", "cli-model", "--targets", "formation_energy_per_atom", "--conv", "attention"]
    argv += ["--heads", "2", "--epochs", "1", "--atom-fea-len", "8", "--n-conv", "1", "--h-fea-len", "8"]
    argv += ["--train-ids", str(ids_file), "--out-dir", str(tmp_path), "--json", "--quiet", "--batch-size", "8"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["name"] == "cli-model" and "formation_energy_per_atom" in summary["test_mae"]
    card = json.loads((tmp_path / "cli-model.json").read_text())
    assert card["details"]["spec"]["conv"] == "attention" and card["details"]["heads"] == 2
    assert main(["pretrain", "--name", "x", "--train-ids", "nope", "--out-dir", str(tmp_path)]) == 2


# ---- the committed zoo ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_loads_predicts_and_reproduces_its_card(name, dataset):
    predictor = load_model(name)
    card = predictor.card
    assert card.kind == "own" and card.name == name
    details = card.details
    assert details["data"]["dataset_hash"] == dataset.content_hash
    assert details["data"]["overlaps_band_gap_test_block"] == 0
    assert details["training_seconds"] > 0 and details["machine"]["cpu_count"]
    assert "smaller than the study" in card.notes
    # the recorded split is reproduced from the recorded spec (no training needed)
    split, _ = resolve_split(PretrainSpec.from_dict(details["spec"]), dataset)
    assert split.content_hash == details["split"]["hash"]
    # re-evaluation of the recorded test crystals gives the card's test MAE per target
    test_ids = details["split"]["test_ids"]
    assert set(test_ids) <= set(split.test)
    # cached on disk for the session: the models share crystals
    graphs, failures = get_graphs(dataset, test_ids, GraphParams())
    assert not failures
    pred = predictor.predict_graphs([graphs[i] for i in test_ids])
    truth = dataset.labels.loc[test_ids, card.targets].to_numpy(dtype=np.float64)
    for k, target in enumerate(card.targets):
        mae = float(np.nanmean(np.abs(pred[:, k] - truth[:, k])))
        assert abs(mae - details["test_mae"][target]) < 1e-4, target
    assert card.mae == details["test_mae"][card.targets[0]]


def test_zoo_models_match_their_recipe():
    combined = load_model("own-combined").card.details
    matched = load_model("own-formation-energy-matched").card.details
    assert matched["split"]["matched_to"] == "own-combined"
    assert matched["split"]["matched_split_hash"] == combined["split"]["hash"]
    assert load_model("own-attention").model.config.conv == "attention"
    assert load_model("own-attention-edge").model.config.conv == "attention-edge"
    assert "band_gap" not in load_model("own-combined").targets


def test_transfer_from_the_attention_zoo_model(dataset):
    source = load_model("own-attention").model
    pool = [i for i in canonical_blocks(dataset, "band_gap", 0).train[:48]]
    graphs, _ = get_graphs(dataset, pool, GraphParams())

    def part(ids):
        return LabelledGraphs(
            ids, GraphSet([graphs[i] for i in ids], GraphParams()), dataset.labels.loc[ids, "band_gap"].to_numpy()
        )

    model, report = prepare_transfer(source, 2, ["band_gap"], seed=0)
    assert report.frozen_layers == ["embedding", "convs.0", "convs.1"]
    before = {k: v.clone() for k, v in model.convs[0].state_dict().items()}
    result = train_model(
        model, part(pool[:32]), part(pool[32:40]), part(pool[40:]), TrainConfig(epochs=1), frozen_depth=report.freeze
    )
    assert np.isfinite(result.test.mae)
    assert all(torch.equal(v, before[k]) for k, v in model.convs[0].state_dict().items())


def test_spec_holds_a_model_config_and_reads_every_stored_card():
    from pathlib import Path

    from cgcnn.nn.model import ModelConfig

    spec = PretrainSpec()
    assert spec.model == ModelConfig.original_checkpoints(targets=list(spec.targets))
    for card in sorted((Path(__file__).parent.parent / "pretrained").glob("*.json")):
        if json.loads(card.read_text()).get("kind") == "ensemble":
            continue  # a shipped ensemble's manifest: its members are cards of their own
        stored = json.loads(card.read_text())["details"]["spec"]
        back = PretrainSpec.from_dict(stored)
        assert back.to_dict() == stored  # same flat form, so the same fingerprint and resume key
        assert back.model_config() == load_model(card.stem).model.config
