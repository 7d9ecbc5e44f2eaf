#!/usr/bin/env bash
# Issue 12 budget check: scratch, formation-energy k=1, combined k=1 on seeds 0,1 (split 0, 1000/1000/1000),
# 100 epochs with early stopping (patience 15), constant learning rate as in the study.
set -u
cd /work/sweeps/budget_src  # snapshot of branch shift (git archive), so edits in the worktree cannot reach the workers
export CGCNN_HOME=/work/sweeps/budget
nice -n 5 /work/main/.venv/bin/python -m cgcnn sweep --pretrained formation-energy-per-atom,own-combined \
   --freeze 1 --seeds 0,1 --split-seed 0 --epochs 100 --patience 15 --workers 1 \
   --name budget-e100-p15 --out /work/sweeps/budget/out
echo ALL DONE
