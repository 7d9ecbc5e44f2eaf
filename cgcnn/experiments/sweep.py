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
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from cgcnn.errors import CGCNNError
from cgcnn.experiments import learning_curve as curves
from cgcnn.experiments.summary import TestErrors, summarize
from cgcnn.runs.jobs import JobRunner
from cgcnn.runs.store import RunRecord, RunStore, compute_spec_key
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
        sizes: several training-set sizes instead of ``n_train`` (a learning curve): every cell, seed and split
            runs at each. A smaller training set is a prefix of a larger one on the same split, with the same
            validation and test crystals (:func:`cgcnn.data.splits.make_split`), so sizes compare on one test set.
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
    sizes: list[int] | None = None

    @property
    def train_sizes(self) -> list[int]:
        """The training-set sizes of the grid: ``sizes``, or ``[n_train]`` without them."""
        return list(self.sizes) if self.sizes else [self.n_train]

    def specs(self) -> list[FinetuneSpec]:
        """Every run of the grid: per split, size and seed, the baseline first, then each model and depth."""
        hyper = {**self.hyperparams, "threads": 1}
        common = {
            "target": self.target,
            "n_val": self.n_val,
            "n_test": self.n_test,
            "hyperparams": hyper,
        }
        splits = self.split_seeds if self.split_seeds else [self.split_seed]
        cells = ([(SCRATCH, 0)] if self.baseline else []) + [(p, k) for p in self.pretrained for k in self.freezes]
        return [
            FinetuneSpec(p, k, seed=s, split_seed=split, n_train=n, **common)
            for split in splits
            for n in self.train_sizes
            for s in self.seeds
            for p, k in cells
        ]

    def validate(self) -> None:
        """Check every cell before anything is queued (:meth:`FinetuneSpec.validate`, the data loaded once).

        Seeds do not change whether a run can run, so one spec per (model, depth, split, size) is checked.

        Raises:
            CGCNNError: a size below 2, repeated, or above the target's training block (the message names
                ``--sizes`` and the largest size allowed), or whatever :meth:`FinetuneSpec.validate` refuses.
        """
        dataset = None
        if self.sizes is not None:
            dataset = self._check_sizes()
        seen = set()
        for spec in self.specs():
            cell = (spec.pretrained, spec.freeze, spec.split_seed, spec.n_train)
            if cell not in seen:
                seen.add(cell)
                dataset = spec.validate(dataset)

    def _check_sizes(self):
        """Refuse sizes no split can give, naming the option and the allowed range; returns the data loaded."""
        from cgcnn.data.splits import canonical_blocks
        from cgcnn.training.finetune import load_data, resolve_target

        sizes = list(self.sizes or [])
        if not sizes:
            raise CGCNNError("--sizes: give at least one training-set size, e.g. 50,100,200")
        if len(set(sizes)) < len(sizes):
            raise CGCNNError(f"--sizes: each size once, got {','.join(map(str, sizes))}")
        dataset = load_data(None)
        target = resolve_target(dataset, self.target)
        block = len(canonical_blocks(dataset, target, 0).train)  # the same length for every split seed
        bad = [n for n in sizes if n < 2 or n > block]
        if bad:
            raise CGCNNError(
                f"--sizes: {', '.join(map(str, bad))} outside the allowed 2..{block} (the training block of "
                f"'{target}' holds {block:,} crystals; the validation and test blocks are apart)"
            )
        return dataset


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
    """All runs of a sweep (finished ones, old and new), their summary and, once it ended, the crossovers."""

    runs: pd.DataFrame
    summary: pd.DataFrame
    crossover: pd.DataFrame | None = None


def run_sweep(
    grid: SweepGrid,
    store: RunStore,
    executor: Executor | None = None,
    out_dir: Path | None = None,
    sweep_id: str = "sweep",
    progress: Callable[[int, int], None] | None = None,
) -> SweepResult:
    """Run the cells of ``grid`` that the store has not finished, writing the results folder ``out_dir``.

    Cells already done (same spec, any earlier sweep or CLI run with one thread) are reused, not rerun.
    ``runs.csv`` and ``summary.csv`` are rewritten each time a run ends, so a long sweep cut short keeps what it
    finished; those partial summaries skip the bootstrap intervals (a few seconds per cell of a large grid,
    after every run). When the sweep ends, the folder gets the full summary (every interval), ``crossover.csv``,
    ``predictions.csv.gz`` (the runs' per-crystal test predictions, so a fresh clone recomputes everything:
    ``sweep-summary``) and ``learning_curve.png``, all scored as predicted on every test crystal (``all``; the
    pre-registered scoring of docs/learning-curves.md is ``sweep-summary DIR --scoring primary``).
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

    def write_partial() -> None:
        if out_dir is not None:
            runs = runs_frame(done.values())
            out_dir.mkdir(parents=True, exist_ok=True)
            runs.to_csv(out_dir / "runs.csv", index=False)
            summarize(runs).to_csv(out_dir / "summary.csv", index=False)

    def on_finished(record: RunRecord) -> None:
        if record.status == "done":
            done[record.id] = record
        write_partial()
        if progress:
            progress(len(done), len(specs))

    if progress:
        progress(len(done), len(specs))
    executor.run(todo, sweep_id, on_finished)
    return _write_final(runs_frame(done.values()), store, out_dir)


def _write_final(runs: pd.DataFrame, store: RunStore, out_dir: Path | None) -> SweepResult:
    """The complete results of a finished sweep (see :func:`run_sweep`), written to ``out_dir`` when given."""
    from cgcnn.experiments import results_folder as folder

    if out_dir is None:
        predictions = folder.store_test_predictions(store)
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        runs.to_csv(out_dir / "runs.csv", index=False)
        folder.write_predictions(store, runs["run_id"].tolist(), out_dir / folder.PREDICTIONS_FILE)
        predictions = folder.folder_test_predictions(out_dir, store)
    scored = folder.score_results(runs, predictions, folder.SCORINGS["all"])
    if out_dir is not None:
        folder.write_results(out_dir, scored)
    return SweepResult(runs, scored.summary, scored.crossover)


def runs_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    """One row per finished run: the cell, the seed and the test MAE (the CSV a sweep writes).

    No empty recipe cells: scratch is ``pretrained=none, freeze=0, strategy=none``, the baselines
    ``pretrained=mean|composition, freeze=0, strategy=none``, fine-tunes carry their spec's strategy
    (``freeze`` for specs written before strategies). ``finished_at`` is ISO 8601 in UTC, so a reader can check
    that a shipped run finished after the commit that pre-registered its analysis.
    """
    rows = [
        {
            "run_id": r.id,
            "pretrained": r.pretrained or SCRATCH,
            "freeze": r.freeze if r.pretrained not in (SCRATCH, *curves.BASELINE_NAMES) else 0,
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
            "strategy": run_strategy(r),
            "finished_at": iso_utc(r.finished_at),
        }
        for r in records
    ]
    columns = ["run_id", "pretrained", "freeze", "seed", "split_seed", "target", "n_train", "n_val", "n_test",
               "split_hash", "test_mae", "best_epoch", "seconds", "torch_threads", "executor", "host", "strategy",
               "finished_at"]  # fmt: skip
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values(["pretrained", "freeze", "strategy", "n_train", "split_seed", "seed"], ignore_index=True)


def run_strategy(record: RunRecord) -> str:
    """The strategy column of runs.csv: ``none`` without a network to fine-tune, else the spec's."""
    if (record.pretrained or SCRATCH) in (SCRATCH, *curves.BASELINE_NAMES):
        return curves.NO_STRATEGY
    return str(record.spec.get("strategy") or curves.DEFAULT_STRATEGY)


def iso_utc(timestamp: float | None) -> str:
    """``2026-12-06T05:30:00+00:00`` (empty for a run that has not finished)."""
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def store_test_errors(store: RunStore) -> TestErrors:
    """The per-crystal test errors of stored runs, read from ``store``'s predictions table."""

    def errors(run_id: str) -> pd.Series | None:
        frame = store.predictions(run_id, split="test")
        if frame.empty:
            return None
        return pd.Series(frame["y_pred"].to_numpy(float) - frame["y_true"].to_numpy(float), index=frame["crystal_id"])

    return errors


def save_summary_figure(summary: pd.DataFrame, path: Path, title: str = "") -> Path:
    """Mean ± std test MAE per cell (dots with error bars), the scratch band, and the study's single seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = summary[summary.pretrained != SCRATCH]
    base = summary[summary.pretrained == SCRATCH]
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
