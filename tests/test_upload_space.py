"""Issue 23, item 6: disk for uploads. Quotas per person and in all, unused uploads removed, hidden zip members
counted against the caps, and free space checked before anything is written."""

from __future__ import annotations

import os
import shutil
import time

import pytest
from test_zip_caps import IDS, folder_zip

from cgcnn.app import launch, upload_space
from cgcnn.data.datasets import DatasetError
from cgcnn.data.folders import read_zip
from cgcnn.errors import CGCNNError
from cgcnn.runs.store import RunStore
from cgcnn.storage import StorageError


def test_hidden_members_count_against_the_caps(monkeypatch):
    monkeypatch.setenv("CGCNN_ZIP_MAX_TOTAL_MB", "1")
    padded = folder_zip({".padding/.junk": os.urandom(1_200_000), "__MACOSX/._x": b"x"}, stored=True)
    with pytest.raises(DatasetError, match="CGCNN_ZIP_MAX_TOTAL_MB"):
        read_zip(padded)
    monkeypatch.setenv("CGCNN_ZIP_MAX_MEMBERS", str(len(IDS) + 1))
    monkeypatch.setenv("CGCNN_ZIP_MAX_TOTAL_MB", "100")
    with pytest.raises(DatasetError, match="CGCNN_ZIP_MAX_MEMBERS"):
        read_zip(folder_zip({".hidden1": b"x", ".hidden2": b"y"}))


def test_the_predict_pages_zips_count_every_member_too(monkeypatch):
    from cgcnn.app.uploads import expand_uploads

    monkeypatch.setenv("CGCNN_ZIP_MAX_TOTAL_MB", "1")
    padded = folder_zip({".junk": os.urandom(1_200_000)}, stored=True)
    files, errors = expand_uploads([("padded.zip", padded)])
    assert files == [] and len(errors) == 1 and "CGCNN_ZIP_MAX_TOTAL_MB" in errors[0]


def test_per_person_and_total_quotas_refuse_before_writing(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs.sqlite")
    first = folder_zip({"pad.txt": os.urandom(300_000)}, stored=True)
    size = len(first)
    monkeypatch.setenv("CGCNN_UPLOAD_MB_PER_PERSON", str(1.5 * size / 1024**2))
    monkeypatch.setenv("CGCNN_UPLOADS_TOTAL_MB", str(2.5 * size / 1024**2))
    path, _ = launch.save_upload(store, first, "one.zip", owner="alice")
    assert launch.save_upload(store, first, "again.zip", owner="ALICE")[0] == path  # the same content: no new space
    second = folder_zip({"pad.txt": os.urandom(300_000)}, stored=True)
    with pytest.raises(upload_space.UploadQuotaExceeded, match=r"two\.zip: your uploads .*CGCNN_UPLOAD_MB_PER_PERSON"):
        launch.save_upload(store, second, "two.zip", owner="al\u0456ce")  # a look-alike is the same person
    launch.save_upload(store, second, "bobs.zip", owner="bob")
    third = folder_zip({"pad.txt": os.urandom(300_000)}, stored=True)
    with pytest.raises(upload_space.UploadQuotaExceeded, match=r"the class's uploads .*CGCNN_UPLOADS_TOTAL_MB"):
        launch.save_upload(store, third, "carols.zip", owner="carol")
    assert len(list((store.home / "uploads").glob("*.zip"))) == 2


def test_free_space_is_checked_before_an_upload_is_written(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs.sqlite")
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=10 * 1024**2))
    with pytest.raises(StorageError, match=r"saving mine\.zip: only 10 MB free .*CGCNN_MIN_FREE_MB"):
        launch.save_upload(store, folder_zip(), "mine.zip", owner="dana")
    assert not list((store.home / "uploads").glob("*.zip"))


def test_uploads_no_active_run_uses_are_removed_after_the_keep_period(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs.sqlite")
    used, _ = launch.save_upload(store, folder_zip(), "used.zip", owner="erin")
    unused, _ = launch.save_upload(store, folder_zip({"x.txt": b"x"}), "unused.zip", owner="erin")
    store.create_run({"pretrained": "band-gap", "data": str(used)}, owner="erin", status="queued")
    old = time.time() - 8 * 86400
    for p in (*used.parent.glob(used.name + "*"), *unused.parent.glob(unused.name + "*")):
        os.utime(p, (old, old))
    assert upload_space.remove_unused(store) == [unused.name]  # CGCNN_UPLOAD_KEEP_DAYS: 7
    assert used.is_file() and not list(unused.parent.glob(unused.name + "*"))
    monkeypatch.setenv("CGCNN_UPLOAD_KEEP_DAYS", "0")  # 0: keep everything
    assert upload_space.remove_unused(store) == []
    with pytest.raises(CGCNNError):
        launch.save_upload(store, b"not a zip", "bad.zip", owner="erin")
