#!/usr/bin/env bash
# Issue 12: the other Table 2 cells on split 0, with per-crystal predictions kept, for mae_clamped.
set -u
cd /work/sweeps/t2_src
export CGCNN_HOME=/work/sweeps/home
PY=/work/main/.venv/bin/python
nice -n 19 $PY -m cgcnn sweep --pretrained formation-energy-per-atom,own-combined --freeze 3 --no-baseline \
   --seeds 0-4 --split-seed 0 --workers 2 --name t2-k3-s0 --out /work/sweeps/out/t2-k3-split0
nice -n 19 $PY -m cgcnn sweep --pretrained own-combined --freeze 2 --no-baseline \
   --seeds 0-4 --split-seed 0 --workers 2 --name t2-comb2-s0 --out /work/sweeps/out/t2-comb2-split0
nice -n 19 $PY -m cgcnn sweep --pretrained bulk-moduli,shear-moduli --freeze 1,2,3 --no-baseline \
   --seeds 0-4 --split-seed 0 --workers 2 --name t2-moduli-s0 --out /work/sweeps/out/t2-moduli-split0
echo ALL DONE
