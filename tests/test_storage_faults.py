"""Issue 13: a read-only home, a full disk and a locked store give one clear message; nothing is left half done.

The read-only and full-disk cases use a real small tmpfs when this process may mount one (root in a
container); the full disk during a checkpoint write is simulated (``ENOSPC`` from ``torch.save``).
"""

from __future__ import annotations

import errno
import sqlite3
import subprocess

import pytest

from cgcnn.runs.store import RunStore
from cgcnn.storage import StorageError


@pytest.fixture
def tmpfs(tmp_path):
    """A 1 MB tmpfs at tmp_path/mnt (skipped where mounting is not allowed)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def integrity_ok(path) -> bool:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_read_only_home_gives_one_line_per_command(tmpfs, monkeypatch, capsys):
    from cgcnn.cli.main import main

    monkeypatch.setenv("CGCNN_HOME", str(tmpfs))
    run = RunStore().create_run({"pretrained": "band-gap"}, owner="alice", status="done")
    assert subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)]).returncode == 0
    assert main(["runs"]) == 2  # even listing needs the write lock (it reaps stale runs first)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "read-only" in err
    assert main(["runs", "delete", run]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "read-only" in err and "Traceback" not in err
    assert main(["finetune", "--queue", "--epochs", "1"]) == 2
    assert "read-only" in capsys.readouterr().err


def test_full_disk_store_write_is_one_message_and_the_store_stays_sound(tmpfs, monkeypatch):
    monkeypatch.setenv("CGCNN_HOME", str(tmpfs))
    store = RunStore()
    store.create_run({"pretrained": "band-gap"}, owner="alice")
    filler = tmpfs / "filler"
    with open(filler, "wb", buffering=0) as f:  # fill the disk to the last block
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    with pytest.raises(StorageError, match="disk is full"):
        for _ in range(200):  # a few inserts fit in free pages; then SQLite needs a new one
            store.create_run({"pretrained": "band-gap", "pad": "x" * 2000}, owner="alice")
    filler.unlink()
    assert integrity_ok(store.path)
    assert not list(tmpfs.rglob("*.tmp*"))


def test_full_disk_during_checkpoint_fails_the_run_with_its_cause(tmp_path, monkeypatch):
    import torch

    from cgcnn.training.finetune import FinetuneSpec, run_finetune

    monkeypatch.setenv("CGCNN_HOME", str(tmp_path))

    def full_disk(obj, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(torch, "save", full_disk)
    store = RunStore()
    spec = FinetuneSpec(pretrained="band-gap", freeze=3, n_train=10, n_val=5, n_test=5, hyperparams={"epochs": 1})
    with pytest.raises(StorageError, match=r"saving the checkpoint .*disk is full"):
        run_finetune(spec, store=store, owner="alice")
    [record] = store.list_runs()
    assert record.status == "failed" and "disk is full" in record.error
    assert not list(tmp_path.rglob("*.tmp"))
    assert integrity_ok(store.path)


def test_locked_store_gives_one_message(tmp_path, monkeypatch):
    import cgcnn.runs.database as store_module

    store = RunStore(tmp_path / "runs.sqlite")
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.05)
    holder = sqlite3.connect(store.path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StorageError, match="locked by another program"):
            store.create_run({"pretrained": "band-gap"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.create_run({"pretrained": "band-gap"})
    assert integrity_ok(store.path)
