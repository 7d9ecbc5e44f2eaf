"""Issue 13: uploaded zips are capped (members, sizes, ratio, label lines), read in bounded chunks, parsed once."""

from __future__ import annotations

import io
import zipfile

import pytest
from conftest import CIF_DIR

from cgcnn.data.datasets import DatasetError
from cgcnn.data.folders import read_zip, read_zip_once
from cgcnn.errors import CGCNNError

IDS = sorted(p.stem for p in CIF_DIR.glob("*.cif"))[:6]


def folder_zip(extra: dict[str, bytes] | None = None, labels: str | None = None, stored: bool = False) -> bytes:
    buf = io.BytesIO()
    method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buf, "w", method) as zf:
        zf.writestr("id_prop.csv", labels if labels is not None else "".join(f"{i},{k}.5\n" for k, i in enumerate(IDS)))
        for cid in IDS:
            zf.writestr(f"{cid}.cif", (CIF_DIR / f"{cid}.cif").read_bytes())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_a_small_zip_within_every_cap_is_read():
    assert read_zip(folder_zip()).ids.tolist() == IDS


def test_member_count_cap(monkeypatch):
    monkeypatch.setenv("CGCNN_ZIP_MAX_MEMBERS", "20")
    data = folder_zip({f"x{k}.txt": b"x" for k in range(20)})
    with pytest.raises(DatasetError, match=r"holds 27 files; the limit is 20 \(CGCNN_ZIP_MAX_MEMBERS\)"):
        read_zip(data)


def test_total_and_member_size_caps(monkeypatch):
    noise = bytes(range(256)) * 400  # 100 KB that does not compress much
    monkeypatch.setenv("CGCNN_ZIP_MAX_TOTAL_MB", "0.1")
    with pytest.raises(DatasetError, match="CGCNN_ZIP_MAX_TOTAL_MB"):
        read_zip(folder_zip({"big.bin": noise}))
    monkeypatch.setenv("CGCNN_ZIP_MAX_TOTAL_MB", "500")
    monkeypatch.setenv("CGCNN_ZIP_MAX_MEMBER_MB", "0.05")
    with pytest.raises(DatasetError, match=r"big\.bin unpacks to 0\.1 MB; the limit per file"):
        read_zip(folder_zip({"big.bin": noise}))


def test_compression_ratio_cap():
    with pytest.raises(DatasetError, match=r"bomb\.cif is compressed .* to 1.*CGCNN_ZIP_MAX_RATIO"):
        read_zip(folder_zip({"bomb.cif": b"\n" * 2_000_000}))


def test_label_line_cap(monkeypatch):
    monkeypatch.setenv("CGCNN_ZIP_MAX_LABEL_LINES", "10")
    labels = "".join(f"id-{k},{k}\n" for k in range(20))
    with pytest.raises(DatasetError, match=r"id_prop\.csv has 21 lines; the limit is 10"):
        read_zip(folder_zip(labels=labels))


def test_bad_crc_member_is_a_clear_error_also_from_save_upload(tmp_path):
    from cgcnn.app.launch import save_upload
    from cgcnn.runs.store import RunStore

    data = bytearray(folder_zip(stored=True))
    cif = (CIF_DIR / f"{IDS[0]}.cif").read_bytes()
    at = bytes(data).index(cif[:200])
    data[at + 100] ^= 0xFF  # damage the stored member's content: the CRC no longer matches
    with pytest.raises(DatasetError, match=rf"{IDS[0]}\.cif is damaged \(bad CRC\)"):
        read_zip(bytes(data))
    with pytest.raises(CGCNNError, match=rf"data\.zip: {IDS[0]}\.cif is damaged"):
        save_upload(RunStore(tmp_path / "runs.sqlite"), bytes(data), "data.zip")
    assert not list((tmp_path / "uploads").glob("*.zip"))


def test_an_upload_is_parsed_once_and_reused(tmp_path, monkeypatch):
    import cgcnn.data.folders as folders
    from cgcnn.app.launch import save_upload
    from cgcnn.runs.store import RunStore
    from cgcnn.training.finetune import load_data

    store = RunStore(tmp_path / "runs.sqlite")
    path, first = save_upload(store, folder_zip(), "data.zip")
    assert path.with_name(path.name + ".dataset.npz").is_file()
    folders._read_zip_once.cache_clear()  # as in a new process (a job worker)

    def no_parse(*args, **kwargs):
        raise AssertionError("parsed again")

    monkeypatch.setattr(folders, "read_zip", no_parse)
    again = read_zip_once(path)
    assert again.content_hash == first.content_hash and again.ids.tolist() == IDS
    assert load_data(str(path)).content_hash == first.content_hash
    assert save_upload(store, folder_zip(), "data.zip")[1].content_hash == first.content_hash  # a rerun


def test_a_stalled_cif_in_a_zip_is_rejected_by_name_and_the_rest_read(tmp_path):
    from test_untrusted_files import STALL_SITES, p1_cif

    from cgcnn.data.parse_pool import ParsePool

    path = tmp_path / "slow.zip"
    labels = "".join(f"{i},{k}.5\n" for k, i in enumerate(IDS)) + "slow,1.0\n"
    path.write_bytes(folder_zip({"slow.cif": p1_cif(STALL_SITES).encode()}, labels=labels))
    pool = ParsePool(workers=1)
    try:
        assert pool.read_zip(path, seconds_per_file=1.0) == len(IDS)
    finally:
        pool.close()
    dataset = read_zip_once(path)
    assert dataset.ids.tolist() == IDS
    assert "parsing took longer than 1 s" in dict(dataset.rejected)["slow"]
