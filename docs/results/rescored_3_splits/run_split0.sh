#!/usr/bin/env bash
# Issue 12: split 0 of the multi-split cells again, this time keeping per-crystal test predictions (the shipped
# Table 2/3 runs kept none), so twins and clamping can be re-scored on all three splits.
set -u
cd /work/sweeps/s0_src
export CGCNN_HOME=/work/sweeps/home
nice -n 10 /work/main/.venv/bin/python -m cgcnn sweep --pretrained formation-energy-per-atom,own-combined,own-formation-energy-matched \
   --freeze 1 --seeds 0-4 --split-seed 0 --workers 2 --name multisplit-k1-s0 --out /work/sweeps/out/k1-split0
nice -n 10 /work/main/.venv/bin/python -m cgcnn sweep --pretrained formation-energy-per-atom --no-baseline \
   --freeze 2 --seeds 0-4 --split-seed 0 --workers 2 --name multisplit-k2-s0 --out /work/sweeps/out/k2-split0
echo ALL DONE
