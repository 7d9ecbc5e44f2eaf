"""Distribution shift: splits by chemistry, the measured shift penalty, and the cards that state it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cgcnn.cli.main import main
from cgcnn.data.datasets import DatasetError, load_default_dataset
from cgcnn.data.splits import (
    ELEMENT_FAMILIES,
    canonical_blocks,
    dataset_elements,
    elements_of_formula,
    family_members,
    parse_split_rule,
    pretraining_ids,
    rule_split,
)
from cgcnn.errors import CGCNNError
from cgcnn.nn.cards import ModelCard, shift_penalty
from cgcnn.training.pretrain import PretrainSpec, resolve_split, split_ids
from cgcnn.zoo import list_cards, load_model, own_cards, pretrained_dir

ROOT = Path(__file__).resolve().parent.parent
SHIFT_DIR = ROOT / "docs" / "results" / "shift"
FORMULAS = {
    "c-01": "Fe2O3",
    "c-02": "NaCl",
    "c-03": "LiCoO2",
    "c-04": "MgO",
    "c-05": "Si",
    "c-06": "NiS2",
    "c-07": "GaAs",
    "c-08": "CaTiO3",
    "c-09": "Al2O3",
    "c-10": "ZnO",
    "c-11": "KBr",
    "c-12": "SrTiO3",
    "c-13": "BN",
    "c-14": "CoSb3",
    "c-15": "Cu2O",
    "c-16": "SnO2",
    "c-17": "LiF",
    "c-18": "TiO2",
    "c-19": "FeNi3",
    "c-20": "CdTe",
}
ELEMENTS = {cid: elements_of_formula(f) for cid, f in FORMULAS.items()}
IRON_TRIAD = {"c-01", "c-03", "c-06", "c-14", "c-19"}


@pytest.fixture(scope="module")
def dataset():
    return load_default_dataset()


# ---- hand-made formulas ---------------------------------------------------------------------------------------


def test_elements_and_families_from_formulas():
    assert elements_of_formula("LiCoO2") == {"Li", "Co", "O"}
    assert elements_of_formula("Si") == {"Si"} and elements_of_formula("CaTiO3") == {"Ca", "Ti", "O"}
    assert set(family_members(ELEMENTS, ELEMENT_FAMILIES["iron-triad"])) == IRON_TRIAD
    assert family_members(ELEMENTS, ELEMENT_FAMILIES["halogens"]) == ["c-02", "c-11", "c-17"]
    assert parse_split_rule("chemistry:Fe+Co+Ni").elements == parse_split_rule("chemistry:iron-triad").elements
    assert str(parse_split_rule("random-like:halogens")) == "random-like:halogens"
    for bad in ("chemistry:nope", "chemistry:Fe+Xx", "chemistry:", "sorted", "random:halogens"):
        with pytest.raises(DatasetError):
            parse_split_rule(bad)


def test_chemistry_split_holds_out_exactly_the_family_and_is_deterministic():
    rule = parse_split_rule("chemistry:iron-triad")
    split = rule_split(rule, ELEMENTS, 0, 0.2, 0.1)
    assert set(split.test) == IRON_TRIAD
    assert not IRON_TRIAD & set(split.train + split.val)
    assert split.sizes == (11, 4, 5) and len(set(split.train + split.val + split.test)) == 20
    # the input order does not matter; another seed reorders the other roles but never the held-out set
    shuffled = dict(reversed(list(ELEMENTS.items())))
    assert rule_split(rule, shuffled, 0, 0.2, 0.1) == split
    other = rule_split(rule, ELEMENTS, 1, 0.2, 0.1)
    assert set(other.test) == IRON_TRIAD and other.val != split.val
    with pytest.raises(DatasetError, match="no crystal"):
        rule_split(parse_split_rule("chemistry:actinides"), ELEMENTS, 0, 0.2, 0.1)


def test_random_like_split_has_the_chemistry_block_sizes_and_random_matches_pretrain():
    chem = rule_split(parse_split_rule("chemistry:iron-triad"), ELEMENTS, 0, 0.2, 0.1)
    control = rule_split(parse_split_rule("random-like:iron-triad"), ELEMENTS, 0, 0.2, 0.1)
    assert control.sizes == chem.sizes and set(control.test) != IRON_TRIAD
    assert len(set(control.train + control.val + control.test)) == 20
    plain = rule_split(parse_split_rule("random"), ELEMENTS, 3, 0.1, 0.2)
    assert plain == split_ids(list(ELEMENTS), 3, 0.1, 0.2)  # the random rule is pretrain's own split


# ---- the real asset -------------------------------------------------------------------------------------------


def test_iron_triad_split_of_the_default_data(dataset):
    # the rule the shift pair was trained with (train_zoo.sh: --keep-twins, the band-gap test block left out by id)
    ids = pretraining_ids(dataset, "formation_energy_per_atom", 0, exclude_twins=False)
    elements = dataset_elements(dataset, ids)
    # the atomic numbers and the stored reduced formulas name the same elements, crystal by crystal
    assert all(elements[cid] == elements_of_formula(dataset.formulas[dataset.index_of(cid)]) for cid in ids)
    spec = {"targets": ["formation_energy_per_atom"], "exclude_twins": False}
    chem, origin = resolve_split(PretrainSpec.from_dict({**spec, "split": "chemistry:iron-triad"}), dataset)
    control, _ = resolve_split(PretrainSpec.from_dict({**spec, "split": "random-like:iron-triad"}), dataset)
    assert origin["n_family"] == len(chem.test) == 690 and origin["family_elements"] == ["Co", "Fe", "Ni"]
    assert chem.sizes == control.sizes == (4085, 531, 690)
    shipped = _pair()  # the committed pair's cards record exactly these splits
    assert [c.details["split"]["hash"] for c in shipped] == [control.content_hash, chem.content_hash]
    assert all(elements[cid] & {"Fe", "Co", "Ni"} for cid in chem.test)
    assert not any(elements[cid] & {"Fe", "Co", "Ni"} for cid in chem.train + chem.val)
    band_gap_test = set(canonical_blocks(dataset, "band_gap", 0).test)
    for split in (chem, control):
        assert set(split.train + split.val + split.test) == set(ids) and not band_gap_test & set(split.test)
    # the control tests on a random mix: iron-triad crystals in about their share of the data (690 / 5306)
    assert len(set(control.test) & set(chem.test)) == 94


def test_the_default_random_split_keeps_the_fingerprints_of_the_shipped_models(dataset):
    for card in own_cards():
        spec = PretrainSpec.from_dict(card.details["spec"])
        assert spec.split == "random" and "split" not in spec.to_dict()
        if spec.ids == "pretraining":
            split, _ = resolve_split(spec, dataset)
            assert split.content_hash == card.details["split"]["hash"]
    with pytest.raises(CGCNNError, match="fixes the roles"):
        PretrainSpec.from_dict({"ids": "matched:own-combined", "split": "chemistry:halogens"})
    with pytest.raises(CGCNNError, match="unknown split"):
        PretrainSpec.from_dict({"split": "by-weight"})


# ---- the measured penalty on the cards ------------------------------------------------------------------------


def _pair() -> tuple[ModelCard, ModelCard]:
    return tuple(
        ModelCard.from_dict(json.loads((SHIFT_DIR / f"own-formation-energy-shift-{kind}.json").read_text()))
        for kind in ("random", "iron-triad")
    )


def test_every_own_card_states_the_measured_shift_penalty():
    penalty = shift_penalty(*_pair())
    assert penalty["n_test"] == 690 and penalty["family"] == "iron-triad"
    assert penalty["ratio"] == round(penalty["shifted_mae"] / penalty["random_mae"], 2)
    cards = own_cards()
    assert len(cards) >= 5
    for card in cards:
        assert card.shift_penalty == penalty, card.name
        assert load_model(card.name).card.shift_penalty == penalty  # the loaded model shows the same card
    for card in list_cards():
        if card.kind == "original":
            assert not card.shift_penalty and "all of Materials Project" in card.notes


def test_shift_penalty_command_checks_the_pair_and_writes_only_the_cards(tmp_path, capsys):
    for name in ("own-combined", "own-attention"):
        for suffix in (".json", ".pt"):
            (tmp_path / f"{name}{suffix}").write_bytes((pretrained_dir() / f"{name}{suffix}").read_bytes())
    weights = (tmp_path / "own-combined.pt").read_bytes()
    random_card, shifted_card = (SHIFT_DIR / f"own-formation-energy-shift-{k}.json" for k in ("random", "iron-triad"))
    argv = ["shift-penalty", "--random", str(random_card), "--shifted", str(shifted_card)]
    assert main([*argv, "--write", "--out-dir", str(tmp_path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == shift_penalty(*_pair())
    for name in ("own-combined", "own-attention"):
        assert json.loads((tmp_path / f"{name}.json").read_text())["shift_penalty"] == printed
    assert (tmp_path / "own-combined.pt").read_bytes() == weights
    # the cards swapped, or a card that is not of a pair: one line, exit code 2
    assert main(["shift-penalty", "--random", str(shifted_card), "--shifted", str(random_card)]) == 2
    assert "not a shift pair" in capsys.readouterr().err
    assert main(["shift-penalty", "--random", str(tmp_path / "nope.json"), "--shifted", str(random_card)]) == 2
