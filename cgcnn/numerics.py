"""Numerical reproducibility: pin the math libraries' code paths before torch loads, and report what ran.

PyTorch's CPU build calls Intel oneMKL for dense products. Without MKL's *conditional numerical
reproducibility* (CNR) mode, MKL picks its summation order partly from the memory address of the data: a
matrix-vector product (``Linear(h, 1)``, the output layer, is one) gives a different last bit when the same
numbers start 4, 8 or 12 bytes past a 16-byte boundary (``tests/test_numerics.py`` shows it on this build).
MKL may also change its thread count at run time (``MKL_DYNAMIC``), and GNU OpenMP does so under load when
``OMP_DYNAMIC`` is true. Each of these makes the same command differ between processes once training has
amplified the last bit.

:func:`pin_numerics` sets, unless the user already set them:

- ``MKL_CBWR=AUTO``: CNR mode on the best code path of this CPU (alignment no longer matters);
- ``MKL_DYNAMIC=FALSE`` and ``OMP_DYNAMIC=FALSE``: the thread count asked for is the thread count used.

MKL reads ``MKL_CBWR`` once, at its first call, so :mod:`cgcnn` calls :func:`pin_numerics` when the package
is imported, before any module imports torch (the CLI, the job workers and the app all import ``cgcnn``
first). A program that ran a torch matrix product before importing ``cgcnn`` keeps MKL's default mode;
:func:`alignment_independent` tells.

What this guarantees: the same command, on the same machine with the same torch build and the same thread
count, gives bit-identical numbers in every process. What it does not: another CPU (or another ATen kernel
level, ``ATEN_CPU_CAPABILITY``) takes other vectorised code paths and differs in the last bits, which thirty
epochs of training grow to about 1e-4 in a test MAE. Each run records :func:`cpu_capability` so such
differences can be told apart.
"""

from __future__ import annotations

import os

#: The variables :func:`pin_numerics` sets when they are unset, and their values.
PINNED_ENV = {"MKL_CBWR": "AUTO", "MKL_DYNAMIC": "FALSE", "OMP_DYNAMIC": "FALSE"}


def pin_numerics(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Set the reproducibility variables that are not set yet; returns the values now in force.

    A user's own value (for example ``MKL_CBWR=COMPATIBLE`` for results shared across CPU vendors, at some
    cost in speed) is kept.
    """
    env = os.environ if environ is None else environ
    for name, value in PINNED_ENV.items():
        env.setdefault(name, value)
    return {name: env[name] for name in PINNED_ENV}


def cpu_capability() -> str:
    """The vector instruction level of ATen's CPU kernels (``AVX2``, ``AVX512``, ``DEFAULT``...).

    Numbers are reproducible only between runs with the same capability (and torch build).
    """
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):  # very old torch
        return "unknown"


def alignment_independent() -> bool:
    """True when a matrix-vector product gives the same bits wherever its data starts in memory.

    Runs the product that exposed the problem (MKL ``sgemv``) on one matrix placed at four offsets; MKL in
    CNR mode gives one answer, MKL without it usually two or more.
    """
    import torch

    gen = torch.Generator().manual_seed(0)
    rows, cols = 257, 128
    matrix = torch.randn(rows, cols, generator=gen)
    vector = torch.randn(cols, generator=gen)
    results = []
    for offset in range(4):
        buffer = torch.empty(rows * cols + 4)
        view = buffer[offset : offset + rows * cols].view(rows, cols)
        view.copy_(matrix)
        results.append(view @ vector)
    return all(torch.equal(results[0], r) for r in results[1:])
