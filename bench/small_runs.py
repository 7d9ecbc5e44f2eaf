"""Overhead of small runs in a warm job worker: claim to first step, last epoch to done, and validation's cost.

A learning curve and a lesson queue many small runs (50 training crystals, a few epochs); for them the fixed cost
around the training counts, not the training. This bench starts the job runner as the app does (one warm worker,
the default warm-up), runs one untimed small fine-tune so the worker holds the graphs it needs, then ``--runs``
timed ones (other model seeds of the same recipe). For each it reads:

* ``claim_to_first_step_s``: from the claim (``started_at``, set by ``RunStore.claim_next``) to the optimiser's
  first step in the worker (a ``torch.optim`` step pre-hook);
* ``last_epoch_to_done_s``: from the last epoch's row (written, heartbeat and cancel check done) to ``finished_at``
  (the run is done for everyone who looks), split by when the predictions are written into ``test_block_s`` (the
  test block's frozen features and evaluation, the checkpoint, the test predictions), ``calibration_s`` (a forward
  pass over the training and validation blocks, the validation predictions) and ``finish_s`` (the final write);
* ``first_step_cpu_s`` and ``last_epoch_to_done_cpu_s``: the same spans in the worker's CPU seconds (from the
  target's start, so without the claim's message), which a loaded machine inflates less than wall time;
* ``val_s_per_epoch``: each epoch's validation pass (the epoch's seconds minus its training pass), and its share.

The target here is :func:`timed_target`, which calls the same ``run_finetune`` as the default target with the
its timestamps added. Prints medians and ranges, and with ``--json`` one JSON line.

    python -m bench.small_runs [--runs 5] [--train 50] [--val 1000] [--test 1000] [--epochs 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as `python bench/NAME.py`: import from the repository root, as `python -m bench.NAME` does
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TIMINGS_FILE = "bench_timings.json"


def timed_target(run_id: str, store) -> None:
    """The default job target (``execute_run``) with the first optimiser step and each epoch's end timestamped.

    The timestamps go to ``<run dir>/bench_timings.json`` once the run has ended (after ``finished_at``).
    """
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    from cgcnn.training.finetune import FinetuneSpec, run_finetune

    marks: dict[str, object] = {"epochs": [], "cpu_start": time.process_time()}

    def first_step(optimizer, args, kwargs) -> None:
        marks.setdefault("first_step", time.time())
        marks.setdefault("cpu_first_step", time.process_time())

    def on_epoch(stats) -> None:
        marks["epochs"].append(
            {"epoch": stats.epoch, "at": time.time(), "cpu": time.process_time(), "seconds": stats.seconds,
             "train_seconds": stats.train_seconds}
        )  # fmt: skip

    write_predictions, finish = store.add_predictions, store.finish

    def add_predictions(run: str, rows) -> int:  # test predictions, then (after calibrating) validation ones
        count = write_predictions(run, rows)
        marks.setdefault("predictions_written", []).append(time.time())
        return count

    def finished(*args, **kwargs):
        out = finish(*args, **kwargs)
        marks["cpu_done"] = time.process_time()
        return out

    store.add_predictions, store.finish = add_predictions, finished  # this worker's store object only
    hook = register_optimizer_step_pre_hook(first_step)
    try:
        run_finetune(FinetuneSpec.from_dict(store.get(run_id).spec), store=store, run_id=run_id, on_epoch=on_epoch)
    finally:
        hook.remove()
        path = store.run_dir(run_id) / TIMINGS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(marks))


def summary(values: list[float]) -> dict[str, float]:
    """Median, min and max, rounded for a table."""
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs (after one untimed warm-up run)")
    parser.add_argument("--train", type=int, default=50)
    parser.add_argument("--val", type=int, default=1000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--pretrained", default="formation-energy-per-atom")
    parser.add_argument("--freeze", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="cgcnn-small-runs-"))
    os.environ["CGCNN_HOME"] = str(home)
    from cgcnn.runs.jobs import DEFAULT_WARM_UP, JobRunner
    from cgcnn.runs.store import RunStore
    from cgcnn.training.finetune import FinetuneSpec

    store = RunStore(home / "runs.sqlite")
    runner = JobRunner(store, max_workers=1, target="bench.small_runs:timed_target", warm_up=DEFAULT_WARM_UP).start()
    while runner.pool_status()["ready"] < 1:
        time.sleep(0.2)
    rows = []
    try:
        for k in range(args.runs + 1):
            spec = FinetuneSpec(
                args.pretrained, args.freeze, "band_gap", args.train, args.val, args.test, seed=k,
                hyperparams={"epochs": args.epochs},
            )  # fmt: skip
            run_id = store.create_run(spec.to_dict(), owner="bench")
            runner.wake()
            if not runner.run_until_empty(timeout=600, run_ids=[run_id]):
                raise SystemExit(f"run {run_id} did not finish in 10 minutes")
            record = store.get(run_id)
            if record.status != "done":
                raise SystemExit(f"run {run_id} ended {record.status}: {record.error}")
            marks = json.loads((store.run_dir(run_id) / TIMINGS_FILE).read_text())
            if k == 0:
                continue  # the worker's first run reads the graphs from disk: not a warm run
            epochs, written = marks["epochs"], marks["predictions_written"]
            rows.append(
                {
                    "claim_to_first_step_s": marks["first_step"] - record.started_at,
                    "setup_seconds": record.setup_seconds,
                    "last_epoch_to_done_s": record.finished_at - epochs[-1]["at"],
                    # of which: the test block (features, evaluation, checkpoint, its predictions written) ...
                    "test_block_s": written[0] - epochs[-1]["at"],
                    # ... the calibration (a forward pass over training and validation, its predictions) ...
                    "calibration_s": (written[1] if len(written) > 1 else written[0]) - written[0],
                    # ... and the final write
                    "finish_s": record.finished_at - written[-1],
                    "epoch_s": statistics.median(e["seconds"] for e in epochs),
                    # CPU seconds of the worker (all its threads; less sensitive to other load than wall time)
                    "first_step_cpu_s": marks["cpu_first_step"] - marks["cpu_start"],
                    "last_epoch_to_done_cpu_s": marks["cpu_done"] - epochs[-1]["cpu"],
                    "val_s_per_epoch": statistics.median(e["seconds"] - e["train_seconds"] for e in epochs),
                    "run_s": record.seconds,
                }
            )
    finally:
        runner.stop(kill=True, timeout=60)
    result = {
        "runs": len(rows),
        "sizes": f"{args.train}/{args.val}/{args.test}",
        "epochs": args.epochs,
        "pretrained": args.pretrained,
        "freeze": args.freeze,
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "cores": os.cpu_count(),
        **{name: summary([r[name] for r in rows]) for name in rows[0]},
    }
    val, epoch = result["val_s_per_epoch"]["median"], result["epoch_s"]["median"]
    result["val_share_of_epoch"] = round(val / epoch, 3) if epoch else None
    print(f"{len(rows)} warm runs of {result['sizes']} crystals, {args.epochs} epochs, load {result['load_avg_1min']}")
    for name in ("claim_to_first_step_s", "first_step_cpu_s", "last_epoch_to_done_s", "last_epoch_to_done_cpu_s",
                 "test_block_s", "calibration_s", "finish_s", "val_s_per_epoch", "epoch_s", "run_s"):  # fmt: skip
        s = result[name]
        print(f"  {name}: median {s['median']} s (range {s['min']}-{s['max']})")
    print(f"  validation is {100 * (result['val_share_of_epoch'] or 0):.0f}% of an epoch")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
