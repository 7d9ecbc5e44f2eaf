"""Benchmarks: speed as ratios against a baseline measured in the same run (never asserted in the unit tests).

Run one from the repository root as a module, ``python -m bench.finetune``, or as a script,
``python bench/finetune.py`` (a script puts the repository root on ``sys.path`` itself, so both import ``bench``
and ``devtools`` the same way). See docs/benchmarks.md for the measured numbers.
"""
