"""Rerun time of the Fine-tune page with a class's worth of runs in the store (target: under 0.5 s at 100 runs).

Starts the real app (no workers: nothing trains, so the numbers are the page's own cost), fills its store with
``--runs`` runs (``devtools/class_runs.py``: done with curves, reused entries, failed, running and queued ones) and
times, over the app's websocket protocol, reruns of the Fine-tune page showing everyone's runs (the compact
table, one run opened with its curves and parity plot) and of its polling fragment alone. The baseline is the
same page with an empty store, measured in the same run; the ratio is what to compare across machines.

    python bench/app_rerun.py [--runs 100] [--repeats 20] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as `python bench/NAME.py`: import from the repository root, as `python -m bench.NAME` does
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.st_client import StreamlitSession


async def time_page(url: str, repeats: int) -> dict[str, float]:
    """Median and max seconds of full-page and fragment reruns of the Fine-tune page (everyone's runs)."""
    session = StreamlitSession(url)
    await session.connect()
    try:
        await session.rerun()
        name = session.widget(key="user_input")
        session.set_value(name, "student-00")
        session.keep_across_pages(name)
        await session.rerun()
        await session.open("Fine_tune")
        session.set_value(session.widget(key="ft_everyone"), True)
        await session.rerun()  # warm: caches filled, the table built once
        full = [(await session.rerun()).seconds for _ in range(repeats)]
        fragments = list(session.fragments)
        partial = [(await session.rerun(fragment_id=fragments[0])).seconds for _ in range(repeats)] if fragments else []
    finally:
        await session.close()
    return {
        "rerun_median_s": statistics.median(full),
        "rerun_max_s": max(full),
        "fragment_median_s": statistics.median(partial) if partial else float("nan"),
    }


def measure(n_runs: int, repeats: int) -> dict[str, float]:
    """Start the app on a fresh home holding ``n_runs`` runs and time its Fine-tune page."""
    from cgcnn.runs.store import RunStore
    from devtools.app_server import AppServer
    from devtools.class_runs import make_class

    with tempfile.TemporaryDirectory(prefix="cgcnn_rerun_") as home:
        old = os.environ.get("CGCNN_HOME")
        os.environ["CGCNN_HOME"] = home
        try:
            store = RunStore(Path(home) / "runs.sqlite")
            if n_runs:
                make_class(store, n_runs)
            with AppServer(home, env={"CGCNN_WORKERS": "0"}) as app:
                return asyncio.run(time_page(app.url, repeats))
        finally:
            if old is None:
                os.environ.pop("CGCNN_HOME", None)
            else:
                os.environ["CGCNN_HOME"] = old


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    empty = measure(0, args.repeats)
    full = measure(args.runs, args.repeats)
    report = {
        "runs": args.runs,
        "empty_rerun_median_s": round(empty["rerun_median_s"], 3),
        "rerun_median_s": round(full["rerun_median_s"], 3),
        "rerun_max_s": round(full["rerun_max_s"], 3),
        "fragment_median_s": round(full["fragment_median_s"], 3),
        "ratio_vs_empty": round(full["rerun_median_s"] / empty["rerun_median_s"], 2),
        "target_s": 0.5,
    }
    print(
        f"Fine-tune page, everyone's runs: empty store {report['empty_rerun_median_s']} s; {args.runs} runs: "
        f"median {report['rerun_median_s']} s (max {report['rerun_max_s']} s, fragment alone "
        f"{report['fragment_median_s']} s), {report['ratio_vs_empty']}x the empty page "
        f"[{time.monotonic() - t0:.0f} s]"
    )
    if args.json:
        print(json.dumps(report, separators=(",", ":")))
    return 0 if report["rerun_median_s"] < report["target_s"] else 1


if __name__ == "__main__":
    sys.exit(main())
