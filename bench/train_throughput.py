"""Crystals per second of one training epoch, this project vs the reference (cgcnn2), frozen 0 and 2.

Same 1,000 band-gap crystals, same graphs, same architecture (64/4/32), same optimiser (Adam, lr 0.003) and
batch size, same thread count; measured in one run. Usage: python bench/train_throughput.py [--batch 256]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

if not __package__:  # run as `python bench/NAME.py`: import from the repository root, as `python -m bench.NAME` does
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from bench.common import THREADS, protocol_sets, reference_items, timed
from bench.reference_train import reference_epoch, reference_model
from cgcnn.training.train import TrainConfig, train_model
from cgcnn.training.transfer import prepare_transfer
from cgcnn.zoo import load_model


def ours_epoch_seconds(train, val, freeze: int, batch: int, epochs: int) -> float:
    pre = load_model("formation-energy-per-atom").model if freeze else None
    model, report = prepare_transfer(pre, freeze, ["band_gap"], seed=0)
    config = TrainConfig(epochs=epochs + 1, batch_size=batch, seed=0)
    result = train_model(model, train, val, None, config, frozen_depth=report.freeze)
    return statistics.median(h.train_seconds for h in result.history[1:])


def reference_epoch_seconds(items, freeze: int, batch: int, epochs: int) -> float:
    model = reference_model("formation-energy-per-atom" if freeze else None, freeze)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.003)
    targets = np.array([float(t) for _, t, _ in items])
    mean, std = float(targets.mean()), float(targets.std())
    rng = np.random.default_rng(0)
    times = [timed(lambda: reference_epoch(model, items, batch, opt, rng, mean, std)) for _ in range(epochs + 1)]
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    train, val, _ = protocol_sets()
    items = reference_items(train)
    n = len(train.ids)
    print(f"{n} training crystals, batch {args.batch}, {THREADS} threads, median of {args.epochs} epochs")
    print(
        f"{'freeze':>6}  {'reference s/epoch':>17}  {'ours s/epoch':>12}  {'ref crystals/s':>14}  "
        f"{'ours crystals/s':>15}  ratio"
    )
    for freeze in (0, 2):
        ref = reference_epoch_seconds(items, freeze, args.batch, args.epochs)
        ours = ours_epoch_seconds(train, val, freeze, args.batch, args.epochs)
        print(f"{freeze:>6}  {ref:>17.3f}  {ours:>12.3f}  {n / ref:>14.0f}  {n / ours:>15.0f}  {ref / ours:.2f}x")


if __name__ == "__main__":
    main()
