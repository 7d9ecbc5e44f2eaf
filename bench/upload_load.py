"""Hostile uploads do not stall the class: one student uploads the worst files, another's page stays responsive.

Starts the real app (no workers), then at once:

- student A, in headless Chromium, uploads to the Predict page the worst files the app accepts or must refuse:
  a P1 CIF whose parse outlasts the per-file time limit, a valid CIF followed by 200,000 blank lines (pymatgen's
  parse is quadratic in them), a 0.05 Å cell, a 10^6 Å cell, and a zip of 400 CIFs;
- student B, over Streamlit's websocket protocol (``bench/st_client.py``), reruns the Model zoo page over and
  over, timing each rerun (request → ``script_finished``).

Also samples the server process's resident memory (``/proc/PID/status``) throughout. The baseline is B's rerun
time before A starts, in the same run. Targets (issue: hostile inputs): B's reruns stay under 2 s and the
server's RSS grows by less than 500 MB. ``--json`` prints one JSON line last.

    python bench/upload_load.py [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

if not __package__:  # run as `python bench/NAME.py`: import from the repository root, as `python -m bench.NAME` does
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.st_client import StreamlitSession
from devtools.app_server import AppServer

ROOT = Path(__file__).resolve().parent.parent

CHROMIUM = "/usr/bin/chromium"
NACL = """data_NaCl
_symmetry_space_group_name_H-M 'P 1'
_cell_length_a 5.69
_cell_length_b 5.69
_cell_length_c 5.69
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_equiv_pos_as_xyz 'x, y, z'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Na1 Na 0 0 0 1
Na2 Na 0.5 0.5 0 1
Na3 Na 0.5 0 0.5 1
Na4 Na 0 0.5 0.5 1
Cl1 Cl 0.5 0 0 1
Cl2 Cl 0 0.5 0 1
Cl3 Cl 0 0 0.5 1
Cl4 Cl 0.5 0.5 0.5 1
"""


def p1_cif(n_sites: int, edge: float = 60.0) -> str:
    """A P1 cell of ``n_sites`` atoms on a grid: valid, but slow for pymatgen to parse."""
    head = NACL.split("loop_")[0].replace("5.69", f"{edge}")
    side = round(n_sites ** (1 / 3)) + 1
    rows = [
        f"Na{k} Na {(k % side) / side:.4f} {(k // side % side) / side:.4f} {(k // side // side) / side:.4f} 1"
        for k in range(n_sites)
    ]
    return head + "loop_\n_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n" \
        "_atom_site_fract_z\n_atom_site_occupancy\n" + "\n".join(rows) + "\n"  # fmt: skip


def hostile_files(folder: Path) -> list[Path]:
    """The files student A uploads (written to ``folder``)."""
    files = {
        "stall.cif": p1_cif(5000),
        "blank_lines.cif": NACL + "\n" * 200_000,
        "tiny_cell.cif": NACL.replace("5.69", "0.05"),
        "huge_cell.cif": NACL.replace("5.69", "1000000"),
    }
    paths = []
    for name, text in files.items():
        (folder / name).write_text(text)
        paths.append(folder / name)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for k in range(400):
            archive.writestr(f"nacl_{k}.cif", NACL)
    (folder / "many.zip").write_bytes(buffer.getvalue())
    paths.append(folder / "many.zip")
    return paths


def rss_mb(pid: int) -> float:
    """Resident memory of one process (MB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def upload_in_browser(url: str, files: list[Path], done: threading.Event, report: dict) -> None:
    """Student A: upload every file to the Predict page and wait until the page has answered."""
    from playwright.sync_api import sync_playwright

    started = time.perf_counter()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{url}/Predict?user=uploader&token=upload-bench-token-0123456789abcdef", wait_until="load")
        page.locator('input[type="file"]').first.wait_for(state="attached", timeout=120_000)
        page.locator('input[type="file"]').first.set_input_files([str(f) for f in files])
        page.get_by_text("Predicted").first.wait_for(timeout=300_000)
        report["refusals_shown"] = (
            page.locator('[data-testid="stAlertContentWarning"]').count()
            + page.locator('[data-testid="stAlertContentError"]').count()
        )
        browser.close()
    report["upload_seconds"] = round(time.perf_counter() - started, 1)
    done.set()


async def measure(url: str, files: list[Path], pid: int) -> dict:
    session = StreamlitSession(url, timeout_s=120)
    await session.connect()
    await session.open("")
    await session.open("Model_zoo")
    baseline = [(await session.rerun()).seconds for _ in range(10)]
    rss_before = rss_mb(pid)
    done, report = threading.Event(), {}
    uploader = threading.Thread(target=upload_in_browser, args=(url, files, done, report), daemon=True)
    uploader.start()
    during, rss_peak = [], rss_before
    while not done.is_set():
        during.append((await session.rerun()).seconds)
        rss_peak = max(rss_peak, rss_mb(pid))
        await asyncio.sleep(0.2)
    uploader.join()
    await session.close()
    return {
        "baseline_rerun_median_s": round(statistics.median(baseline), 3),
        "rerun_median_s": round(statistics.median(during), 3) if during else None,
        "rerun_max_s": round(max(during), 3) if during else None,
        "reruns_during_upload": len(during),
        "rss_before_mb": round(rss_before),
        "rss_peak_mb": round(rss_peak),
        "rss_growth_mb": round(rss_peak - rss_before),
        **report,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line last")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = hostile_files(Path(tmp))
        home = Path(tmp) / "home"
        home.mkdir()
        with AppServer(home, env={"CGCNN_WORKERS": "0"}) as app:
            result = asyncio.run(measure(app.url, files, app.proc.pid))
    print(
        f"student B's Model zoo rerun: {result['baseline_rerun_median_s']} s before, median "
        f"{result['rerun_median_s']} s (max {result['rerun_max_s']} s) while A uploaded "
        f"{len(files)} hostile files ({result.get('upload_seconds')} s); server RSS +{result['rss_growth_mb']} MB "
        f"(targets: rerun < 2 s, RSS growth < 500 MB)"
    )
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
