from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from conftest import read

from cgcnn.data.graph import GraphParams
from cgcnn.errors import CheckpointError
from cgcnn.nn.cards import ModelCard
from cgcnn.nn.checkpoint import FORMAT_VERSION, load_checkpoint, safe_torch_load, save_checkpoint
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
