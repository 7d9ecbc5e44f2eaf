"""A class queues the default protocol at once: when is the last student's result ready?

N students (default 30) each launch the Fine-tune page's default run through ``RunStore.launch`` within a
second, as the page does; the job runner (warm workers, the app's settings) drains the queue. Identical specs
are computed once, so the target is: the last result within 2 minutes. A second wave (``--distinct K``) gives
K students their own seed, to show what sharing saves.

Prints the time to the last result, computations run, entries answered by reuse, and ``--json`` one JSON line.

    python bench/class_queue.py [--students 30] [--distinct 0] [--epochs 30] [--workers 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as `python bench/NAME.py`: import from the repository root, as `python -m bench.NAME` does
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--distinct", type=int, default=0, help="students who pick their own seed")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--sizes", default="1000,1000,1000", help="train,val,test crystals")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--max-seconds", type=float, default=1800)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="cgcnn-class-"))
    os.environ["CGCNN_HOME"] = str(home)
    from cgcnn.runs.jobs import JobRunner
    from cgcnn.runs.store import RunStore
    from cgcnn.training.finetune import FinetuneSpec

    store = RunStore(home / "runs.sqlite")
    runner = JobRunner(store, max_workers=args.workers).start()
    while runner.pool_status()["ready"] < args.workers:  # the server was started before the class
        time.sleep(0.2)
    n_train, n_val, n_test = (int(v) for v in args.sizes.split(","))
    started = time.perf_counter()
    ids = []
    for k in range(args.students):
        seed = k + 1 if k < args.distinct else 0
        spec = FinetuneSpec("formation-energy-per-atom", 2, "band_gap", n_train, n_val, n_test, seed=seed,
                            hyperparams={"epochs": args.epochs})  # fmt: skip
        ids.append(store.launch(spec.to_dict(), owner=f"student-{k:02d}").id)
    runner.wake()
    finished: dict[str, float] = {}
    try:
        while len(finished) < len(ids) and time.perf_counter() - started < args.max_seconds:
            for run_id in ids:
                if run_id not in finished and not store.get(run_id).is_active:
                    finished[run_id] = time.perf_counter() - started
            time.sleep(0.2)
    finally:
        runner.stop(kill=True, timeout=60)
    records = [store.get(i) for i in ids]
    result = {
        "students": args.students,
        "distinct": args.distinct,
        "workers": args.workers,
        "last_result_s": round(max(finished.values()), 1) if len(finished) == len(ids) else None,
        "computed": sum(r.source_run_id is None for r in records),
        "reused": sum(r.source_run_id is not None for r in records),
        "done": sum(r.status == "done" for r in records),
        "failed": sum(r.status == "failed" for r in records),
    }
    print(f"{args.students} students, {result['computed']} computations, {result['reused']} answered by reuse")
    print(f"last result after {result['last_result_s']} s (target <= 120 s); done {result['done']}, "
          f"failed {result['failed']}")  # fmt: skip
    if args.json:
        print(json.dumps(result))
    return 0 if result["done"] == len(ids) else 1


if __name__ == "__main__":
    sys.exit(main())
