#!/usr/bin/env bash
# Issue 12 budget check (README, "The study's question"): scratch, formation-energy k=1 and combined k=1 on the
# study's band-gap protocol (split 0, 1000/1000/1000), seeds 0-4, with 100 epochs and early stopping after 15
# epochs without improvement, at the study's constant learning rate; compare with the 30-epoch runs of the same
# seeds in docs/results/table2 and table3. Run in its own store (e.g. CGCNN_HOME=/tmp/budget), 1 worker.
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -m cgcnn sweep --pretrained formation-energy-per-atom,own-combined --freeze 1 --seeds 0-4 --split-seed 0 \
  --epochs 100 --patience 15 --workers 1 --name budget-e100-p15 --out docs/results/budget
