"""Clicks on run lists, made safe against a class that keeps changing: stable picks and what a cancel did.

A run picked in a list may be cancelled, finished or deleted by someone else before the next click. Streamlit
sends a multiselect's choice back as the *label* the browser showed, so a label that contains something that can
change (the status) no longer matches any option at the next run and the page broke. Picks are therefore keyed
by run id with a label built only from what never changes for a run (id, owner, model, freeze depth, target),
and any id that is gone by the time of the click is reported, not raised.

A cancel's toast says what happened to each run, in words ("cancelled run X", "run X had already finished"),
because the store's answer is the status afterwards, and "run X: running" read like the cancel had failed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from cgcnn.app.plain import text
from cgcnn.errors import CGCNNError
from cgcnn.runs.store import RunNotFound, RunRecord, RunStore
from cgcnn.training.transfer import is_scratch


def pick_label(record: RunRecord) -> str:
    """``a1b2c3d4 · bob · band-gap k2 · band_gap``: what a picker shows; nothing in it changes during a run."""
    model = "scratch" if is_scratch(record.pretrained) else str(record.pretrained)
    return text(f"{record.id} · {record.owner or '—'} · {model} k{record.freeze} · {record.target}")


def pick_labels(records: Iterable[RunRecord]) -> dict[str, str]:
    """Run id → :func:`pick_label`, for a picker whose options are the ids."""
    return {r.id: pick_label(r) for r in records}


def label_of(labels: dict[str, str]) -> Callable[[object], str]:
    """A picker's ``format_func``: the label of an id, or the value itself as text for anything unknown.

    Never fails and never returns None: Streamlit formats stale values too (a run deleted since the last run).
    """
    return lambda value: labels.get(value, str(value)) if isinstance(value, str) else str(value)


def known_ids(chosen: Iterable[object], labels: dict[str, str]) -> list[str]:
    """The picked values that are still run ids of the list (stale labels and deleted runs dropped)."""
    return [v for v in chosen if isinstance(v, str) and v in labels]


def cancel_message(run_id: str, before: str | None, after: str | None) -> str:
    """One sentence on what a cancel did to a run, from its status before and after (None: not found)."""
    if before is None or after is None:
        return f"run {run_id} no longer exists (deleted)"
    if before == "queued" and after == "cancelled":
        return f"cancelled run {run_id} (it was queued)"
    if after == "cancelled" and before != "cancelled":
        return f"cancelled run {run_id}"
    if before == "running" and after == "running":
        return f"asked run {run_id} to stop: it ends after its current epoch"
    if before == "queued" and after == "queued":
        return f"run {run_id} is waited for by others: hidden from its owner, it stays queued for them"
    return {
        "done": f"run {run_id} had already finished: nothing to cancel",
        "failed": f"run {run_id} had already failed: nothing to cancel",
        "cancelled": f"run {run_id} was already cancelled",
    }.get(after, f"run {run_id} is {after}")


def cancel_each(store: RunStore, run_ids: Iterable[str], cancel: Callable[[str], str]) -> list[str]:
    """Cancel runs one by one with ``cancel`` (id → status afterwards); one message per run, never an exception.

    A run deleted meanwhile, or one the store refuses, gets a message instead of stopping the others.
    """
    messages = []
    for run_id in run_ids:
        try:
            before = store.get(run_id).status
        except RunNotFound:
            messages.append(cancel_message(run_id, None, None))
            continue
        try:
            after = cancel(run_id)
        except RunNotFound:
            after = None
        except CGCNNError as exc:
            messages.append(f"run {run_id}: not cancelled: {exc}")
            continue
        messages.append(cancel_message(run_id, before, after))
    return messages


def delete_each(store: RunStore, run_ids: Iterable[str], delete: Callable[[str], str]) -> list[str]:
    """Delete runs one by one with ``delete`` (id → 'deleted' or why not); one message per run, never an exception."""
    messages = []
    for run_id in run_ids:
        try:
            store.get(run_id)
            outcome = delete(run_id)
        except RunNotFound:
            messages.append(f"run {run_id} no longer exists (deleted)")
            continue
        messages.append(f"deleted run {run_id}" if outcome == "deleted" else f"run {run_id} not deleted: {outcome}")
    return messages
