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

from cgcnn.errors import CGCNNError
from cgcnn.experiments.stats import PairErrors, holm, paired_bootstrap_ci, sign_test
from cgcnn.experiments.study import study_mae
from cgcnn.runs.jobs import JobRunner
from cgcnn.runs.store import RunRecord, RunStore, compute_spec_key
from cgcnn.training.baselines import BASELINES
from cgcnn.training.finetune import FinetuneSpec
from cgcnn.training.protocol import STUDY
from cgcnn.training.transfer import SCRATCH


@dataclass
class SweepGrid:
    """A grid of fine-tunes on one split (or several: ``split_seeds``).

    Attributes:
        pretrained: zoo names (or paths) to fine-tune from.
        freezes: freeze depths ``k`` to try for each of them.
        seeds: model seeds; every cell runs once per seed.
        baseline: also train from scratch for every seed (the reference of the paired comparison).
        target, n_train, n_val, n_test, split_seed: the shared split (by default the study's protocol,
            :data:`cgcnn.training.protocol.STUDY`).
        split_seeds: several canonical splits instead of ``split_seed``: every cell and seed runs on each, and
            pairs match on (split seed, seed), so the comparison covers the choice of test set too.
        hyperparams: training settings of every run (``threads`` is forced to 1, see the module docstring);
            without ``epochs``, the study's.
        baselines: yardsticks to add (``mean``, ``composition``: :mod:`cgcnn.training.baselines`), once per
            split seed: they are deterministic, so a model seed would only repeat them (recorded as seed 0).
    """

    pretrained: list[str]
    freezes: list[int]
    seeds: list[int]
    baseline: bool = True
    target: str = STUDY.target
    n_train: int = STUDY.n_train
    n_val: int = STUDY.n_val
    n_test: int = STUDY.n_test
    split_seed: int = 0
    hyperparams: dict = field(default_factory=dict)
    split_seeds: list[int] | None = None
    baselines: list[str] = field(default_factory=list)

    def specs(self) -> list[FinetuneSpec]:
        """Every run of the grid: per split its baselines, then per seed the scratch run and each model and depth."""
        hyper = {**self.hyperparams, "threads": 1}
        common = {
            "target": self.target,
            "n_train": self.n_train,
            "n_val": self.n_val,
            "n_test": self.n_test,
            "hyperparams": hyper,
        }
        splits = self.split_seeds if self.split_seeds else [self.split_seed]
        cells = ([(SCRATCH, 0)] if self.baseline else []) + [(p, k) for p in self.pretrained for k in self.freezes]
        specs = []
        for split in splits:
            specs += [FinetuneSpec(b, 0, seed=0, split_seed=split, **common) for b in self.baselines]
            specs += [FinetuneSpec(p, k, seed=s, split_seed=split, **common) for s in self.seeds for p, k in cells]
        return specs

    def validate(self) -> None:
        """Check every cell before anything is queued (:meth:`FinetuneSpec.validate`, the data loaded once).

        Seeds do not change whether a run can run, so one spec per (model, depth, split) is checked.
        """
        unknown = [b for b in self.baselines if b not in BASELINES]
        if unknown:
            raise CGCNNError(
                f"--baselines: unknown baseline(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(BASELINES)}"
            )
        dataset = None
        seen = set()
        for spec in self.specs():
            cell = (spec.pretrained, spec.freeze, spec.split_seed)
            if cell not in seen:
                seen.add(cell)
                dataset = spec.validate(dataset)


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
        """Queue, start workers, and poll the store for runs that ended.

        The executor is reached first: a cluster that cannot be reached leaves no run queued (the next sweep
        would train the leftovers), and runs queued for a runner that then fails to start are cancelled.
        """
        if not specs:
            return
        runner = self.make_runner()
        run_ids = [self.store.create_run(s.to_dict(), sweep_id=sweep_id) for s in specs]
        try:
            runner.start()
        except BaseException:
            for run_id in run_ids:
                self.store.request_cancel(run_id, force=True)
            raise
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
        from cgcnn.runs.executors import make_runner

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
        result = SweepResult(runs, summarize(runs, store_test_errors(store)))
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
            "split_seed": r.split_seed,
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
    columns = ["run_id", "pretrained", "freeze", "seed", "split_seed", "target", "n_train", "n_val", "n_test",
               "split_hash", "test_mae", "best_epoch", "seconds", "torch_threads", "executor", "host"]  # fmt: skip
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values(["pretrained", "freeze", "split_seed", "seed"], ignore_index=True)


#: Per-crystal test errors of a run: ``crystal_id`` → prediction − label (None when the run has none stored).
TestErrors = Callable[[str], "pd.Series | None"]


def store_test_errors(store: RunStore) -> TestErrors:
    """The per-crystal test errors of stored runs, read from ``store``'s predictions table."""

    def errors(run_id: str) -> pd.Series | None:
        frame = store.predictions(run_id, split="test")
        if frame.empty:
            return None
        return pd.Series(frame["y_pred"].to_numpy(float) - frame["y_true"].to_numpy(float), index=frame["crystal_id"])

    return errors


def summarize(runs: pd.DataFrame, test_errors: TestErrors | None = None) -> pd.DataFrame:
    """Mean ± std of test MAE per cell, and a paired comparison with the baseline.

    Pairs match on (split seed, seed): the fine-tune and the scratch model of one pair share the split and the
    data order. ``diff`` = cell − baseline (negative: transfer helps). Per cell: its mean and standard
    deviation, ``wins`` (pairs where the fine-tune is better), ``p_value`` (paired t-test, two-sided; None
    with < 2 pairs), ``p_holm`` (that p-value Holm-corrected over every non-baseline cell of this summary),
    ``p_sign`` (exact two-sided sign test, ties dropped), and ``ci_low``/``ci_high`` (95% interval of the mean
    difference from a bootstrap over test crystals and pairs; only when ``test_errors`` gives every pair's
    per-crystal errors). The baseline row leaves the comparison columns blank. See
    :mod:`cgcnn.experiments.stats`.
    """
    columns = ["pretrained", "freeze", "n", "mean_mae", "std_mae", "study_mae", "n_pairs", "mean_diff",
               "std_diff", "wins", "p_value", "p_holm", "p_sign", "ci_low", "ci_high"]  # fmt: skip
    if runs.empty:
        return pd.DataFrame(columns=columns)
    runs = runs.copy()
    if "split_seed" not in runs:
        runs["split_seed"] = 0  # results written before split seeds were recorded: all on split 0
    runs["split_seed"] = runs["split_seed"].fillna(0).astype(int)
    pair_key = ["split_seed", "seed"]
    base_runs = runs[runs.pretrained == SCRATCH].set_index(pair_key)
    base = base_runs["test_mae"]
    rows = []
    for (pretrained, freeze), cell in runs.groupby(["pretrained", "freeze"], sort=True):
        values = cell["test_mae"].to_numpy(dtype=float)
        row = {
            "pretrained": pretrained,
            "freeze": int(freeze),
            "n": len(values),
            "mean_mae": float(values.mean()),
            "std_mae": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
            "study_mae": study_mae(pretrained, int(freeze)),
            "n_pairs": 0,
            **dict.fromkeys(columns[7:]),
        }
        cell = cell.set_index(pair_key)
        paired = cell["test_mae"].reindex(base.index).dropna() if pretrained != SCRATCH else None
        if paired is not None and len(paired):
            diff = paired.to_numpy(dtype=float) - base.loc[paired.index].to_numpy(dtype=float)
            row.update(
                n_pairs=len(diff),
                mean_diff=float(diff.mean()),
                std_diff=float(diff.std(ddof=1)) if len(diff) > 1 else None,
                wins=int((diff < 0).sum()),
                p_value=_paired_p(diff),
                p_sign=sign_test(diff),
            )
            if test_errors is not None and "run_id" in cell:
                ci = _bootstrap_ci(
                    [(key, cell.at[key, "run_id"], base_runs.at[key, "run_id"]) for key in paired.index], test_errors
                )
                if ci is not None:
                    row["ci_low"], row["ci_high"] = ci
        rows.append(row)
    frame = pd.DataFrame(rows, columns=columns)
    is_base = frame.pretrained == SCRATCH
    # the yardsticks (mean, composition) are compared with scratch too, but are no transfer recipe: they stay
    # out of the Holm family, so adding them to a sweep changes no fine-tune's corrected p-value
    outside = is_base | frame.pretrained.isin(BASELINES)
    frame["p_holm"] = pd.Series(holm([None if outside[i] else frame.at[i, "p_value"] for i in frame.index]),
                                index=frame.index, dtype=object)  # fmt: skip
    return pd.concat([frame[is_base], frame[~is_base]], ignore_index=True)  # baseline first


def _bootstrap_ci(pairs: list[tuple[tuple, str, str]], test_errors: TestErrors) -> tuple[float, float] | None:
    """The paired bootstrap interval of one cell, or None when a pair's per-crystal errors are missing."""
    pair_errors = []
    for (split_seed, _seed), cell_run, base_run in pairs:
        cell, base = test_errors(cell_run), test_errors(base_run)
        if cell is None or base is None:
            return None
        shared = cell.index.intersection(base.index).sort_values()
        if len(shared) == 0:
            return None
        pair_errors.append(PairErrors(split_seed, cell.loc[shared].to_numpy(float), base.loc[shared].to_numpy(float)))
    return paired_bootstrap_ci(pair_errors)


def _paired_p(diff: np.ndarray) -> float | None:
    if len(diff) < 2 or np.allclose(diff, diff[0]):
        return None
    return float(stats.ttest_1samp(diff, 0.0).pvalue)


def save_summary_figure(summary: pd.DataFrame, path: Path, title: str = "") -> Path:
    """Mean ± std test MAE per cell (dots with error bars), the scratch band, and the study's single seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = summary[(summary.pretrained != SCRATCH) & ~summary.pretrained.isin(BASELINES)]
    base = summary[summary.pretrained == SCRATCH]
    yardsticks = summary[summary.pretrained.isin(BASELINES)]
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
    for name, mae in zip(yardsticks.pretrained, yardsticks.mean_mae.astype(float), strict=True):
        ax.axhline(mae, color="black", lw=1, ls="--", alpha=0.6, label=f"{name} baseline {mae:.3f}")
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
