"""The README stays a short map, and the docs site kept every number of the old long README."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "readme_numbers.py"


def run_numbers(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(root / "tools" / "readme_numbers.py")], capture_output=True, text=True)


def test_every_old_readme_number_is_in_the_readme_or_the_docs():
    result = run_numbers(ROOT)
    assert result.stdout == "", f"numbers of the old README missing from README.md and docs/:\n{result.stdout}"
    assert result.returncode == 0, result.stderr


def test_a_lost_number_is_printed_and_fails(tmp_path):
    # A copy of the project's docs with one frozen number removed from every page: the script must name it.
    shutil.copytree(ROOT / "tools", tmp_path / "tools", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "docs", tmp_path / "docs", ignore=shutil.ignore_patterns("*.png", "*.pt", "*.csv"))
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    lost = "0.588"  # scratch's Table 2 MAE, cited on several pages
    for page in [tmp_path / "README.md", *(tmp_path / "docs").rglob("*.md")]:
        page.write_text(page.read_text(encoding="utf-8").replace(lost, "X"), encoding="utf-8")
    result = run_numbers(tmp_path)
    assert result.returncode == 1
    assert result.stdout.split() == [lost]


def test_readme_is_a_map():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 220
    long_lines = [number for number, line in enumerate(lines, 1) if len(line) > 300]
    assert long_lines == [], f"README lines over 300 characters: {long_lines}"


def test_docs_pages_have_no_giant_lines():
    # The old README had a table row of 1,705 characters; pages wrap their prose instead.
    for page in (ROOT / "docs").glob("*.md"):
        long_lines = [n for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1) if len(line) > 300]
        assert long_lines == [], f"{page.name}: lines over 300 characters: {long_lines}"


def test_sphinx_roles_render_as_code_on_the_site():
    from tools.griffe_sphinx_roles import roles_to_code

    text = "Calls :func:`~cgcnn.training.finetune.run_finetune` with a :class:`FinetuneSpec` (see :mod:`cgcnn.zoo`)."
    assert roles_to_code(text) == "Calls `run_finetune` with a `FinetuneSpec` (see `cgcnn.zoo`)."
