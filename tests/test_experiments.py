from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cgcnn.cli.sweep import parse_int_list
from cgcnn.errors import CGCNNError
from cgcnn.experiments.sweep import LocalExecutor, SweepGrid, run_sweep, save_summary_figure, summarize
from cgcnn.runs.store import RunStore
from cgcnn.training.finetune import FinetuneSpec, execute_run
from cgcnn.training.transfer import SCRATCH

TINY = {"n_train": 40, "n_val": 20, "n_test": 20, "hyperparams": {"epochs": 1, "batch_size": 16}}


def test_grid_expands_to_baseline_and_cells_per_seed():
    grid = SweepGrid(["bulk-moduli", "shear-moduli"], [1, 2], [0, 1], **TINY)
    specs = grid.specs()
    assert len(specs) == 2 * (1 + 2 * 2)
    assert [(s.pretrained, s.freeze, s.seed) for s in specs[:5]] == [
        ("none", 0, 0),
        ("bulk-moduli", 1, 0),
        ("bulk-moduli", 2, 0),
        ("shear-moduli", 1, 0),
        ("shear-moduli", 2, 0),
    ]
    assert all(s.hyperparams["threads"] == 1 for s in specs)  # one thread: results independent of parallelism
    assert len({s.split_seed for s in specs}) == 1


def test_summary_statistics_and_paired_comparison():
    base = [0.80, 0.90, 0.85, 0.95]
    cell = [0.70, 0.88, 0.80, 0.90]
    runs = pd.DataFrame(
        [{"pretrained": SCRATCH, "freeze": 0, "seed": s, "test_mae": v} for s, v in enumerate(base)]
        + [{"pretrained": "bulk-moduli", "freeze": 1, "seed": s, "test_mae": v} for s, v in enumerate(cell)]
        + [{"pretrained": "bulk-moduli", "freeze": 2, "seed": 0, "test_mae": 1.0}]
    )
    summary = summarize(runs).set_index(["pretrained", "freeze"])
    row = summary.loc[("bulk-moduli", 1)]
    assert row.n == 4 and row.mean_mae == pytest.approx(np.mean(cell))
    assert row.std_mae == pytest.approx(np.std(cell, ddof=1))
    diff = np.array(cell) - np.array(base)
    assert row.mean_diff == pytest.approx(diff.mean()) and row.wins == 4
    assert row.p_value == pytest.approx(stats.ttest_rel(cell, base).pvalue)
    assert row.study_mae == pytest.approx(0.776)
    single = summary.loc[("bulk-moduli", 2)]
    assert single.n_pairs == 1 and np.isnan(single.p_value)  # one pair: no test
    assert summary.index[0] == (SCRATCH, 0)


class InProcessExecutor:
    """Runs specs one after the other in this process (what a cluster executor plugs in instead)."""

    def __init__(self, store):
        self.store, self.received = store, []

    def run(self, specs, sweep_id, on_finished):
        self.received.append(list(specs))
        for spec in specs:
            run_id = self.store.create_run(spec.to_dict(), sweep_id=sweep_id)
            execute_run(run_id, self.store)
            on_finished(self.store.get(run_id))


def test_sweep_writes_partial_results_and_resumes_without_rerunning(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    grid = SweepGrid(["bulk-moduli"], [1], [0, 1], **TINY)
    executor = InProcessExecutor(store)
    first = run_sweep(grid, store, executor, tmp_path / "out")
    assert len(first.runs) == 4 and (tmp_path / "out" / "runs.csv").is_file()
    assert len(pd.read_csv(tmp_path / "out" / "summary.csv")) == 2
    again = run_sweep(grid, store, executor, tmp_path / "out")
    assert executor.received[-1] == []  # every cell was already done
    assert sorted(again.runs.run_id) == sorted(first.runs.run_id)
    bigger = SweepGrid(["bulk-moduli"], [1, 2], [0, 1], **TINY)
    run_sweep(bigger, store, executor)
    assert [(s.freeze, s.seed) for s in executor.received[-1]] == [(2, 0), (2, 1)]  # only the new cells
    save_summary_figure(again.summary, tmp_path / "out" / "summary.png")
    assert (tmp_path / "out" / "summary.png").stat().st_size > 1000


def test_local_executor_runs_cells_in_worker_processes(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    specs = [
        FinetuneSpec("none", 0, seed=s, **{**TINY, "hyperparams": {**TINY["hyperparams"], "threads": 1}})
        for s in (0, 1)
    ]
    finished = []
    LocalExecutor(store, workers=2, poll_s=0.2).run(specs, "t", finished.append)
    assert sorted(r.status for r in finished) == ["done", "done"]
    assert all(r.sweep_id == "t" and r.torch_threads == 1 for r in finished)


def test_int_lists():
    assert parse_int_list("0-2,5") == [0, 1, 2, 5]
    with pytest.raises(CGCNNError):
        parse_int_list("one")
