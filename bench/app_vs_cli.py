"""App vs CLI: the default study fine-tune through the job queue (warm worker, as the app runs it) vs the CLI.

Both on the same machine, in one run, for the same spec: the Fine-tune page's defaults
(formation-energy-per-atom, freeze 2, band gap, 1000/1000/1000, 30 epochs, seed 0).

1. Warm-up (not timed): a 1-epoch CLI run fills the graph disk cache, so neither timed path featurises.
2. CLI: ``python -m cgcnn finetune ...`` in a fresh process, wall time from start to exit (what a user waits).
3. Queue: a :class:`~cgcnn.runs.jobs.JobRunner` started as the app starts it (warm workers, ready before the
   click), then ``RunStore.launch(spec, owner, force=True)`` (the page's "train again", so the CLI's result is
   not reused) and wall time until the run is ``done``. The run's recorded ``setup_seconds`` (claim to first
   training step) and thread count are printed too.

Prints both times and the ratio queue / CLI (target <= 1.3). ``--json`` prints one JSON line last.

    python bench/app_vs_cli.py [--epochs 30] [--workers 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as `python bench/NAME.py`: import from the repository root, as `python -m bench.NAME` does
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent


def cli_run(args: argparse.Namespace, epochs: int, env: dict[str, str]) -> float:
    """Seconds of one CLI fine-tune in a fresh process."""
    cmd = [sys.executable, "-m", "cgcnn", "finetune", "--pretrained", args.pretrained, "--freeze", str(args.freeze),
           "--train", str(args.train), "--val", str(args.val), "--test", str(args.test), "--epochs", str(epochs),
           "--seed", "0", "--quiet", "--owner", "bench-cli"]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", default="formation-energy-per-atom")
    parser.add_argument("--freeze", type=int, default=2)
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--val", type=int, default=1000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="the app's worker count")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="cgcnn-bench-"))
    os.environ["CGCNN_HOME"] = str(home)
    env = {**os.environ, "CGCNN_HOME": str(home)}

    from cgcnn.runs.jobs import JobRunner
    from cgcnn.runs.store import RunStore
    from cgcnn.training.finetune import FinetuneSpec

    print("warm-up: 1-epoch CLI run (fills the graph cache)", file=sys.stderr)
    cli_run(args, 1, env)
    print("CLI run...", file=sys.stderr)
    cli_s = cli_run(args, args.epochs, env)

    store = RunStore(home / "runs.sqlite")
    runner = JobRunner(store, max_workers=args.workers).start()  # the app's runner: niced, warm, auto threads
    try:
        deadline = time.monotonic() + 300
        while runner.pool_status()["ready"] < args.workers:  # the server has been up a while when a student clicks
            if time.monotonic() > deadline:
                raise SystemExit("workers did not become ready in 300 s")
            time.sleep(0.2)
        spec = FinetuneSpec(args.pretrained, args.freeze, "band_gap", args.train, args.val, args.test, seed=0,
                            hyperparams={"epochs": args.epochs})  # fmt: skip
        print("queue run...", file=sys.stderr)
        started = time.perf_counter()
        record = store.launch(spec.to_dict(), owner="bench-app", force=True)
        runner.wake()
        while store.get(record.id).is_active:
            time.sleep(0.05)
        queue_s = time.perf_counter() - started
    finally:
        runner.stop(wait=True, timeout=60)
    done = store.get(record.id)
    cli_record = next(r for r in store.list_runs(owner="bench-cli") if r.hyperparams.get("epochs") == args.epochs)
    result = {
        "cli_s": round(cli_s, 2),
        "queue_s": round(queue_s, 2),
        "ratio": round(queue_s / cli_s, 3),
        "queue_status": done.status,
        "queue_setup_s": None if done.setup_seconds is None else round(done.setup_seconds, 3),
        "queue_threads": done.torch_threads,
        "cli_threads": cli_record.torch_threads,
        "test_mae_queue": done.test_mae,
        "test_mae_cli": cli_record.test_mae,
        "cores": os.cpu_count(),
    }
    print(f"CLI   {cli_s:7.1f} s  ({cli_record.torch_threads} threads, test MAE {cli_record.test_mae:.4f})")
    print(f"queue {queue_s:7.1f} s  ({done.torch_threads} threads, setup {result['queue_setup_s']} s, "
          f"test MAE {done.test_mae if done.test_mae is None else round(done.test_mae, 4)})")  # fmt: skip
    print(f"ratio queue/CLI {result['ratio']:.2f} (target <= 1.3)")
    if args.json:
        print(json.dumps(result))
    return 0 if done.status == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
