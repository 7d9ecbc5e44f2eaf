"""Reproducibility: the math libraries are pinned before torch loads, and the same command gives the same bits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from cgcnn.numerics import PINNED_ENV, alignment_independent, cpu_capability, pin_numerics

# The tiny fine-tune of the determinism test: about 40/20/20 crystals, 2 epochs, one thread per process.
TINY_FINETUNE = [
    "finetune",
    "--pretrained",
    "formation-energy-per-atom",
    "--freeze",
    "1",
    "--train",
    "40",
    "--val",
    "20",
    "--test",
    "20",
    "--epochs",
    "2",
    "--batch-size",
    "8",
    "--threads",
    "1",
    "--json",
    "--quiet",
    "--no-store",
]


def _clean_env() -> dict[str, str]:
    """The parent's environment without the pinned variables, so each child must pin them itself."""
    return {k: v for k, v in os.environ.items() if k not in PINNED_ENV}


def test_pin_keeps_a_users_choice():
    env = {"MKL_CBWR": "COMPATIBLE"}
    assert pin_numerics(env) == {"MKL_CBWR": "COMPATIBLE", "MKL_DYNAMIC": "FALSE", "OMP_DYNAMIC": "FALSE"}
    assert pin_numerics({}) == PINNED_ENV


def test_importing_cgcnn_pins_mkl_before_torch_loads():
    code = (
        "import os, cgcnn, torch\n"
        "from cgcnn.numerics import alignment_independent\n"
        "print(os.environ['MKL_CBWR'], alignment_independent())"
    )
    out = subprocess.run([sys.executable, "-c", code], env=_clean_env(), capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["AUTO", "True"]


def test_this_process_is_alignment_independent_and_knows_its_cpu():
    assert alignment_independent()
    assert cpu_capability() not in ("", "unknown")


def _tiny_finetune_mae() -> float:
    cmd = [sys.executable, "-m", "cgcnn", *TINY_FINETUNE]
    out = subprocess.run(cmd, env=_clean_env(), capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["test_mae"]


@pytest.mark.slow
def test_same_command_same_bits_in_20_processes(isolated_home):
    """The README's promise, checked where it failed before: 20 separate processes, one test MAE to the bit."""
    first = _tiny_finetune_mae()  # builds the graph cache; the 20 others read it, in parallel pairs
    with ThreadPoolExecutor(max_workers=2) as pool:
        maes = [first, *pool.map(lambda _: _tiny_finetune_mae(), range(20))]
    assert len(set(maes)) == 1, sorted(set(maes))
