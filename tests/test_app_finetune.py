"""The Fine-tune page follows what the student just did: it opens the run just queued, its preview says what
*Train again* will do, and *Show everyone's runs* starts off for a student (also one who typed a name late)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cgcnn.runs.store import RunStore
from cgcnn.training.finetune import FinetuneSpec
from devtools.sign_in import token_of

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="module")
def _own_home(tmp_path_factory):
    """A store of this module's own, drained by nobody (queued runs stay queued)."""
    import os

    import app_ui

    old = os.environ["CGCNN_HOME"]
    os.environ["CGCNN_HOME"] = str(tmp_path_factory.mktemp("finetune_page_home"))
    app_ui.store.clear()
    yield
    os.environ["CGCNN_HOME"] = old
    app_ui.store.clear()


@pytest.fixture(autouse=True)
def _cwd_no_workers(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("CGCNN_WORKERS", "0")


def page(user: str | None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app_pages/2_Fine_tune.py"), default_timeout=120)
    if user:
        at.query_params["user"] = user
        at.query_params["token"] = token_of(user)
    return at.run()


def queue(at: AppTest, n_train: int) -> AppTest:
    at.number_input(key="ft_train").set_value(n_train)
    at.number_input(key="ft_epochs").set_value(2)
    return at.button(key="ft_submit").click().run()


def test_the_run_just_queued_is_opened():
    store = RunStore()
    at = queue(page("hana"), 60)
    assert not at.exception and not at.error, [e.value for e in at.error]
    (first,) = [r.id for r in store.list_runs(owner="hana")]
    assert at.selectbox(key="ft_open").value == first
    at = queue(at, 70)  # a second launch opens the second run, not the one open before
    second = next(r.id for r in store.list_runs(owner="hana") if r.n_train == 70)
    assert at.selectbox(key="ft_open").value == second
    assert any(second in m.value for m in at.markdown)  # its detail is drawn
    at = at.button(key=f"cancel_{second}").click().run()
    assert [t.value.replace("\\", "") for t in at.toast] == [f"cancelled run {second} (it was queued)"]
    assert store.get(second).status == "cancelled"
    assert "cancelled: cancelled" not in " ".join(at.table[0].value["state"])


def test_preview_with_train_again_says_it_trains():
    store = RunStore()
    spec = FinetuneSpec(pretrained="formation-energy-per-atom", freeze=2, n_train=80, n_val=1000, n_test=1000,
                        hyperparams={"epochs": 2})  # fmt: skip
    store.create_run(spec.to_dict(), owner="ivan", status="done")
    at = page("ivan")
    at.number_input(key="ft_train").set_value(80)
    at.number_input(key="ft_epochs").set_value(2).run()
    preview = next(c.value for c in at.caption if c.value.startswith("Queues"))
    assert "answered at once" in preview
    at.checkbox(key="ft_force").check().run()
    preview = next(c.value for c in at.caption if c.value.startswith("Queues"))
    assert "answered at once" not in preview and "of training" in preview


def test_everyones_runs_start_off_for_a_student_who_types_a_name_late():
    store = RunStore()
    store.create_run(FinetuneSpec(pretrained="band-gap", freeze=1, hyperparams={"epochs": 2}).to_dict(),
                     owner="someone-else", status="queued")  # fmt: skip
    at = page(None)
    assert at.toggle(key="ft_everyone").value is False
    at.text_input(key="user_input").set_value("jules").run()
    assert not at.exception
    assert at.toggle(key="ft_everyone").value is False
    assert any("You have no runs yet" in i.value for i in at.info)  # only jules's runs: none


def test_a_strategy_is_chosen_with_its_setting_and_explained():
    """Issue 19 item 5: the strategy radio (a line on each), its one setting, and what is queued."""
    from cgcnn.training.strategies import EXPLANATIONS, STRATEGIES

    store = RunStore()
    at = page("kim")
    radio = at.radio(key="ft_strategy")
    assert radio.value == "freeze" and list(radio.options) == list(STRATEGIES)
    assert list(radio.proto.captions) == [EXPLANATIONS[s] for s in STRATEGIES]  # one line under each
    assert not [n for n in at.number_input if n.key and n.key.startswith("ft_l")]  # freeze: no extra setting

    at = radio.set_value("l2sp").run()
    assert not at.exception
    assert at.number_input(key="ft_l2sp_alpha").value == pytest.approx(0.01)
    at.number_input(key="ft_l2sp_alpha").set_value(0.05)
    at = queue(at, 90)
    assert not at.exception and not at.error, [e.value for e in at.error]
    (run,) = [r for r in store.list_runs(owner="kim") if r.n_train == 90]
    assert run.spec["strategy"] == "l2sp" and run.freeze == 2
    assert run.spec["hyperparams"]["l2sp_alpha"] == pytest.approx(0.05)

    at = at.radio(key="ft_strategy").set_value("discriminative").run()  # every layer trains: depth 0 only
    assert not at.exception
    depths = at.multiselect(key="ft_freezes_all_train")
    assert depths.options == ["0"] and depths.value == [0] and depths.disabled
    assert at.number_input(key="ft_lr_decay").value == pytest.approx(0.5)
    at = queue(at, 95)
    (run,) = [r for r in store.list_runs(owner="kim") if r.n_train == 95]
    assert (run.spec["strategy"], run.freeze) == ("discriminative", 0)
    assert "discriminative" in at.selectbox(key="ft_open").format_func(run.id)
    at = at.radio(key="ft_strategy").set_value("gradual").run()  # the depths chosen before come back
    assert at.multiselect(key="ft_freezes").value == [2]
    assert at.number_input(key="ft_unfreeze_every").value == 5
