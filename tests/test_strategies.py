"""Issue 19 item 5: fine-tuning strategies (freeze, discriminative, gradual, lp-ft, l2sp).

Each strategy's rule is checked on the real pretrained model (which layers train in which epoch, the learning
rate of each block, the L2-SP penalty on a hand-made case), then each trains end to end on a few dozen crystals;
the spec key of every spec that existed before strategies is pinned, and bad input is refused with exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest
import torch

from cgcnn.cli.main import main
from cgcnn.data.datasets import load_default_dataset
from cgcnn.data.graph import GraphParams, GraphSet
from cgcnn.data.graph_cache import get_graphs
from cgcnn.data.splits import make_split
from cgcnn.errors import CGCNNError
from cgcnn.nn.model import CrystalGraphConvNet, ModelConfig
from cgcnn.runs.store import RunStore, compute_spec_key
from cgcnn.training import strategies
from cgcnn.training.finetune import FinetuneSpec, run_finetune
from cgcnn.training.strategies import (
    L2SP,
    Discriminative,
    Gradual,
    LinearProbeThenFinetune,
    blocks_from_head,
    make_strategy,
)
from cgcnn.training.train import LabelledGraphs, TrainConfig, train_model
from cgcnn.training.transfer import prepare_transfer
from cgcnn.zoo import load_model

TINY = {"n_train": 40, "n_val": 20, "n_test": 20}
SOURCE = "formation-energy-per-atom"
HEAD = ["conv_to_fc", "fc_out"]  # the zoo models' dense layers after pooling (n_h = 1)


@pytest.fixture(scope="module")
def pretrained():
    return load_model(SOURCE).model


@pytest.fixture(scope="module")
def tiny_sets():
    ds = load_default_dataset()
    split = make_split(ds, "band_gap", TINY["n_train"], TINY["n_val"], TINY["n_test"])
    graphs, failures = get_graphs(ds, split.train + split.val + split.test, GraphParams())
    assert not failures

    def part(ids):
        ids = list(ids)
        return LabelledGraphs(
            ids, GraphSet([graphs[i] for i in ids], GraphParams()), ds.labels.loc[ids, "band_gap"].to_numpy()
        )

    return part(split.train), part(split.val), part(split.test)


def _trainable_layers(model: CrystalGraphConvNet) -> list[str]:
    return [n for n in model.layer_names() if any(p.requires_grad for p in model.get_submodule(n).parameters())]


def _weights(model: CrystalGraphConvNet, layer: str) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.get_submodule(layer).state_dict().items()}


def _train_recording(model, sets, strategy, epochs: int, frozen_depth: int = 0):
    """Train, recording after each epoch the layers that trained and every layer's weights and statistics."""
    seen = []

    def callback(stats):
        seen.append((_trainable_layers(model), {name: _weights(model, name) for name in model.layer_names()}, stats.lr))

    config = TrainConfig(epochs=epochs, batch_size=16)
    before = {name: _weights(model, name) for name in model.layer_names()}
    train_model(model, *sets, config=config, callback=callback, frozen_depth=frozen_depth, strategy=strategy)
    return before, seen


def _changed(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------------ the rules


def test_blocks_run_from_the_head_down_and_leave_the_frozen_floor_out(pretrained):
    model, _ = prepare_transfer(pretrained, 0, ["band_gap"], seed=0)
    assert blocks_from_head(model) == [HEAD, ["convs.3"], ["convs.2"], ["convs.1"], ["convs.0"], ["embedding"]]
    assert blocks_from_head(model, 2) == [HEAD, ["convs.3"], ["convs.2"]]


def test_every_strategy_but_freeze_keeps_every_pretrained_convolution(pretrained):
    source = pretrained.state_dict()
    for strategy in strategies.STRATEGIES:
        keep = strategies.keeps_all_convolutions(strategy)
        model, report = prepare_transfer(pretrained, 1, ["band_gap"], seed=0, keep_all_convs=keep)
        kept = torch.equal(model.state_dict()["convs.3.fc_full.weight"], source["convs.3.fc_full.weight"])
        assert kept == (strategy != "freeze"), strategy
        assert ("convs.3" in report.pretrained_layers) == keep
        assert "fc_out" in report.reinitialised_layers  # the head is always new: the target is


def test_discriminative_gives_each_block_its_learning_rate(pretrained):
    model, _ = prepare_transfer(pretrained, 0, ["band_gap"], seed=0)
    groups = Discriminative(model, lr_decay=0.5).param_groups(model, lr=0.004)
    assert [g["lr"] for g in groups] == pytest.approx([0.004, 0.002, 0.001, 0.0005, 0.00025, 0.000125])
    first_param_of = {id(next(model.get_submodule(n).parameters())): n for n in model.layer_names()}
    assert [first_param_of.get(id(g["params"][0])) for g in groups] == [
        "conv_to_fc", "convs.3", "convs.2", "convs.1", "convs.0", "embedding",
    ]  # fmt: skip
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # every weight once


def test_discriminative_trains_every_layer_and_records_the_heads_rate(pretrained, tiny_sets):
    model, _ = prepare_transfer(pretrained, 0, ["band_gap"], seed=0)
    before, seen = _train_recording(model, tiny_sets[:2], Discriminative(model, 0.5), epochs=1)
    layers, after, lr = seen[0]
    assert layers == model.layer_names() and lr == pytest.approx(TrainConfig().lr)
    assert all(_changed(before[n], after[n]) for n in model.layer_names())


def test_gradual_unfreezes_one_block_from_the_head_per_period(pretrained, tiny_sets):
    model, _ = prepare_transfer(pretrained, 0, ["band_gap"], seed=0, keep_all_convs=True)
    gradual = Gradual(model, unfreeze_every=2)
    assert [gradual.trainable_blocks(e) for e in range(1, 14)] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 6]
    before, seen = _train_recording(model, tiny_sets[:2], Gradual(model, unfreeze_every=1), epochs=2)
    assert [layers for layers, _, _ in seen] == [HEAD, ["convs.3", *HEAD]]
    states = [before] + [weights for _, weights, _ in seen]
    for epoch, (layers, _, _) in enumerate(seen, start=1):
        for name in model.layer_names():  # a waiting layer keeps its weights and its batch-norm statistics
            assert _changed(states[epoch - 1][name], states[epoch][name]) == (name in layers), (epoch, name)


def test_gradual_keeps_a_freeze_depth_as_its_floor(pretrained, tiny_sets):
    model, report = prepare_transfer(pretrained, 3, ["band_gap"], seed=0, keep_all_convs=True)
    strategy = make_strategy("gradual", model, TrainConfig(unfreeze_every=1), report.freeze)
    _, seen = _train_recording(model, tiny_sets[:2], strategy, epochs=3, frozen_depth=report.freeze)
    assert [layers for layers, _, _ in seen] == [HEAD, ["convs.3", *HEAD], ["convs.3", *HEAD]]


def test_lp_ft_trains_the_head_alone_then_everything(pretrained, tiny_sets):
    model, _ = prepare_transfer(pretrained, 0, ["band_gap"], seed=0, keep_all_convs=True)
    assert [LinearProbeThenFinetune(model, lp_epochs=2).trainable_blocks(e) for e in (1, 2, 3, 10)] == [1, 1, 6, 6]
    before, seen = _train_recording(model, tiny_sets[:2], LinearProbeThenFinetune(model, lp_epochs=1), epochs=2)
    assert [layers for layers, _, _ in seen] == [HEAD, model.layer_names()]
    assert not _changed(before["convs.0"], seen[0][1]["convs.0"])  # the head alone
    assert _changed(before["fc_out"], seen[0][1]["fc_out"])
    assert _changed(seen[0][1]["convs.0"], seen[1][1]["convs.0"]) and _changed(
        seen[0][1]["embedding"], seen[1][1]["embedding"]
    )


def test_l2sp_penalty_on_a_hand_made_case():
    torch.manual_seed(0)
    model = CrystalGraphConvNet(ModelConfig(atom_fea_len=4, h_fea_len=3, n_conv=1, n_h=1))
    l2sp = L2SP(model, l2sp_alpha=0.2, pretrained_layers=["embedding", "convs.0"])
    assert l2sp.penalty(model).item() == 0.0  # at the pretrained weights
    with torch.no_grad():
        model.embedding.weight += 0.5  # every weight of one pretrained layer moved by 0.5
        model.fc_out.weight += 3.0  # the new head is not pulled
    n = model.embedding.weight.numel()
    assert l2sp.penalty(model).item() == pytest.approx(0.2 / 2 * n * 0.25)
    penalty = l2sp.penalty(model)
    penalty.backward()  # its gradient is alpha * (w - w0), towards the start
    assert torch.allclose(model.embedding.weight.grad, torch.full_like(model.embedding.weight, 0.2 * 0.5))
    assert model.fc_out.weight.grad is None


def test_l2sp_pulls_towards_the_pretrained_weights(pretrained, tiny_sets):
    """The same training with a strong pull ends closer to the pretrained convolutions than with none."""

    def distance(alpha: float | None) -> float:
        model, report = prepare_transfer(pretrained, 0, ["band_gap"], seed=0)
        if alpha is None:
            strategy = make_strategy("freeze", model, TrainConfig())
        else:
            strategy = make_strategy("l2sp", model, TrainConfig(l2sp_alpha=alpha), 0, report.pretrained_layers)
        train_model(model, *tiny_sets[:2], config=TrainConfig(epochs=1, batch_size=16), strategy=strategy)
        source = dict(pretrained.named_parameters())
        return sum(((p - source[k]) ** 2).sum().item() for k, p in model.named_parameters() if k.startswith("convs"))

    assert distance(10.0) < 0.5 * distance(None)


# ------------------------------------------------------------------------------------------------ the spec


def test_setting_defaults_are_the_training_defaults():
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    assert {k: defaults[k] for k in strategies.SETTING_DEFAULTS} == strategies.SETTING_DEFAULTS
    assert {field for field, _, _ in strategies.SETTINGS.values()} == set(strategies.SETTING_DEFAULTS)
    assert FinetuneSpec().strategy == strategies.DEFAULT_STRATEGY == "freeze"


#: Spec keys computed on main before strategies existed (commit 548380c): a spec of today keeps its key, so a
#: sweep started before this change is resumed, not rerun.
KEYS_BEFORE_STRATEGIES = {
    "scratch": "c27e5fa258483e2f076c437c8e53abf72b609ed69d010add137448e12d502e7b",
    "fe_k1_study": "0bb0837d69aedb14b7ea59b36d438aa6983e36a56fc4412d91be7a5b91177ed0",
    "fe_k0_seed3_split2": "bfdb12efd0551b4e38e839b48c3987a4e319e6c4afbaede275c5337222d28cef",
    "bg_k2_warm_lr": "fb44b70f34e48b7854872bd1a9949428dbaf52c46e8a154fa758d2e92da8ec82",
    "cli": "e71351df98c9e7cfe16f307c93738404ea6c79b51ea61c7adaac2d29e355087d",
    "app": "06d96b44d4793e213419b7ddfcef5cf695d1569b912e2c7cf2e5e650cbce6d9c",
    "sweep": [
        "6885260697102e55fe3f3547627ef1e9c8ff0e1a4343aa7c3a23eb8e705f180b",
        "a6da6c39059f05e8934a76761b0dbfc4573ec3593a5d1812cd478bc077dc23f9",
        "336c64464e7a12fd1dd0ae0abdcb5f73964af2aa51d0a83c203bfaf36edac90f",
        "94adcd5d43254052b3ef6aa85033231ae849e1bc852a552b2178056853a58203",
        "723293e50c97512b61ec02fd572bebe3b2ea5667775120dbe82554cd0c86d7bf",
        "14488e247d8b564ccf28dc565dcb1766a98d98d3b0757784d58d568b55b03689",
    ],
}


def test_specs_of_today_keep_their_keys():
    from cgcnn.app.launch import make_specs
    from cgcnn.cli.train import _spec_from_args, add_train_parsers
    from cgcnn.experiments.sweep import SweepGrid
    from cgcnn.training.protocol import RunProtocol

    def key(spec: FinetuneSpec) -> str:
        return compute_spec_key(spec.to_dict())

    parser = argparse.ArgumentParser()
    add_train_parsers(parser.add_subparsers())
    cli = "finetune --pretrained formation-energy-per-atom --freeze 1 --train 50 --val 20 --test 20 --epochs 1"
    grid = SweepGrid([SOURCE], [1, 2], [0], n_train=50, n_val=20, n_test=20, hyperparams={"epochs": 3},
                     split_seeds=[0, 1])  # fmt: skip
    keys = {
        "scratch": key(FinetuneSpec()),
        "fe_k1_study": key(FinetuneSpec(SOURCE, 1, hyperparams={"epochs": 30})),
        "fe_k0_seed3_split2": key(FinetuneSpec(SOURCE, 0, seed=3, split_seed=2,
                                               hyperparams={"epochs": 100, "patience": 15, "threads": 1})),
        "bg_k2_warm_lr": key(FinetuneSpec("band-gap", 2, n_train=200, n_val=100, n_test=100, warm_start=True,
                                          hyperparams={"epochs": 5, "lr": 0.001, "batch_size": 32})),
        "cli": key(_spec_from_args(parser.parse_args(cli.split()))),
        "app": key(make_specs([SOURCE], [2], RunProtocol("band_gap", 50, 20, 20, 1), [1])[0]),
        "sweep": [key(s) for s in grid.specs()],
    }  # fmt: skip
    assert keys == KEYS_BEFORE_STRATEGIES
    # the defaults written out change nothing; a strategy or a setting off its default is another computation
    spec = FinetuneSpec(SOURCE, 1, hyperparams={"epochs": 30})
    explicit = dataclasses.replace(spec, strategy="freeze", hyperparams={"epochs": 30, **strategies.SETTING_DEFAULTS})
    assert key(explicit) == KEYS_BEFORE_STRATEGIES["fe_k1_study"]
    l2sp = dataclasses.replace(spec, strategy="l2sp")
    stronger = dataclasses.replace(l2sp, hyperparams={"epochs": 30, "l2sp_alpha": 0.1})
    assert len({key(spec), key(l2sp), key(stronger)}) == 3


@pytest.mark.parametrize(
    ("strategy", "fields", "message"),
    [
        ("bogus", {}, "--strategy takes one of freeze, discriminative, gradual, lp-ft, l2sp"),
        ("discriminative", {"freeze": 1}, "needs --freeze 0"),
        ("discriminative", {"hyperparams": {"lr_decay": 0.0}}, r"--lr-decay must be in \(0, 1\]"),
        ("discriminative", {"hyperparams": {"lr_decay": 1.5}}, r"--lr-decay must be in \(0, 1\]"),
        ("gradual", {"pretrained": "none", "freeze": 0}, "--strategy gradual fine-tunes pretrained weights"),
        ("lp-ft", {"pretrained": "none", "freeze": 0}, "--pretrained none"),
        ("l2sp", {"pretrained": "none", "freeze": 0}, "--pretrained none"),
        ("gradual", {"hyperparams": {"unfreeze_every": 0}}, "--unfreeze-every must be a whole number"),
        ("lp-ft", {"hyperparams": {"lp_epochs": 2.5}}, "--lp-epochs must be a whole number"),
        ("l2sp", {"hyperparams": {"l2sp_alpha": -1.0}}, "--l2sp-alpha must be a number above 0"),
        ("freeze", {"hyperparams": {"l2sp_alpha": 0.5}}, "--l2sp-alpha is a setting of --strategy l2sp"),
    ],
)
def test_validate_refuses_bad_strategies(strategy, fields, message):
    spec = FinetuneSpec(**{"pretrained": SOURCE, "freeze": 0, **TINY, **fields, "strategy": strategy})
    with pytest.raises(CGCNNError, match=message):
        spec.validate()


def test_validate_accepts_every_strategy_and_a_setting_at_its_default():
    for strategy in strategies.STRATEGIES:
        FinetuneSpec(SOURCE, 0, **TINY, strategy=strategy).validate()
    FinetuneSpec(SOURCE, 2, **TINY, strategy="l2sp", hyperparams={"lr_decay": 0.5}).validate()
    FinetuneSpec("none", 0, **TINY, strategy="discriminative").validate()  # only the three are refused


def test_a_sweep_tunes_its_models_with_the_strategy_and_its_baseline_as_always():
    from cgcnn.experiments.sweep import SweepGrid

    grid = SweepGrid([SOURCE], [0], [0, 1], strategy="lp-ft", hyperparams={"epochs": 3, "lp_epochs": 2})
    scratch = [s for s in grid.specs() if s.is_scratch]
    tuned = [s for s in grid.specs() if not s.is_scratch]
    assert len(scratch) == len(tuned) == 2
    assert all(s.strategy == "freeze" and "lp_epochs" not in s.hyperparams for s in scratch)
    assert all(s.strategy == "lp-ft" and s.hyperparams["lp_epochs"] == 2 for s in tuned)
    plain = SweepGrid([SOURCE], [0], [0, 1], hyperparams={"epochs": 3})
    assert [compute_spec_key(s.to_dict()) for s in scratch] == [
        compute_spec_key(s.to_dict()) for s in plain.specs() if s.is_scratch
    ]  # one baseline serves grids of every strategy


# ------------------------------------------------------------------------------------------------ end to end


@pytest.mark.parametrize("strategy", strategies.STRATEGIES)
def test_each_strategy_fine_tunes_end_to_end(isolated_home, strategy):
    store = RunStore()
    freeze = 1 if strategy == "freeze" else 0
    hyper = {"epochs": 2, "unfreeze_every": 1} if strategy == "gradual" else {"epochs": 1}  # gradual: one unfreezing
    spec = FinetuneSpec(SOURCE, freeze, **TINY, strategy=strategy, hyperparams={**hyper, "batch_size": 16})
    outcome = run_finetune(spec, store=store)
    record = store.get(outcome.run_id)
    assert record.status == "done" and len(store.epochs(outcome.run_id)) == hyper["epochs"]
    assert record.spec["strategy"] == strategy
    assert FinetuneSpec.from_dict(record.spec) == spec
    assert torch.isfinite(torch.tensor(record.test_mae))
    assert load_model(f"run:{outcome.run_id}", store=store).targets == ["band_gap"]
    if strategy != "freeze":
        assert outcome.report.reinitialised_layers == HEAD


# ------------------------------------------------------------------------------------------------ the CLI

QUEUE = ["finetune", "--pretrained", SOURCE, "--train", "40", "--val", "20", "--test", "20", "--epochs", "1",
         "--queue", "--owner", "ann"]  # fmt: skip
SWEEP = ["sweep", "--pretrained", SOURCE, "--seeds", "0", "--train", "40", "--val", "20", "--test", "20",
         "--epochs", "1", "--workers", "1"]  # fmt: skip


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CGCNN_HOME", str(tmp_path))
    monkeypatch.setenv("CGCNN_WORKERS", "0")
    return tmp_path


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--strategy", "warm"], ["--strategy", "freeze, discriminative, gradual, lp-ft, l2sp"]),
        (["--strategy", "discriminative", "--lr-decay", "1.5"], ["--lr-decay", "(0, 1]"]),
        (["--strategy", "discriminative", "--lr-decay", "0"], ["--lr-decay", "(0, 1]"]),
        (["--strategy", "discriminative", "--freeze", "2"], ["--strategy discriminative", "--freeze 0"]),
        (["--strategy", "l2sp", "--pretrained", "none"], ["--strategy l2sp", "--pretrained none"]),
        (["--strategy", "lp-ft", "--pretrained", "none"], ["--strategy lp-ft", "--pretrained none"]),
        (["--strategy", "gradual", "--pretrained", "none"], ["--strategy gradual", "--pretrained none"]),
        (["--lp-epochs", "3"], ["--lp-epochs", "--strategy lp-ft"]),
    ],
)
@pytest.mark.parametrize("command", ["finetune", "sweep"])
def test_cli_refuses_bad_strategies_with_exit_code_2(home, capsys, command, args, words):
    argv = [*(QUEUE if command == "finetune" else SWEEP), *args]
    if command == "sweep" and "--freeze" not in args:
        argv += ["--freeze", "0"]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:"), err
    assert all(w in err for w in words), err
    assert RunStore().list_runs() == []  # nothing queued


def test_cli_queues_a_strategy_with_its_setting(home, capsys):
    code = main([*QUEUE, "--strategy", "l2sp", "--l2sp-alpha", "0.05", "--json"])
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    assert code == 0
    spec = RunStore().get(run_id).spec
    assert spec["strategy"] == "l2sp" and spec["hyperparams"]["l2sp_alpha"] == 0.05


def test_seed_ensembles_never_mix_strategies(home):
    from cgcnn.app.ensembles import seed_ensembles

    store = RunStore()
    for strategy in ("freeze", "l2sp"):
        for seed in (0, 1):
            spec = FinetuneSpec(SOURCE, 0, **TINY, seed=seed, strategy=strategy, hyperparams={"epochs": 1})
            run_id = store.create_run(spec.to_dict(), status="running")
            store.finish(run_id, "done", test_mae=0.5, checkpoint_path=str(home / f"{run_id}.pt"))
    ensembles = seed_ensembles(store.list_runs())
    assert len(ensembles) == 2 and all(len(e.run_ids) == 2 for e in ensembles)
    assert sorted(" l2sp " in e.label for e in ensembles) == [False, True]


def test_table2_counts_only_the_studys_freeze_strategy(home):
    import pandas as pd

    from cgcnn.app.tables import table2_cells

    store = RunStore()
    for seed, strategy in enumerate(["freeze", "l2sp", "freeze"]):
        spec = FinetuneSpec("bulk-moduli", 1, seed=seed, strategy=strategy, hyperparams={"epochs": 30})
        run_id = store.create_run(spec.to_dict(), status="running")
        store.finish(run_id, "done", test_mae=0.5 + seed)
    assert table2_cells(store.list_runs())[["mean", "n"]].values.tolist() == [[1.5, 2]]
    cell = {"pretrained": "bulk-moduli", "freeze": 1, "target": "band_gap", "n_train": 1000, "n_val": 1000,
            "n_test": 1000, "split_seed": 0}  # fmt: skip
    frame = pd.DataFrame(
        [{**cell, "strategy": "freeze", "test_mae": 0.5}, {**cell, "strategy": "l2sp", "test_mae": 0.9}]
    )
    assert table2_cells(frame)[["mean", "n"]].values.tolist() == [[0.5, 1]]
