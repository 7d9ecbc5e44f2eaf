#!/usr/bin/env bash
# The recipe of this project's own zoo models (pretrained/*.pt + *.json), exactly as they were trained.
# Default dataset (assets/mp_default.npz), crystals minus the canonical band-gap test block of split seed 0,
# 64/4/32 architecture, Adam lr 0.003, batch 64, 30 epochs, one torch thread (the cards record the machine).
# Each command is resumable: run the script again after an interruption and it continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
COMMON=(--epochs 30 --seed 0 --split-seed 0 --threads 1)

# Multi-property pretraining (the study's "combined" model; no total energy in the default dataset).
"$PY" -m cgcnn pretrain --name own-combined \
  --targets formation_energy_per_atom,log10_K_VRH,log10_G_VRH,e_above_hull,poisson_ratio "${COMMON[@]}"

# The study's Table 3 control: formation energy alone, on exactly the crystals (and roles) of own-combined.
"$PY" -m cgcnn pretrain --name own-formation-energy-matched \
  --targets formation_energy_per_atom --train-ids matched:own-combined "${COMMON[@]}"
