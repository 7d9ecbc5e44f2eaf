"""Sweeps: the study's Table 2 and Table 3 grids over many seeds, with statistics the study could not give.

A :class:`SweepGrid` expands to fine-tune specs (pretrained models × freeze depths × seeds, plus the scratch
baseline for every seed, all on one split). An :class:`Executor` runs the specs that the run store has not
finished yet (so a stopped sweep resumes where it was) and reports each finished run as it lands, so partial
results are written as cells finish. :class:`LocalExecutor` drains them with the job runner on the local cores;
another executor (a Ray cluster, say) only has to implement :meth:`Executor.run`.

Every worker trains with one torch thread (recorded in the spec and the run): reductions then add in one fixed
order, so a cell's numbers do not depend on how many cells ran at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from scipy import stats

from cgcnn.experiments.study import BASELINE, study_mae
from cgcnn.runs.jobs import JobRunner
from cgcnn.runs.store import RunRecord, RunStore, compute_spec_key
from cgcnn.training.finetune import FinetuneSpec


@dataclass
class SweepGrid:
    """A grid of fine-tunes on one split.

    Attributes:
        pretrained: zoo names (or paths) to fine-tune from.
        freezes: freeze depths ``k`` to try for each of them.
        seeds: model seeds; every cell runs once per seed.
        baseline: also train from scratch for every seed (the reference of the paired comparison).
        target, n_train, n_val, n_test, split_seed: the shared split (the study's 1000/1000/1000 by default).
        hyperparams: training settings of every run (``threads`` is forced to 1, see the module docstring).
    """

    pretrained: list[str]
    freezes: list[int]
    seeds: list[int]
    baseline: bool = True
    target: str = "band_gap"
    n_train: int = 1000
    n_val: int = 1000
    n_test: int = 1000
    split_seed: int = 0
    hyperparams: dict = field(default_factory=dict)

    def specs(self) -> list[FinetuneSpec]:
        """Every run of the grid: per seed, the baseline first, then each model and depth."""
        hyper = {**self.hyperparams, "threads": 1}
        common = {
            "target": self.target,
            "n_train": self.n_train,
            "n_val": self.n_val,
            "n_test": self.n_test,
            "split_seed": self.split_seed,
            "hyperparams": hyper,
        }
        cells = ([(BASELINE, 0)] if self.baseline else []) + [(p, k) for p in self.pretrained for k in self.freezes]
        return [FinetuneSpec(p, k, seed=s, **common) for s in self.seeds for p, k in cells]


class Executor(Protocol):
    """Runs specs and reports each finished run; how and where is the executor's business."""

    def run(self, specs: list[FinetuneSpec], sweep_id: str, on_finished: Callable[[RunRecord], None]) -> None:
        """Run every spec (recorded under ``sweep_id``) and call ``on_finished`` as each one ends."""


class LocalExecutor:
    """Queues specs in the run store and drains them with :class:`~cgcnn.runs.jobs.JobRunner` worker processes."""

    def __init__(self, store: RunStore, workers: int | None = None, poll_s: float = 1.0) -> None:
        self.store = store
        self.workers = workers
        self.poll_s = poll_s

    def make_runner(self) -> JobRunner:
        """The runner that drains the queued cells (warm local workers, one torch thread each)."""
        return JobRunner(self.store, max_workers=self.workers, torch_threads=1)

    def run(self, specs: list[FinetuneSpec], sweep_id: str, on_finished: Callable[[RunRecord], None]) -> None:
        """Queue, start workers, and poll the store for runs that ended."""
        run_ids = [self.store.create_run(s.to_dict(), sweep_id=sweep_id) for s in specs]
        if not run_ids:
            return
        runner = self.make_runner().start()
        pending = set(run_ids)
        try:
            while pending:
                for run_id in list(pending):
                    record = self.store.get(run_id)
                    if not record.is_active:
                        pending.discard(run_id)
                        on_finished(record)
                if pending:
                    time.sleep(self.poll_s)
        except KeyboardInterrupt:
            for run_id in pending:
                self.store.request_cancel(run_id)
            raise
        finally:
            runner.stop(wait=True)


class RayExecutor(LocalExecutor):
    """Runs the cells as Ray tasks (:class:`~cgcnn.runs.ray_jobs.RayJobRunner`); the store stays on this node.

    Args:
        store: the run store (on the head node; tasks never open it).
        address: the Ray cluster (``host:port`` of ``ray start --head``, or ``auto``); None: a local instance.
        num_cpus: CPUs per task (its torch threads); a sweep keeps 1 so cells do not depend on concurrency.
        workers: tasks in flight (default: the cluster's CPUs / ``num_cpus``).
        fallback_local: if Ray cannot be reached, run on local workers instead of failing.

    Raises:
        RayUnavailable: (when the sweep starts) Ray cannot be reached and no fallback was asked for.
    """

    def __init__(
        self,
        store: RunStore,
        address: str | None = None,
        num_cpus: int = 1,
        workers: int | None = None,
        fallback_local: bool = False,
        poll_s: float = 1.0,
    ) -> None:
        super().__init__(store, workers, poll_s)
        self.address, self.num_cpus, self.fallback_local = address, num_cpus, fallback_local

    def make_runner(self) -> JobRunner:
        """A Ray runner (or, if asked for and Ray is unreachable, the local one)."""
        from cgcnn.runs.jobs import make_runner

        return make_runner(
            self.store,
            executor="ray",
            ray_address=self.address,
            num_cpus=self.num_cpus,
            fallback_local=self.fallback_local,
            max_workers=self.workers,
            torch_threads=1,
        )


@dataclass
class SweepResult:
    """All runs of a sweep (finished ones, old and new) and their summary."""

    runs: pd.DataFrame
    summary: pd.DataFrame


def run_sweep(
    grid: SweepGrid,
    store: RunStore,
    executor: Executor | None = None,
    out_dir: Path | None = None,
    sweep_id: str = "sweep",
    progress: Callable[[int, int], None] | None = None,
) -> SweepResult:
    """Run the cells of ``grid`` that the store has not finished, writing ``runs.csv`` and ``summary.csv``.

    Cells already done (same spec, any earlier sweep or CLI run with one thread) are reused, not rerun. The CSV
    files are rewritten each time a run ends, so a long sweep cut short keeps what it finished.
    """
    executor = executor or LocalExecutor(store)
    specs = grid.specs()
    done: dict[str, RunRecord] = {}
    todo = []
    for spec in specs:
        record = store.find_done(compute_spec_key(spec.to_dict()))
        if record is None:
            todo.append(spec)
        else:
            done[record.id] = record

    def write() -> SweepResult:
        runs = runs_frame(done.values())
        result = SweepResult(runs, summarize(runs))
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            runs.to_csv(out_dir / "runs.csv", index=False)
            result.summary.to_csv(out_dir / "summary.csv", index=False)
        return result

    def on_finished(record: RunRecord) -> None:
        if record.status == "done":
            done[record.id] = record
        write()
        if progress:
            progress(len(done), len(specs))

    if progress:
        progress(len(done), len(specs))
    executor.run(todo, sweep_id, on_finished)
    return write()


def runs_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per finished run: the cell, the seed and the test MAE (the CSV a sweep writes)."""
    rows = [
        {
            "run_id": r.id,
            "pretrained": r.pretrained,
            "freeze": r.freeze,
            "seed": r.seed,
            "target": r.target,
            "n_train": r.n_train,
            "n_val": r.n_val,
            "n_test": r.n_test,
            "split_hash": r.split_hash,
            "test_mae": r.test_mae,
            "best_epoch": (r.test_metrics or {}).get("best_epoch"),
            "seconds": r.seconds,
            "torch_threads": r.torch_threads,
            "executor": r.executor,
            "host": r.host,
        }
        for r in records
    ]
    columns = ["run_id", "pretrained", "freeze", "seed", "target", "n_train", "n_val", "n_test", "split_hash",
               "test_mae", "best_epoch", "seconds", "torch_threads", "executor", "host"]  # fmt: skip
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values(["pretrained", "freeze", "seed"], ignore_index=True)


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std of test MAE per cell, and a paired comparison with the baseline over the shared seeds.

    The comparison pairs each seed's fine-tune with the same seed's scratch model (same split, same data
    order): ``diff`` = cell − baseline (negative: transfer helps), with its mean, standard deviation, the
    number of seeds where the fine-tune won, and a paired t-test's p-value (two-sided; None with < 2 pairs).
    """
    columns = ["pretrained", "freeze", "n", "mean_mae", "std_mae", "study_mae", "n_pairs", "mean_diff",
               "std_diff", "wins", "p_value"]  # fmt: skip
    if runs.empty:
        return pd.DataFrame(columns=columns)
    base = runs[runs.pretrained == BASELINE].set_index("seed")["test_mae"]
    rows = []
    for (pretrained, freeze), cell in runs.groupby(["pretrained", "freeze"], sort=True):
        values = cell["test_mae"].to_numpy(dtype=float)
        paired = cell.set_index("seed")["test_mae"].reindex(base.index).dropna() if pretrained != BASELINE else None
        row = {
            "pretrained": pretrained,
            "freeze": int(freeze),
            "n": len(values),
            "mean_mae": float(values.mean()),
            "std_mae": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
            "study_mae": study_mae(pretrained, int(freeze)),
            "n_pairs": 0,
            "mean_diff": None,
            "std_diff": None,
            "wins": None,
            "p_value": None,
        }
        if paired is not None and len(paired):
            diff = paired.to_numpy(dtype=float) - base.loc[paired.index].to_numpy(dtype=float)
            row.update(
                n_pairs=len(diff),
                mean_diff=float(diff.mean()),
                std_diff=float(diff.std(ddof=1)) if len(diff) > 1 else None,
                wins=int((diff < 0).sum()),
                p_value=_paired_p(diff),
            )
        rows.append(row)
    frame = pd.DataFrame(rows, columns=columns)
    is_base = frame.pretrained == BASELINE
    return pd.concat([frame[is_base], frame[~is_base]], ignore_index=True)  # baseline first


def _paired_p(diff: np.ndarray) -> float | None:
    if len(diff) < 2 or np.allclose(diff, diff[0]):
        return None
    return float(stats.ttest_1samp(diff, 0.0).pvalue)


def save_summary_figure(summary: pd.DataFrame, path: Path, title: str = "") -> Path:
    """Mean ± std test MAE per cell (dots with error bars), the scratch band, and the study's single seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = summary[summary.pretrained != BASELINE]
    base = summary[summary.pretrained == BASELINE]
    models = list(dict.fromkeys(cells.pretrained))
    freezes = sorted(cells.freeze.unique())
    fig, ax = plt.subplots(figsize=(3.2 + 1.6 * len(models), 4.0), dpi=120)
    step = 0.8 / max(len(freezes), 1)
    for j, k in enumerate(freezes):
        sub = cells[cells.freeze == k].set_index("pretrained").reindex(models)
        x = np.arange(len(models)) + (j - (len(freezes) - 1) / 2) * step
        ax.errorbar(x, sub.mean_mae, yerr=sub.std_mae, fmt="o", capsize=3, label=f"{k} frozen (mean ± std)")
        study = sub.study_mae.astype(float)
        ax.scatter(x, study, marker="x", color="black", zorder=3, label="study (1 seed)" if j == 0 else None)
    if not base.empty:
        m, s = float(base.mean_mae.iloc[0]), float(np.nan_to_num(base.std_mae.iloc[0]))
        ax.axhspan(m - s, m + s, color="grey", alpha=0.25, label=f"scratch {m:.3f} ± {s:.3f}")
        ax.axhline(m, color="grey", lw=1)
        study_base = base.study_mae.astype(float).iloc[0]
        if np.isfinite(study_base):
            ax.axhline(study_base, color="black", lw=1, ls=":", label=f"study scratch {study_base:.3f}")
    ax.set_xticks(np.arange(len(models)), [m.replace("-per-atom", "") for m in models], rotation=12)
    ax.set_ylabel("test MAE, band gap (eV)")
    ax.set_title(title or "fine-tuned to band gap: mean ± std over seeds", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
