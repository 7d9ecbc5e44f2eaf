from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from cgcnn.data.datasets import load_default_dataset
from cgcnn.data.graph import GraphParams, GraphSet
from cgcnn.data.graph_cache import get_graphs
from cgcnn.data.splits import make_split
from cgcnn.errors import CGCNNError
from cgcnn.runs.store import RunStore
from cgcnn.training.finetune import FinetuneSpec, run_finetune
from cgcnn.training.train import LabelledGraphs, TrainConfig, masked_mse, train_model
from cgcnn.training.transfer import prepare_transfer
from cgcnn.zoo import load_model

SMALL = {"n_train": 48, "n_val": 24, "n_test": 24}


@pytest.fixture(scope="module")
def small_sets():
    ds = load_default_dataset()
    split = make_split(ds, "band_gap", SMALL["n_train"], SMALL["n_val"], SMALL["n_test"])
    graphs, failures = get_graphs(ds, split.train + split.val + split.test, GraphParams())
    assert not failures

    def part(ids):
        ids = list(ids)
        return LabelledGraphs(
            ids, GraphSet([graphs[i] for i in ids], GraphParams()), ds.labels.loc[ids, "band_gap"].to_numpy()
        )

    return part(split.train), part(split.val), part(split.test)


@pytest.fixture(scope="module")
def pretrained():
    return load_model("formation-energy-per-atom").model


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_freezing_freezes_weights_and_batch_norm_statistics(small_sets, pretrained):
    model, report = prepare_transfer(pretrained, 2, ["band_gap"], seed=0)
    frozen_before = {
        name: _snapshot(m)
        for name, m in (("embedding", model.embedding), ("c0", model.convs[0]), ("c1", model.convs[1]))
    }
    deep_before = _snapshot(model.convs[3])
    train_model(model, *small_sets[:2], config=TrainConfig(epochs=2, batch_size=16), frozen_depth=report.freeze)
    for name, module in (("embedding", model.embedding), ("c0", model.convs[0]), ("c1", model.convs[1])):
        for key, value in _snapshot(module).items():
            assert torch.equal(value, frozen_before[name][key]), f"{name}.{key} changed"
    changed = [k for k, v in _snapshot(model.convs[3]).items() if not torch.equal(v, deep_before[k])]
    assert "fc_full.weight" in changed and "bn1.running_mean" in changed
    assert report.frozen_layers == ["embedding", "convs.0", "convs.1"]
    assert report.frozen_params + report.trainable_params == sum(p.numel() for p in model.parameters())


def test_deeper_layers_are_reinitialised_unless_warm_start(pretrained):
    src = pretrained.state_dict()
    model, report = prepare_transfer(pretrained, 1, ["band_gap"], seed=0)
    state = model.state_dict()
    assert torch.equal(state["convs.0.fc_full.weight"], src["convs.0.fc_full.weight"])
    assert torch.equal(state["embedding.weight"], src["embedding.weight"])
    for k in ("convs.1.fc_full.weight", "convs.3.fc_full.weight", "conv_to_fc.weight"):
        assert not torch.equal(state[k], src[k]), k
    assert "convs.3" in report.reinitialised_layers and "fc_out" in report.reinitialised_layers

    warm, _ = prepare_transfer(pretrained, 1, ["band_gap"], warm_start=True, seed=0)
    assert torch.equal(warm.state_dict()["convs.3.fc_full.weight"], src["convs.3.fc_full.weight"])
    assert torch.equal(warm.state_dict()["conv_to_fc.weight"], src["conv_to_fc.weight"])

    full, rep0 = prepare_transfer(pretrained, 0, ["band_gap"], seed=0)
    assert torch.equal(full.state_dict()["convs.3.fc_full.weight"], src["convs.3.fc_full.weight"])
    assert rep0.frozen_params == 0


def test_scratch_refuses_freezing_and_depth_is_checked(pretrained):
    with pytest.raises(CGCNNError, match="from scratch"):
        prepare_transfer(None, 1, ["band_gap"])
    with pytest.raises(CGCNNError, match="between 0 and 4"):
        prepare_transfer(pretrained, 5, ["band_gap"])


def test_cached_frozen_features_give_the_full_forward(small_sets, pretrained):
    model, _ = prepare_transfer(pretrained, 2, ["band_gap"], seed=0)
    model.eval()
    data = small_sets[0]
    idx = np.arange(10)
    full = model(data.graphs.batch(idx))
    feats = model.atom_features(data.graphs.batch(np.arange(len(data.ids))), up_to=2)
    batch = data.graphs.batch(idx, feats)
    torch.testing.assert_close(model.forward_from(batch.node_features, batch, 2), full)


def test_training_loss_falls_and_seeds_matter(small_sets, pretrained):
    def run(seed):
        model, report = prepare_transfer(pretrained, 1, ["band_gap"], seed=seed)
        config = TrainConfig(epochs=4, batch_size=16, seed=seed)
        return train_model(model, *small_sets, config=config, frozen_depth=report.freeze)

    a, b, c = run(0), run(0), run(1)
    # within one process, memory layout can move the last bits of SIMD reductions
    np.testing.assert_allclose([h.train_loss for h in a.history], [h.train_loss for h in b.history], rtol=1e-5)
    assert a.test.mae != pytest.approx(c.test.mae, rel=1e-4)
    assert a.history[-1].train_loss < a.history[0].train_loss


def test_two_threads_agree_across_processes_to_rounding(isolated_home):
    """At 2 threads two processes agree to within float rounding grown by 3 epochs, not always to the bit.

    Bit-identical results are promised at one thread only (20 processes: tests/test_numerics.py). At 2 threads CI
    twice saw this command give 2.137427 in one process and 2.135266 in the other (twice in about 10 suite runs;
    never in 16 runs here, with or without load), so the bound below is what the docs promise for more threads.
    """
    cmd = [
        sys.executable,
        "-m",
        "cgcnn",
        "finetune",
        "--pretrained",
        "formation-energy-per-atom",
        "--freeze",
        "1",
        "--train",
        "48",
        "--val",
        "24",
        "--test",
        "24",
        "--epochs",
        "3",
        "--batch-size",
        "16",
        "--threads",
        "2",
        "--json",
        "--quiet",
        "--no-store",
    ]
    outs = [subprocess.run(cmd, capture_output=True, text=True, check=True).stdout for _ in range(2)]
    maes = [json.loads(o.strip().splitlines()[-1])["test_mae"] for o in outs]
    assert maes[0] == pytest.approx(maes[1], rel=1e-2)


def test_callback_can_cancel_and_keeps_finished_epochs(small_sets):
    model, _ = prepare_transfer(None, 0, ["band_gap"], seed=0)
    seen = []
    result = train_model(
        model,
        *small_sets,
        config=TrainConfig(epochs=10, batch_size=16),
        callback=lambda s: seen.append(s) or s.epoch == 2,
    )
    assert result.cancelled and len(result.history) == 2 and len(seen) == 2
    assert result.test is not None  # the best finished epoch is still tested


def test_masked_mse_ignores_missing_labels():
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    target = torch.tensor([[1.0, float("nan")], [2.0, 4.0]])
    assert masked_mse(pred, target).item() == pytest.approx(1.0 / 3.0)


def test_finetune_records_the_run_and_scratch_shares_the_split(isolated_home):
    store = RunStore()
    hyper = {"epochs": 2, "batch_size": 16}
    tuned = run_finetune(FinetuneSpec("formation-energy-per-atom", 2, hyperparams=hyper, **SMALL), store=store)
    scratch = run_finetune(FinetuneSpec("none", 0, hyperparams=hyper, **SMALL), store=store)
    assert tuned.split.content_hash == scratch.split.content_hash
    assert tuned.test_ids == scratch.test_ids
    record = store.get(tuned.run_id)
    assert record.status == "done" and record.test_mae == pytest.approx(tuned.result.test.mae)
    assert record.split_hash == tuned.split.content_hash and record.freeze == 2
    assert record.cpu_capability == torch.backends.cpu.get_cpu_capability()
    assert len(store.epochs(tuned.run_id)) == 2
    preds = store.predictions(tuned.run_id, split="test")
    assert len(preds) == SMALL["n_test"]
    assert len(store.predictions(tuned.run_id, split="val")) == SMALL["n_val"]  # kept for its calibration (issue 21)
    # a finished run is a model
    p = load_model(f"run:{tuned.run_id}", store=store)
    assert p.targets == ["band_gap"]


def test_cancel_through_the_store_keeps_epochs(isolated_home):
    store = RunStore()
    spec = FinetuneSpec("none", 0, hyperparams={"epochs": 20, "batch_size": 16}, **SMALL)
    calls = []

    def stop_after_two():
        calls.append(1)
        return len(calls) >= 2

    outcome = run_finetune(spec, store=store, should_stop=stop_after_two)
    record = store.get(outcome.run_id)
    assert record.status == "cancelled" and len(store.epochs(outcome.run_id)) == 2


def test_invalid_choices_fail_with_a_message_and_a_failed_run(isolated_home):
    store = RunStore()
    with pytest.raises(CGCNNError, match="unknown target"):
        run_finetune(FinetuneSpec("none", 0, target="no_such_label", **SMALL), store=store)
    with pytest.raises(CGCNNError, match="from scratch"):
        run_finetune(FinetuneSpec("none", 2, **SMALL), store=store)
    failed = store.list_runs(status="failed")
    assert len(failed) >= 2 and all(r.error for r in failed)


def test_run_records_the_pretrained_layer_kind(isolated_home):
    store = RunStore()
    spec = FinetuneSpec("own-attention", 2, hyperparams={"epochs": 1, "batch_size": 16}, **SMALL)
    outcome = run_finetune(spec, store=store)
    assert store.get(outcome.run_id).model_kind == "attention"
    assert outcome.report.frozen_layers == ["embedding", "convs.0", "convs.1"]


def test_layer_names_own_the_freeze_and_frozen_layers_stay_in_eval_mode(pretrained):
    model, report = prepare_transfer(pretrained, 2, ["band_gap"], seed=0)
    assert model.layer_names() == ["embedding", "convs.0", "convs.1", "convs.2", "convs.3", "conv_to_fc", "fc_out"]
    assert report.frozen_layers == model.layer_names()[:3]
    assert report.reinitialised_layers == model.layer_names()[3:]
    model.train()
    assert [m.training for m in model.convs] == [False, False, True, True]
    assert not hasattr(model, "frozen_depth")  # the depth is the trainer's argument, not model state


def test_train_model_refuses_a_frozen_depth_that_is_not_frozen(small_sets, pretrained):
    model, _ = prepare_transfer(pretrained, 1, ["band_gap"], seed=0)
    with pytest.raises(ValueError, match="not frozen"):
        train_model(model, *small_sets[:2], config=TrainConfig(epochs=1), frozen_depth=2)
