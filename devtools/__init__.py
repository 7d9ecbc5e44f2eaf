"""Development helpers shared by the tests and the benchmarks: a real app server, a class's worth of runs.

Not part of the ``cgcnn`` package (nothing here ships); importable from the repository root (pytest's
``pythonpath``, ``python -m bench.NAME``).
"""
