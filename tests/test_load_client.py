"""The load bench's websocket client against the real app: 2 sessions queue a tiny fine-tune and follow it.

Widget ids and message types are Streamlit internals; this test makes a Streamlit upgrade that changes them fail
here, loudly, rather than leave ``bench/load_app.py`` measuring nothing.
"""

from __future__ import annotations

import pytest

from bench.load_app import Plan, clean_json, percentile, run_bench


def test_percentile_and_json_cleaning():
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0] * 19 + [9.0], 95) == 1.0
    assert percentile([1.0] * 18 + [9.0, 9.0], 95) == 9.0
    assert clean_json({"a": float("nan"), "b": [1.0, float("inf")]}) == {"a": None, "b": [1.0, None]}


@pytest.mark.slow
def test_two_sessions_queue_share_and_follow_a_tiny_finetune(tmp_path):
    plan = Plan(sizes=(40, 20, 20), epochs=2, distinct=1, page_every_s=4.0)
    report, logs = run_bench(2, workers=1, plan=plan, max_seconds=180, home=tmp_path)  # ~30 s; room for a busy CI
    assert [e for log in logs for e in log.errors] == [], report
    assert all(log.launched for log in logs), [log.launched for log in logs]
    assert report["jobs_done"] == 2 and report["jobs_failed"] == 0 and report["jobs_lost"] == 0, report
    assert report["reused"] == 1 and report["computations"] == 1  # the same spec, computed once
    assert "Fine_tune" in report["pages"] and report["reruns"] >= 8
    assert 0 < report["rerun_p50_s"] <= report["rerun_p95_s"] <= report["rerun_max_s"]
