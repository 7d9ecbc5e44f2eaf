from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import read

from cgcnn.data.graph import GraphParams
from cgcnn.errors import CGCNNError, CheckpointError
from cgcnn.nn import checkpoint
from cgcnn.nn.cards import ModelCard
from cgcnn.nn.checkpoint import FORMAT_VERSION, load_checkpoint, read_config, safe_torch_load, save_checkpoint
from cgcnn.nn.model import CrystalGraphConvNet, ModelConfig
from cgcnn.nn.normalizer import Normalizer
from cgcnn.nn.predictor import Predictor
from cgcnn.zoo import list_cards, load_model, original_checkpoint_path, original_names


def test_every_original_checkpoint_loads_weights_only():
    assert len(original_names()) == 8
    for name in original_names():
        p = load_model(name)
        assert p.model.config.n_conv == 4 and p.model.config.h_fea_len == 32
        assert p.card.kind == "original" and p.card.train_size > 0
    assert load_model("semi-metal-classification").model.config.classification


def test_cards_have_the_required_fields():
    cards = {c.name: c for c in list_cards()}
    assert cards["bulk-moduli"].units == "log10(GPa)"
    assert cards["formation-energy-per-atom"].mae == pytest.approx(0.039)
    assert cards["formation-energy-per-atom"].train_size == 28046


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch /tmp/cgcnn-pwned",))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    marker = "/tmp/cgcnn-pwned"
    if os.path.exists(marker):
        os.remove(marker)
    evil = tmp_path / "evil.pth.tar"
    torch.save({"state_dict": {}, "payload": _RunsCode()}, evil)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_model(str(evil))
    assert not os.path.exists(marker)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"not a checkpoint at all", "not a PyTorch checkpoint"), (b"", "not a PyTorch checkpoint")],
)
def test_garbage_files_are_refused(tmp_path, content, message):
    f = tmp_path / "x.pt"
    f.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        safe_torch_load(f)


def test_torch_files_that_are_not_cgcnn_are_refused(tmp_path):
    f = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, f)
    with pytest.raises(CheckpointError, match="no 'state_dict'"):
        load_model(str(f))
    torch.save({"state_dict": {"w": torch.zeros(2)}, "normalizer": {"mean": 0, "std": 1}, "args": {}}, f)
    with pytest.raises(CheckpointError, match="not a CGCNN checkpoint"):
        load_model(str(f))
    with pytest.raises(CheckpointError, match="unknown model"):
        load_model("no-such-model")


def _small_predictor(targets=("a", "b")) -> Predictor:
    torch.manual_seed(0)
    cfg = ModelConfig(atom_fea_len=16, n_conv=2, h_fea_len=8, targets=list(targets))
    card = ModelCard("tiny", "file", "test", "eV", 10, None, "none", "tests", targets=list(targets))
    return Predictor(
        CrystalGraphConvNet(cfg).eval(), Normalizer(np.array([1.0, -2.0]), np.array([2.0, 0.5])), GraphParams(), card
    )


def test_own_format_round_trip_and_version_check(tmp_path):
    p = _small_predictor()
    path = save_checkpoint(tmp_path / "m.pt", p)
    back = load_checkpoint(path)
    s = [read("mp-30"), read("mp-720")]
    np.testing.assert_allclose(back.predict_structures(s), p.predict_structures(s), atol=1e-6)
    assert back.card.name == "tiny" and back.targets == ["a", "b"]

    data = torch.load(path, weights_only=True)
    data["format_version"] = FORMAT_VERSION + 1
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="format version"):
        load_checkpoint(path)


def test_original_file_path_loads_like_the_zoo_name():
    by_path = load_model(str(original_checkpoint_path("bulk-moduli")))
    by_name = load_model("bulk-moduli")
    s = [read("mp-30")]
    np.testing.assert_allclose(by_path.predict_structures(s), by_name.predict_structures(s))


# ----------------------------------------------------------------------------------------------------------------
# Upgrades and checks before loading (each bad file is one CheckpointError, refused before allocating)
# ----------------------------------------------------------------------------------------------------------------


def _saved(tmp_path) -> dict:
    path = save_checkpoint(tmp_path / "m.pt", _small_predictor())
    return torch.load(path, weights_only=True)


def _refused(tmp_path, data: dict, message: str) -> None:
    path = tmp_path / "bad.pt"
    torch.save(data, path)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_an_earlier_format_version_is_upgraded_step_by_step(tmp_path, monkeypatch):
    """A synthetic version 0 that kept the architecture under another key and had no card."""
    data = _saved(tmp_path)
    old = {k: v for k, v in data.items() if k not in ("config", "card")}
    old |= {"format_version": 0, "architecture": data["config"]}
    path = tmp_path / "v0.pt"
    torch.save(old, path)
    with pytest.raises(CheckpointError, match="version 0 has no upgrade"):
        load_checkpoint(path)

    def v0_to_v1(payload: dict) -> dict:
        payload["config"] = payload.pop("architecture")
        payload["card"] = ModelCard("upgraded", "file", "test", "eV", None, None, "none", "v0").to_dict()
        return payload

    monkeypatch.setitem(checkpoint._MIGRATIONS, 0, v0_to_v1)
    back = load_checkpoint(path)
    assert back.card.name == "upgraded"
    s = [read("mp-30")]
    np.testing.assert_allclose(back.predict_structures(s), _small_predictor().predict_structures(s), atol=1e-6)
    assert checkpoint.upgrade({**data}, "m.pt")["format_version"] == FORMAT_VERSION


def test_missing_card_bad_normaliser_and_unknown_conv_are_one_line_errors(tmp_path):
    data = _saved(tmp_path)
    _refused(tmp_path, {k: v for k, v in data.items() if k != "card"}, "no model card")
    _refused(tmp_path, {k: v for k, v in data.items() if k != "normalizer"}, "no normaliser")
    _refused(tmp_path, {**data, "normalizer": {"mean": [0.0, 1.0]}}, "bad normaliser")
    _refused(tmp_path, {**data, "normalizer": {"mean": [0.0, 1.0], "std": [1.0, 0.0]}}, "bad normaliser")
    _refused(tmp_path, {**data, "normalizer": {"mean": [0.0], "std": [1.0]}}, "bad normaliser")
    _refused(tmp_path, {**data, "config": {**data["config"], "conv": "transformer"}}, "unknown convolution kind")
    _refused(tmp_path, {**data, "config": {**data["config"], "conv_options": {"heads": 3}}}, "options do not fit")
    _refused(tmp_path, {**data, "card": {"name": "x"}}, "malformed model card")


def test_non_dict_state_dict_and_wrong_element_table_are_refused(tmp_path):
    data = _saved(tmp_path)
    _refused(tmp_path, {**data, "state_dict": [torch.zeros(2)]}, "not a dict of named tensors")
    _refused(tmp_path, {**data, "state_dict": {"w": 3}}, "not a dict of named tensors")
    state = dict(data["state_dict"])
    state["embedding.weight"] = torch.zeros(16, 50)
    config = {**data["config"], "orig_atom_fea_len": 50}
    _refused(tmp_path, {**data, "config": config, "state_dict": state}, "element table has 92")
    config = {**data["config"], "nbr_fea_len": 40}
    _refused(tmp_path, {**data, "config": config}, "41")


@pytest.mark.parametrize(
    "change",
    [{"atom_fea_len": 20000}, {"n_conv": 100000}, {"h_fea_len": 10**9}, {"n_h": 5000}, {"atom_fea_len": -1}],
)
def test_huge_or_negative_sizes_are_refused_before_allocation(tmp_path, change):
    """Only the config dict is written: a model of these sizes would need gigabytes."""
    data = _saved(tmp_path)
    _refused(tmp_path, {**data, "config": {**data["config"], **change}, "state_dict": {}}, "limit|positive")


def test_attention_options_that_would_allocate_gigabytes_are_refused(tmp_path):
    data = _saved(tmp_path)
    config = {**data["config"], "conv": "attention-edge", "conv_options": {"heads": 100_000}}
    _refused(tmp_path, {**data, "config": config, "state_dict": {}}, "parameters is beyond the limit")


def test_tensor_shapes_are_checked_and_compressed_records_are_not_inflated(tmp_path):
    data = _saved(tmp_path)
    state = dict(data["state_dict"])
    state["embedding.weight"] = torch.zeros(1000, 92)
    _refused(tmp_path, {**data, "state_dict": state}, r"embedding.weight has shape \(1000, 92\)")
    _refused(tmp_path, {**data, "state_dict": {**state, "extra": torch.zeros(3)}}, "unexpected extra")

    # 40 MB of zeros deflated into a tiny zip: the memory-mapped load refuses it without inflating it
    big = tmp_path / "big.pt"
    torch.save({**data, "state_dict": {**data["state_dict"], "extra": torch.zeros(10_000_000)}}, big)
    small = tmp_path / "small.pt"
    with zipfile.ZipFile(big) as zin, zipfile.ZipFile(small, "w") as zout:
        for info in zin.infolist():
            payload = zin.read(info.filename)
            zout.writestr(info.filename, payload, zipfile.ZIP_DEFLATED if len(payload) > 10**6 else zipfile.ZIP_STORED)
    assert small.stat().st_size < 200_000
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_checkpoint(small)


def test_nan_or_infinite_weights_are_refused(tmp_path):
    data = _saved(tmp_path)
    for bad in (float("nan"), float("inf")):
        state = {k: v.clone() for k, v in data["state_dict"].items()}
        state["convs.1.fc_full.weight"][0, 0] = bad
        _refused(tmp_path, {**data, "state_dict": state}, "convs.1.fc_full.weight holds NaN or infinite")


def test_read_config_reads_the_header_only(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", _small_predictor())
    config, params = read_config(path)
    assert (config.n_conv, config.targets, params) == (2, ["a", "b"], GraphParams())
    assert read_config(original_checkpoint_path("band-gap"))[0].n_conv == 4


def test_original_checkpoints_load_from_many_threads_at_once():
    """Sessions of one server load models concurrently; the allowance for numpy scalars must hold for each."""
    from concurrent.futures import ThreadPoolExecutor

    from cgcnn.nn.checkpoint import safe_torch_load

    path = original_checkpoint_path("semi-metal-classification")
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: safe_torch_load(path), range(32)))
    assert all("state_dict" in r for r in results)


# ----------------------------------------------------------------------------------------------------------------
# Format 1 → 2: the graph's definition only (build limits are the caller's, never saved)
# ----------------------------------------------------------------------------------------------------------------


def _as_version_1(data: dict, max_atoms: int) -> dict:
    """A payload as format 1 wrote it: the server's limits inside ``graph_params``."""
    params = {**data["graph_params"], "widen_radius": False, "max_atoms": max_atoms}
    return {**data, "format_version": 1, "graph_params": params}


def test_a_version_1_payload_is_upgraded_to_the_definition_only(tmp_path):
    old = _as_version_1(_saved(tmp_path), max_atoms=20_000)
    new = checkpoint.upgrade(dict(old), "run.pt")
    assert new["format_version"] == FORMAT_VERSION >= 2
    assert new["graph_params"] == {"radius": 8.0, "max_neighbors": 12, "dmin": 0.0, "step": 0.2}
    assert {k: v for k, v in new.items() if k not in ("format_version", "graph_params")} == {
        k: v for k, v in old.items() if k not in ("format_version", "graph_params")
    }
    saved = torch.load(save_checkpoint(tmp_path / "again.pt", load_checkpoint(tmp_path / "m.pt")), weights_only=True)
    assert set(saved["graph_params"]) == {"radius", "max_neighbors", "dmin", "step"}  # limits are never written


def test_version_1_files_predict_exactly_as_before(tmp_path, all_ids):
    """The shipped models are format 1 files: loaded (upgraded) and re-saved, every test crystal predicts the same."""
    structures = [read(i) for i in all_ids]
    shipped = Path(__file__).resolve().parent.parent / "pretrained" / "own-attention.pt"
    raw = torch.load(shipped, weights_only=True)
    assert raw["format_version"] == 1 and "max_atoms" in raw["graph_params"]
    upgraded = load_checkpoint(shipped)
    assert upgraded.graph_params == GraphParams()
    by_hand = CrystalGraphConvNet(ModelConfig.from_dict(raw["config"]))  # the weights, without any upgrade
    by_hand.load_state_dict(raw["state_dict"])
    reference = Predictor(by_hand.eval(), Normalizer.from_dict(raw["normalizer"]), GraphParams(), upgraded.card)
    resaved = load_checkpoint(save_checkpoint(tmp_path / "v2.pt", upgraded))
    expected = reference.predict_structures(structures)
    np.testing.assert_allclose(upgraded.predict_structures(structures), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(resaved.predict_structures(structures), expected, rtol=0, atol=1e-6)


def test_an_ensemble_of_runs_trained_under_different_atom_limits_works(tmp_path):
    """Two seeds of one recipe, fine-tuned on servers with CGCNN_MAX_ATOMS 1000 and 20000 (format 1 files)."""
    from cgcnn.nn.predictor import Ensemble

    data = _saved(tmp_path)
    paths = []
    for limit in (1000, 20_000):
        path = tmp_path / f"run-{limit}.pt"
        torch.save(_as_version_1(data, max_atoms=limit), path)
        paths.append(path)
    members = [load_checkpoint(p) for p in paths]
    ensemble = Ensemble(members)
    graphs = [members[0].graph(read(i)) for i in ("mp-30", "mp-720")]
    np.testing.assert_allclose(ensemble.predict_graphs(graphs), members[0].predict_graphs(graphs))
    other = _small_predictor()
    other.graph_params = GraphParams(radius=6.0)
    with pytest.raises(CGCNNError, match="build their graphs differently"):
        Ensemble([members[0], other])
