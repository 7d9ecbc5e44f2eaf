"""Issue 23, item 3: a parse pool a class can share.

A zip has a wall budget, a single file waits at most CGCNN_PARSE_WAIT_SECONDS for a worker (then: the server
is busy), failures are remembered by content so a rerun does not parse again, the CIF budget grows with the
file, and workers die with the server.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import zipfile

import pytest
from conftest import CIF_DIR

from cgcnn.data.parse_pool import ParsePool, parse_budget
from cgcnn.errors import CrystalInputError

GOOD = (CIF_DIR / "mp-841.cif").read_bytes()


def p1_cif(n: int, seed: int = 0) -> str:
    """A valid P1 CIF of ``n`` silicon sites (pymatgen parses it in time that grows with ``n``)."""
    import numpy as np

    a = (n * 20.0) ** (1 / 3)
    coords = np.random.default_rng(seed).random((n, 3))
    rows = [f"Si{k} Si {x:.5f} {y:.5f} {z:.5f} 1" for k, (x, y, z) in enumerate(coords)]
    head = ["data_big", "_symmetry_space_group_name_H-M 'P 1'", *(f"_cell_length_{c} {a:.4f}" for c in "abc")]
    head += ["_cell_angle_alpha 90", "_cell_angle_beta 90", "_cell_angle_gamma 90", "loop_",
             "_symmetry_equiv_pos_as_xyz", "'x, y, z'", "loop_", "_atom_site_label", "_atom_site_type_symbol",
             "_atom_site_fract_x", "_atom_site_fract_y", "_atom_site_fract_z", "_atom_site_occupancy"]  # fmt: skip
    return "\n".join(head + rows) + "\n"


def slow_zip(n_files: int = 12, sites: int = 1500) -> bytes:
    """A CGCNN-folder zip of slow (large P1) CIFs: seconds of parsing per member."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("id_prop.csv", "".join(f"big{k},{k / 10}\n" for k in range(n_files)))
        for k in range(n_files):
            archive.writestr(f"big{k}.cif", p1_cif(sites, seed=k))
    return buffer.getvalue()


def test_the_cif_budget_grows_with_the_file(monkeypatch):
    monkeypatch.setenv("CGCNN_PARSE_SECONDS", "5")
    assert parse_budget(b"x\n" * 10) == pytest.approx(5.05)
    big = p1_cif(4096).encode()  # the 4,096-atom P1 cell: a fair parse on a loaded box
    assert 25 < parse_budget(big) < 27


def test_a_failure_is_remembered_by_content_and_not_parsed_again(monkeypatch):
    pool = ParsePool(workers=1)
    try:
        stall = p1_cif(2000).encode()
        with pytest.raises(CrystalInputError, match=r"^stall\.cif: parsing took longer than 0\.2 s"):
            pool.parse("stall.cif", stall, seconds=0.2)
        assert pool.killed == 1
        for _ in range(3):  # a page rerun: the same answer at once, no worker started or killed
            with pytest.raises(CrystalInputError, match=r"^stall\.cif: parsing took longer"):
                pool.parse("stall.cif", stall, seconds=0.2)
        assert pool.killed == 1
        bad = b"data_x\n_cell_length_a nonsense\n"
        for _ in range(2):
            with pytest.raises(CrystalInputError, match=r"^bad\.cif"):
                pool.parse("bad.cif", bad)
        assert len(pool.parse("good.cif", GOOD)) == 8
    finally:
        pool.close()


def test_a_busy_pool_says_so_instead_of_queueing_and_it_is_not_remembered(monkeypatch):
    monkeypatch.setenv("CGCNN_PARSE_WAIT_SECONDS", "0.5")
    pool = ParsePool(workers=1)
    try:
        assert len(pool.parse("warm.cif", GOOD)) == 8  # the one worker started
        slow = p1_cif(4000).encode()  # seconds of parsing, far past the 0.5 s wait
        holder = threading.Thread(target=lambda: pool.parse("slow.cif", slow, seconds=60))
        holder.start()
        time.sleep(0.3)
        with pytest.raises(CrystalInputError, match=r"^good\.cif: the server is busy .* try again in a minute"):
            pool.parse("good.cif", GOOD)
        holder.join(120)
        assert len(pool.parse("good.cif", GOOD)) == 8  # busy was the server's state, not the file's
    finally:
        pool.close()


def test_a_zip_has_a_wall_budget_and_its_failure_is_remembered(tmp_path, monkeypatch):
    from cgcnn.data.datasets import DatasetError

    monkeypatch.setenv("CGCNN_ZIP_PARSE_SECONDS", "1")
    path = tmp_path / "slow.zip"
    path.write_bytes(slow_zip())
    pool = ParsePool(workers=2)
    try:
        with pytest.raises(DatasetError, match=r"slow\.zip: reading the zip took longer than 1 s .*CGCNN_ZIP_PARSE"):
            pool.read_zip(path, seconds_per_file=30)
        assert pool.killed == 1
        with pytest.raises(DatasetError, match="took longer than 1 s"):
            pool.read_zip(path, seconds_per_file=30)
        assert pool.killed == 1  # remembered: not read again
    finally:
        pool.close()


SERVER = textwrap.dedent(
    """
    import sys
    from cgcnn.data.parse_pool import ParsePool
    pool = ParsePool(workers=1)
    print("parsing", flush=True)
    pool.read_zip(sys.argv[1], seconds_per_file=300, seconds=300)
    """
)


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("attempt", range(2))
def test_workers_die_with_the_server_killed_mid_zip(tmp_path, attempt):
    path = tmp_path / "slow.zip"
    path.write_bytes(slow_zip())
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "parsing"
        deadline = time.monotonic() + 120
        workers: list[int] = []
        while not workers and time.monotonic() < deadline:
            workers = [p for p in children(server.pid) if alive(p)]
            time.sleep(0.2)
        assert workers, "no parse worker started"
        time.sleep(2.0)  # the worker is inside the zip now (it has imported pymatgen and started reading)
    finally:
        os.kill(server.pid, signal.SIGKILL)
        server.wait(10)
    deadline = time.monotonic() + 5.0
    while any(alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in workers if alive(p)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, "parse workers outlived the server"
