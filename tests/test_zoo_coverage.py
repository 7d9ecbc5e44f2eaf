"""Issue 21: the Model zoo page shows each model's calibrated 90% coverage on its test block, or "not calibrated".

The numbers are the shipped measurements (``docs/results/uncertainty/zoo-coverage.json``); the page never
evaluates a model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cgcnn.app import zoo_coverage
from devtools.sign_in import token_of

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = json.loads((ROOT / "docs" / "results" / "uncertainty" / zoo_coverage.COVERAGE_FILE).read_text())["models"]


@pytest.fixture(autouse=True)
def _cwd(monkeypatch):
    monkeypatch.chdir(ROOT)


def zoo_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app_pages" / "1_Model_zoo.py"), default_timeout=120)
    at.query_params.update({"user": "alice", "token": token_of("alice")})
    return at.run()


def text_of(at: AppTest) -> str:
    return " ".join(m.value for m in at.markdown).replace("\\", "")


def test_zoo_page_shows_test_block_coverage_or_not_calibrated():
    at = zoo_page()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value.set_index("name")
    own = SHIPPED["own-attention"]
    assert table.loc["own-attention", "90% coverage (test)"] == (
        f"{own['coverage_90']:.3f} of {own['n']} (width {own['interval_width_90']:.3g})"
    )
    assert table.loc["band-gap", "90% coverage (test)"] == "not calibrated"  # an original checkpoint
    assert set(SHIPPED) <= set(table.index)

    at.selectbox(key="zoo_model").set_value("own-attention").run()
    assert not at.exception
    text = text_of(at)
    assert f"held {own['coverage_90']:.1%} of the true values (nominal 90%)" in text.replace("*", "")
    assert "the same for every crystal" in text  # one model: one width

    ensemble = SHIPPED["own-formation-energy-ensemble"]
    at.selectbox(key="zoo_model").set_value("own-formation-energy-ensemble").run()
    assert not at.exception and not at.error, [e.value for e in at.error]  # it raised on a loaded Ensemble's card
    assert "Seed ensemble of 5 models" in text_of(at).replace("*", "")
    assert f"{ensemble['coverage_90']:.1%}" in text_of(at) and "varying across crystals" in text_of(at)

    at.selectbox(key="zoo_model").set_value("band-gap").run()
    assert not at.exception and "Not calibrated" in text_of(at)


def test_coverage_cell_and_sentence_without_measurements(tmp_path):
    assert zoo_coverage.shipped_coverage(tmp_path) == {}
    (tmp_path / zoo_coverage.COVERAGE_FILE).write_text("[not json")
    assert zoo_coverage.shipped_coverage(tmp_path) == {}
    calibrated = {"half_width": {"90": 0.28}, "n_val": 531}
    assert zoo_coverage.coverage_cell(calibrated, None) == "not measured"
    assert zoo_coverage.coverage_cell({}, None) == "not calibrated"
    assert "not measured" in zoo_coverage.coverage_sentence("run *x*", calibrated, None)
    assert "run \\*x\\*" in zoo_coverage.coverage_sentence("run *x*", calibrated, None)  # a typed name stays text
    original = {"intervals": None, "reason": "no validation block"}
    assert zoo_coverage.coverage_sentence("band-gap", original, None).startswith("**Not calibrated** (no validation")


def test_bulk_modulus_cards_carry_the_external_check(tmp_path):
    from cgcnn.zoo import external_checks, list_cards

    checks = {c.name: c.external_check for c in list_cards() if c.external_check}
    assert set(checks) == {"bulk-moduli", "own-combined"}
    assert checks["own-combined"]["target"] == "log10_K_VRH" and checks["bulk-moduli"]["n"] == 71
    assert "not the Voigt-Reuss-Hill K" in checks["bulk-moduli"]["caveat"]
    assert "contains these elements" in checks["bulk-moduli"]["caveat"]
    assert external_checks(tmp_path / "missing.json") == {}
    at = zoo_page()
    at.selectbox(key="zoo_model").set_value("bulk-moduli").run()
    assert not at.exception and not at.error
    (info,) = [i.value.replace("\\", "") for i in at.info if "External check" in i.value]
    assert f"MAE {checks['bulk-moduli']['mae']:.3f} log10(GPa)" in info and "not unseen chemistry" in info
