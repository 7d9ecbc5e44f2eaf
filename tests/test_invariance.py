"""cgcnn.testing: predictions do not depend on how a crystal is written; ties are flagged, breakage is caught."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from conftest import TIED, read

from cgcnn.data.graph import GraphParams
from cgcnn.nn.cards import ModelCard
from cgcnn.nn.model import CrystalGraphConvNet, ModelConfig
from cgcnn.nn.normalizer import Normalizer
from cgcnn.nn.predictor import Predictor
from cgcnn.testing import TRANSFORMS, assert_invariant, check_invariant, rotated
from cgcnn.zoo import load_model


@pytest.mark.parametrize("model", ["formation-energy-per-atom", "own-attention", "own-attention-edge"])
def test_shipped_models_are_invariant_on_every_untied_crystal(model, untied_ids):
    predictor = load_model(model)
    for mp_id in untied_ids:
        results = assert_invariant(predictor, read(mp_id))
        assert [r.transform for r in results] == list(TRANSFORMS) and all(r.status == "ok" for r in results)


def test_a_crystal_with_a_tie_at_the_cut_is_flagged_not_failed():
    predictor = load_model("formation-energy-per-atom")
    results = assert_invariant(predictor, read("mp-20679"))  # Co3SnC: the cut splits a shell of 12
    assert {r.status for r in results} == {"tie"} and all(r.passed for r in results)
    assert "shell of 12 neighbours" in results[0].detail
    assert max(r.max_abs_diff for r in results) > 1e-4  # the tie really changes the prediction: flagged, not hidden
    for mp_id in TIED:
        assert {r.status for r in check_invariant(predictor, read(mp_id))} == {"tie"}


def _tiny(conv: str = "gated", dtype: torch.dtype = torch.float32) -> Predictor:
    torch.manual_seed(0)
    model = CrystalGraphConvNet(ModelConfig(atom_fea_len=16, n_conv=2, h_fea_len=8, conv=conv)).to(dtype).eval()
    card = ModelCard("tiny", "file", "y", "eV", 0, None, "none", "tests")
    return Predictor(model, Normalizer(np.array([0.0]), np.array([1.0])), GraphParams(), card)


@pytest.mark.parametrize("conv", ["gated", "attention", "attention-edge"])
def test_a_float64_model_gets_a_sharper_tolerance(conv):
    structure = read("mp-2184")
    loose, sharp = check_invariant(_tiny(conv), structure), check_invariant(_tiny(conv, torch.float64), structure)
    assert all(r.status == "ok" for r in loose + sharp)
    assert sharp[0].rtol < loose[0].rtol / 1000 and sharp[0].atol < loose[0].atol / 1000
    assert max(r.max_abs_diff for r in sharp) < 1e-12


def test_a_prediction_that_depends_on_the_writing_fails_with_every_broken_transform():
    """A stand-in for a broken layer: it reads the first atom's position and the atom order."""

    def broken(structure):
        return np.array([structure.cart_coords[0, 0] + structure.atomic_numbers[0]])

    structure = read("mp-2184")
    with pytest.raises(AssertionError) as info:
        assert_invariant(broken, structure)
    message = str(info.value)
    assert message.startswith(structure.composition.reduced_formula)
    for transform in ("permutation", "translation", "rotation"):
        assert f"{transform}: predictions differ by up to" in message
    results = check_invariant(broken, structure, transforms=("rotation", "supercell"))
    assert [(r.transform, r.status) for r in results] == [("rotation", "failed"), ("supercell", "ok")]
    assert assert_invariant(broken, structure, transforms=("supercell",))[0].passed
    assert "__tracebackhide__ = True" in inspect.getsource(assert_invariant)


def test_non_finite_predictions_fail_and_unknown_transforms_are_refused():
    results = check_invariant(lambda s: np.array([np.nan]), read("mp-30"), transforms=("permutation",))
    assert results[0].status == "failed" and "NaN" in results[0].detail
    with pytest.raises(ValueError, match="unknown transform"):
        check_invariant(lambda s: np.zeros(1), read("mp-30"), transforms=("mirror",))


def test_the_rotation_is_proper_and_keeps_every_distance():
    structure = read("mp-720")
    turned = rotated(structure, seed=3)
    rotation = np.linalg.solve(structure.lattice.matrix, turned.lattice.matrix)
    assert np.linalg.det(rotation) == pytest.approx(1.0) and not np.allclose(rotation, np.eye(3))
    np.testing.assert_allclose(turned.distance_matrix, structure.distance_matrix, atol=1e-9)
