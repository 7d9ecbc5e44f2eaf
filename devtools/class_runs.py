"""A class's worth of runs written straight into a store (no training): for page tests and the rerun bench.

The mix is what a store looks like mid-lesson: most runs done (with 30 epochs of curves and test
predictions), some entries reusing another student's computation, a few failed, running and queued.
"""

from __future__ import annotations

import random

from cgcnn.runs.store import RunStore
from cgcnn.training.finetune import FinetuneSpec

MODELS = ("formation-energy-per-atom", "band-gap", "bulk-moduli", "none")


def spec_dict(k: int, epochs: int = 30, sizes: tuple[int, int, int] = (1000, 1000, 1000)) -> dict:
    """A valid fine-tune spec, different for each ``k`` (model, freeze depth, seed)."""
    model = MODELS[k % len(MODELS)]
    return FinetuneSpec(
        pretrained=model, freeze=0 if model == "none" else 1 + k % 3, n_train=sizes[0], n_val=sizes[1],
        n_test=sizes[2], seed=k // len(MODELS), hyperparams={"epochs": epochs},
    ).to_dict()  # fmt: skip


def make_class(
    store: RunStore,
    n_runs: int = 100,
    owners: int = 25,
    queued: int = 10,
    running: int = 5,
    prefix: str = "student",
    epochs: int = 30,
    predictions: bool = True,
) -> list[str]:
    """Write ``n_runs`` entries by ``owners`` students; returns their ids.

    Of these, ``queued`` are queued and ``running`` running (pass 0 for both when a job runner could claim
    them), one in ten failed, one in five an entry reusing an earlier done run, the rest done. Each epoch
    and the predictions are one write each (about 25 ms on a busy disk): a test of a few hundred runs asks
    for fewer ``epochs`` and no ``predictions``.
    """
    rng = random.Random(0)
    ids: list[str] = []
    done: list[tuple[str, dict]] = []
    for k in range(n_runs):
        owner = f"{prefix}-{k % owners:02d}"
        if k < queued:
            ids.append(store.create_run(spec_dict(1000 + k), owner=owner, status="queued"))
            continue
        if k < queued + running:
            run_id = store.create_run(spec_dict(2000 + k), owner=owner, status="running")
            for epoch in range(1, 1 + rng.randint(1, 20)):
                store.add_epoch(run_id, epoch, 1.0 / epoch, 0.8 / epoch, 1.1 / epoch, 0.9 / epoch, 1.2)
            ids.append(run_id)
            continue
        if done and k % 5 == 0:
            _, spec = done[rng.randrange(len(done))]
            ids.append(store.launch(spec, owner=owner).id)
            continue
        spec = spec_dict(k, epochs=epochs)
        run_id = store.create_run(spec, owner=owner, status="running")
        for epoch in range(1, epochs + 1):
            store.add_epoch(run_id, epoch, 1.0 / epoch, 0.8 / epoch, 1.1 / epoch, 0.9 / epoch, 1.2)
        if k % 10 == 3:
            store.finish(run_id, "failed", error="worker stopped (no heartbeat)")
        else:
            if predictions:
                store.add_predictions(run_id, [(f"mp-{i}", "test", 1.0 + i / 100, 1.05 + i / 90) for i in range(200)])
            store.finish(run_id, "done", test_mae=0.3 + rng.random() / 10, seconds=60.0)
            done.append((run_id, spec))
        ids.append(run_id)
    return ids
