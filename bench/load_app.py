"""Load bench of the app: N simulated students, each a Streamlit session over the app's own websocket protocol.

Starts ``streamlit run app.py`` on 127.0.0.1 (a free port, a temporary ``CGCNN_HOME``, ``--workers`` worker
processes of the app's own job runner), then drives N sessions at once (``bench/st_client.py``: the
``BackMsg``/``ForwardMsg`` protobufs a browser tab exchanges with the server). Each session:

1. opens the app and types its display name in the sidebar;
2. opens the Fine-tune page and queues a small fine-tune through its form (``--sizes``, ``--epochs``; the seed
   is ``k % --distinct``, so sessions with the same seed ask for the same computation and share it);
3. follows its run: the page's polling fragment reruns every few seconds, as in a browser tab;
4. opens another page every ``--page-every`` seconds (and comes back to Fine-tune every other time),

until every queued run has ended (or ``--max-seconds``). What is measured is what a student feels: the time
from a rerun request to its ``script_finished`` message, per page (fragment reruns apart). Jobs: done, failed
(or cancelled), lost (a launch that left no run, or a run still unfinished at the end), and how many entries
were answered by reuse. Only 127.0.0.1 is contacted.

    python bench/load_app.py --sessions 10 [--workers 2] [--ramp SECONDS] [--json]
    python bench/load_app.py --lesson [NAME_OR_FILE] --sessions 30 --ramp 10 --json

``--lesson`` (default lesson: the shipped ``does-freezing-help``) makes the sessions a class following a lesson on
the Class page while its grid trains instead (``bench/load_lesson.py``); jobs are then the grid's cells, and the
report adds ``cells``, ``lesson`` and when the teacher moved (``experiment_at_s``, ``grid_train_s``, ...).

With ``--json`` the last line is one compact JSON object (NaN as null) with the keys ``sessions``,
``rerun_p50_s``, ``rerun_p95_s``, ``rerun_max_s``, ``jobs_done``, ``jobs_failed``, ``jobs_lost``, ``reused``
and the per-page figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

if not __package__:  # run as `python bench/NAME.py`: import from the repository root, as `python -m bench.NAME` does
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.st_client import RunResult, StreamlitSession

#: Pages a session visits between looks at its run (url paths of ``st.navigation``).
BROWSE = ("", "Model_zoo", "Compare_runs", "Predict")
FINE_TUNE = "Fine_tune"


@dataclass
class Plan:
    """What every session does."""

    sizes: tuple[int, int, int] = (40, 20, 20)
    epochs: int = 2
    distinct: int = 3
    page_every_s: float = 10.0
    ramp_s: float = 0.0  # sessions arrive spread evenly over this many seconds (0: all at the same instant)
    model: str = "formation-energy-per-atom"
    freeze: int = 2


@dataclass
class SessionLog:
    """What one session saw."""

    name: str
    runs: list[RunResult] = field(default_factory=list)
    launched: str = ""  # the page's answer to "Queue runs"
    errors: list[str] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


async def student(
    k: int, n_sessions: int, url: str, plan: Plan, all_done: asyncio.Event, deadline: float
) -> SessionLog:
    """One simulated student (see the module docstring)."""
    log = SessionLog(f"student-{k:02d}")
    await asyncio.sleep(plan.ramp_s * k / max(1, n_sessions - 1))  # arrivals spread over --ramp seconds
    session = StreamlitSession(url)
    await session.connect()
    try:

        async def record(result: RunResult) -> RunResult:
            log.runs.append(result)
            log.errors.extend(f"{result.page}: {e}" for e in result.errors)
            return result

        first = await record(await session.rerun())
        first.page += " (first load)"
        name = session.widget(key="user_input")
        session.set_value(name, log.name)
        session.keep_across_pages(name)
        await record(await session.rerun())

        await record(await session.open(FINE_TUNE))
        fields = {
            "ft_models": [plan.model], "ft_freezes": [plan.freeze], "ft_train": plan.sizes[0],
            "ft_val": plan.sizes[1], "ft_test": plan.sizes[2], "ft_epochs": plan.epochs,
            "ft_seeds": [k % max(1, plan.distinct)],
        }  # fmt: skip
        for key, value in fields.items():
            session.set_value(session.widget(key=key), value)
        submit = session.widget(label="Queue runs", kind="button")
        result = await record(await session.click(submit))
        log.launched = next((t for t in result.texts if "Queued" in t or "answered" in t or "queued" in t), "")

        visits = 0
        last_switch = time.monotonic()
        next_poll = {fid: time.monotonic() + s for fid, s in session.fragments.items()}
        while not all_done.is_set() and time.monotonic() < deadline:
            now = time.monotonic()
            if now - last_switch >= plan.page_every_s:
                visits += 1
                target = FINE_TUNE if visits % 2 == 0 else BROWSE[(k + visits // 2) % len(BROWSE)]
                await record(await session.open(target))
                last_switch = time.monotonic()
                next_poll = {fid: last_switch + s for fid, s in session.fragments.items()}
                continue
            due = [fid for fid, at in next_poll.items() if at <= now]
            if due:
                fid = due[0]
                await record(await session.rerun(fragment_id=fid))
                # A fragment may end its polling with a full rerun (st.rerun), which registers the page's fragments
                # anew: poll only those the server registers now (it silently drops a request for a gone one).
                next_poll.pop(fid, None)
                later = time.monotonic()
                next_poll = {f: next_poll.get(f, later + s) for f, s in session.fragments.items()}
                continue
            await asyncio.sleep(0.1)
    except Exception as exc:  # a broken session is a result of the bench, not a crash of it
        log.errors.append(f"session failed: {type(exc).__name__}: {exc}")
    finally:
        await session.close()
    return log


async def watch_jobs(store, names: list[str], all_done: asyncio.Event, deadline: float, grace_s: float) -> None:
    """Set ``all_done`` once every session's run has ended (or none can appear any more)."""
    from cgcnn.runs.store import FINAL_STATUSES

    started = time.monotonic()
    while time.monotonic() < deadline:
        entries = [r for name in names for r in store.list_runs(owner=name)]
        launched = {r.owner for r in entries}
        if (
            entries
            and all(r.status in FINAL_STATUSES for r in entries)
            and (len(launched) == len(names) or time.monotonic() - started > grace_s)
        ):
            break
        await asyncio.sleep(1.0)
    all_done.set()


async def drive(url: str, store, n: int, plan: Plan, max_seconds: float) -> list[SessionLog]:
    all_done = asyncio.Event()
    deadline = time.monotonic() + max_seconds
    names = [f"student-{k:02d}" for k in range(n)]
    watcher = asyncio.create_task(watch_jobs(store, names, all_done, deadline, grace_s=120.0))
    logs = await asyncio.gather(*(student(k, n, url, plan, all_done, deadline) for k in range(n)))
    all_done.set()
    await watcher
    return list(logs)


def summarise(logs: list[SessionLog], store, n: int) -> dict:
    """The report: rerun percentiles overall and per page, jobs done/failed/lost, reuse."""
    runs = [r for log in logs for r in log.runs]
    seconds = [r.seconds for r in runs]
    pages: dict[str, list[float]] = {}
    for r in runs:
        pages.setdefault(r.page + (" (fragment)" if r.fragment else ""), []).append(r.seconds)
    entries = [e for log in logs for e in store.list_runs(owner=log.name)]
    done = sum(e.status == "done" for e in entries)
    failed = sum(e.status in ("failed", "cancelled") for e in entries)
    unfinished = sum(e.status in ("queued", "running") for e in entries)
    no_run = sum(1 for log in logs if not store.list_runs(owner=log.name))
    computed = {e.source_run_id or e.id for e in entries}
    return {
        "sessions": n,
        "rerun_p50_s": round(percentile(seconds, 50), 3),
        "rerun_p95_s": round(percentile(seconds, 95), 3),
        "rerun_max_s": round(max(seconds), 3) if seconds else math.nan,
        "reruns": len(seconds),
        "jobs_done": done,
        "jobs_failed": failed,
        "jobs_lost": unfinished + no_run,
        "reused": sum(e.source_run_id is not None for e in entries),
        "computations": len(computed),
        "page_errors": sum(len(log.errors) for log in logs),
        "pages": {
            page: {
                "n": len(v),
                "p50_s": round(percentile(v, 50), 3),
                "p95_s": round(percentile(v, 95), 3),
                "max_s": round(max(v), 3),
            }
            for page, v in sorted(pages.items())
        },
    }


def run_bench(
    sessions: int,
    workers: int = 2,
    plan: Plan | None = None,
    max_seconds: float = 600.0,
    home: Path | None = None,
    lesson: str | None = None,
) -> tuple[dict, list[SessionLog]]:
    """Start the app, drive ``sessions`` students through it, and return (report, session logs).

    With ``lesson`` (a shipped lesson's name or a lesson file), the students follow that lesson instead.
    """
    from cgcnn.runs.store import RunStore
    from devtools.app_server import AppServer

    plan = plan or Plan()
    with tempfile.TemporaryDirectory(prefix="cgcnn_load_") as tmp:
        home = Path(home or tmp)
        old = os.environ.get("CGCNN_HOME")
        os.environ["CGCNN_HOME"] = str(home)  # this process reads the bench's store
        try:
            store = RunStore(home / "runs.sqlite")
            started = time.monotonic()
            with AppServer(home, env={"CGCNN_WORKERS": str(workers)}) as app:
                startup = time.monotonic() - started
                rss_before = rss_mb(app.proc.pid)
                t0 = time.monotonic()
                if lesson is None:
                    logs = asyncio.run(drive(app.url, store, sessions, plan, max_seconds))
                else:
                    from bench.load_lesson import drive_lesson, lesson_jobs, read_lesson

                    chosen = read_lesson(lesson)
                    book, session_id, moments, logs = asyncio.run(
                        drive_lesson(app.url, store, sessions, plan, chosen, max_seconds)
                    )
                wall = time.monotonic() - t0
                rss_after = rss_mb(app.proc.pid)
            report = summarise(logs, store, sessions)
            if lesson is not None:
                report.update(lesson_jobs(book, session_id, chosen), lesson=chosen.name, **moments)
        finally:
            if old is None:
                os.environ.pop("CGCNN_HOME", None)
            else:
                os.environ["CGCNN_HOME"] = old
    report.update(
        workers=workers,
        startup_s=round(startup, 1),
        wall_s=round(wall, 1),
        server_rss_mb_before=rss_before,
        server_rss_mb_after=rss_after,
    )
    return report, logs


def rss_mb(pid: int) -> float:
    """Resident memory of the app's server process in MB (NaN where /proc is not there): does memory build up?"""
    try:
        with open(f"/proc/{pid}/status") as status:
            kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    except (OSError, StopIteration, ValueError):
        return math.nan
    return round(kb / 1024, 1)


def clean_json(value):
    """NaN and infinities as None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_json(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    """Run the bench; prints a report (and one JSON line last with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the app's job runner")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="stop after this long, whatever is left")
    parser.add_argument("--sizes", type=int, nargs=3, default=(40, 20, 20), metavar=("TRAIN", "VAL", "TEST"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--distinct", type=int, default=3, help="distinct specs among the sessions (seeds)")
    parser.add_argument("--page-every", type=float, default=10.0, help="seconds between page changes")
    parser.add_argument(
        "--ramp", type=float, default=0.0, help="seconds over which the sessions arrive (default 0: all at once)"
    )
    parser.add_argument("--json", action="store_true", help="print the results as one JSON line, last")
    parser.add_argument(
        "--lesson", nargs="?", const="does-freezing-help", default=None, metavar="NAME_OR_FILE",
        help="follow a lesson on the Class page while its grid trains (default lesson: does-freezing-help)",
    )  # fmt: skip
    args = parser.parse_args(argv)

    plan = Plan(tuple(args.sizes), args.epochs, args.distinct, args.page_every, args.ramp)
    report, logs = run_bench(args.sessions, args.workers, plan, args.max_seconds, lesson=args.lesson)
    if args.lesson:
        print(
            f"lesson {report['lesson']}: {report['cells']} cells; experiment at {report.get('experiment_at_s')} s, "
            f"grid trained in {report.get('grid_train_s')} s, revealed at {report.get('revealed_at_s')} s"
        )
    print(
        f"{report['sessions']} sessions, {report['workers']} workers: app up in {report['startup_s']} s, "
        f"wall {report['wall_s']} s, {report['reruns']} reruns; server memory {report['server_rss_mb_before']} MB "
        f"-> {report['server_rss_mb_after']} MB"
    )
    print(
        f"  rerun p50 {report['rerun_p50_s']} s, p95 {report['rerun_p95_s']} s, max {report['rerun_max_s']} s; "
        f"jobs done {report['jobs_done']}, failed {report['jobs_failed']}, lost {report['jobs_lost']}, "
        f"reused {report['reused']} ({report['computations']} computations); page errors {report['page_errors']}"
    )
    for page, s in report["pages"].items():
        print(f"  {page:28s} n={s['n']:4d}  p50 {s['p50_s']:7.3f} s  p95 {s['p95_s']:7.3f}  max {s['max_s']:7.3f}")
    for log in logs:
        for error in log.errors[:3]:
            print(f"  {log.name}: {error}")
    if args.json:
        print(json.dumps(clean_json(report), separators=(",", ":"), allow_nan=False))
    ok = report["jobs_lost"] == 0 and report["jobs_failed"] == 0 and report["page_errors"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
