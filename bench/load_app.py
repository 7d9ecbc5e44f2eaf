"""Load bench of the app: page latency while simulated classroom sessions fine-tune through the job queue.

Starts ``streamlit run app.py`` on 127.0.0.1 (a free port, a temporary ``CGCNN_HOME``), then runs N simulated
sessions (threads). Each session queues one tiny fine-tune through the job API (``RunStore.create_run``, the
call the Fine-tune page makes: 40/20/20 crystals, 2 epochs, its own seed) and, while its run is queued or
running, fetches the app's HTTP endpoints (``/``, ``/_stcore/health``, the static 3Dmol.js) in a bounded
loop. The queue is drained by the same job runner the app uses (``cgcnn.runs.executors.get_runner``: niced worker
processes, one torch thread each), started here, since HTTP requests alone do not start a page script.

Reports latency percentiles per endpoint and job completion times (queue wait, run time, total), and stops by
itself (``--max-seconds``). Only 127.0.0.1 is contacted.

    python bench/load_app.py [--sessions 10] [--workers 2] [--max-seconds 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # app_server.py

from app_server import AppServer

from cgcnn.runs.store import FINAL_STATUSES, RunStore
from cgcnn.training.finetune import FinetuneSpec

ENDPOINTS = ("/", "/_stcore/health", "/app/static/3Dmol-min.js")


def fetch(url: str) -> tuple[float, int]:
    """(seconds, HTTP status or 0 on a connection error) of one GET."""
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError:
        status = 0
    return time.perf_counter() - started, status


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def session(k: int, base: str, store: RunStore, deadline: float, max_requests: int, out: dict) -> None:
    """One simulated user: queue a tiny fine-tune, then browse until it ends (bounded)."""
    spec = FinetuneSpec(
        pretrained="formation-energy-per-atom", freeze=2, n_train=40, n_val=20, n_test=20, seed=k,
        hyperparams={"epochs": 2},
    )  # fmt: skip
    run_id = store.create_run(spec.to_dict(), owner=f"student-{k:02d}", status="queued")
    out["runs"].append(run_id)
    for n in range(max_requests):
        if time.monotonic() > deadline:
            break
        path = ENDPOINTS[n % len(ENDPOINTS)]
        seconds, status = fetch(base + path)
        with out["lock"]:
            out["latency"].setdefault(path, []).append(seconds)
            if status != 200:
                out["failures"].append((path, status))
        if store.get(run_id).status in FINAL_STATUSES and n >= len(ENDPOINTS):
            break
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    """Run the bench; prints a report (and JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2, help="worker processes draining the queue")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="stop after this long, whatever is left")
    parser.add_argument("--max-requests", type=int, default=2000, help="HTTP requests per session at most")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args(argv)

    from cgcnn.runs.jobs import JobRunner

    with tempfile.TemporaryDirectory(prefix="cgcnn_load_") as tmp:
        home = Path(tmp)
        import os

        os.environ["CGCNN_HOME"] = str(home)  # the runner's workers and this process use the bench's store
        store = RunStore(home / "runs.sqlite")
        started = time.monotonic()
        with AppServer(home, env={"CGCNN_WORKERS": "0"}) as app:
            startup = time.monotonic() - started
            print(f"app up at {app.url} in {startup:.1f} s; {args.sessions} sessions, {args.workers} workers")
            runner = JobRunner(store, max_workers=args.workers).start()
            out: dict = {"lock": threading.Lock(), "latency": {}, "failures": [], "runs": []}
            deadline = time.monotonic() + args.max_seconds
            threads = [
                threading.Thread(target=session, args=(k, app.url, store, deadline, args.max_requests, out))
                for k in range(args.sessions)
            ]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=max(1.0, deadline - time.monotonic() + 5))
            drained = runner.run_until_empty(timeout=max(1.0, deadline - time.monotonic()), run_ids=out["runs"])
            if not drained:
                runner.stop(kill=True, timeout=30)
            else:
                runner.stop(wait=True, timeout=30)
            wall = time.monotonic() - t0

        records = [store.get(r) for r in out["runs"]]
        report = {
            "sessions": args.sessions,
            "workers": args.workers,
            "startup_s": round(startup, 2),
            "wall_s": round(wall, 1),
            "requests": sum(len(v) for v in out["latency"].values()),
            "http_failures": len(out["failures"]),
            "latency_ms": {
                path: {
                    "n": len(v),
                    "p50": round(1000 * percentile(v, 50), 1),
                    "p90": round(1000 * percentile(v, 90), 1),
                    "p99": round(1000 * percentile(v, 99), 1),
                    "max": round(1000 * max(v), 1),
                }
                for path, v in out["latency"].items()
            },
            "jobs": {
                "statuses": {s: sum(r.status == s for r in records) for s in sorted({r.status for r in records})},
                "queue_wait_s": _summary([(r.started_at or r.created_at) - r.created_at for r in records]),
                "run_s": _summary([r.finished_at - r.started_at for r in records if r.finished_at and r.started_at]),
                "total_s": _summary([r.finished_at - r.created_at for r in records if r.finished_at]),
            },
        }
    print(f"wall {report['wall_s']} s, {report['requests']} requests, {report['http_failures']} failed")
    for path, s in report["latency_ms"].items():
        print(f"  {path:28s} n={s['n']:4d}  p50 {s['p50']:7.1f} ms  p90 {s['p90']:7.1f}  p99 {s['p99']:7.1f}  "
              f"max {s['max']:7.1f}")  # fmt: skip
    jobs = report["jobs"]
    print(f"  jobs {jobs['statuses']}")
    for key in ("queue_wait_s", "run_s", "total_s"):
        print(f"  {key:12s} {jobs[key]}")
    if args.json:
        print(json.dumps(report, indent=2))
    ok = report["http_failures"] == 0 and jobs["statuses"].get("done", 0) == args.sessions
    return 0 if ok else 1


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "min": round(min(values), 1),
        "median": round(statistics.median(values), 1),
        "max": round(max(values), 1),
    }


if __name__ == "__main__":
    sys.exit(main())
