"""Check that no number of the old long README was lost when its text moved into the docs site.

The README used to hold every measured number of the project (804 lines). It became a short map and the text
moved into ``docs/``; this script is the proof that the move lost nothing: every number of the old README
(frozen once into ``tools/readme_numbers.txt``, so a fresh clone needs no git history) must still appear in
``README.md`` or in a Markdown file under ``docs/``. It prints nothing and exits 0 when all are there; otherwise
it prints the missing numbers, one per line, and exits 1.

Usage::

    python tools/readme_numbers.py                    # check (the test suite runs this)
    python tools/readme_numbers.py --freeze OLD.md    # write the list from an old README (done once)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FROZEN = Path(__file__).with_name("readme_numbers.txt")

# A number: digits with optional thousands groups and decimal parts (6,317; 0.588; 2.60.0), keeping a leading
# Unicode minus or plus sign, which the study's tables use for differences (−0.059, +0.011). An ASCII hyphen is
# not a sign: it is an option dash or a range ("--seeds 0-4").
NUMBER = re.compile(r"[−+]?\d+(?:,\d{3})*(?:\.\d+)*")


def numbers_in(text: str) -> set[str]:
    """Every number token in ``text`` (see ``NUMBER``), as written."""
    return set(NUMBER.findall(text))


def site_text(root: Path = ROOT) -> str:
    """The README and every Markdown page of the docs site, joined (where the numbers must still be)."""
    pages = [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
    return "\n".join(page.read_text(encoding="utf-8") for page in pages if page.is_file())


def read_frozen(path: Path = FROZEN) -> list[str]:
    """The frozen list: one number per line; blank lines and ``#`` comments ignored."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def missing_numbers(frozen: list[str], text: str) -> list[str]:
    """The frozen numbers that ``text`` no longer contains, in the frozen order."""
    present = numbers_in(text)
    return [number for number in frozen if number not in present]


def freeze(old_readme: Path, out: Path = FROZEN) -> int:
    """Write the numbers of ``old_readme`` to ``out``, sorted; returns how many."""
    found = sorted(numbers_in(old_readme.read_text(encoding="utf-8")))
    header = f"# Numbers of the old README ({old_readme.name}), one per line: tools/readme_numbers.py checks them.\n"
    out.write_text(header + "".join(f"{number}\n" for number in found), encoding="utf-8")
    return len(found)


def main(argv: list[str] | None = None) -> int:
    """Check (default) or ``--freeze OLD_README``; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--freeze", type=Path, metavar="OLD_README", help="write the list from this file")
    args = parser.parse_args(argv)
    if args.freeze is not None:
        freeze(args.freeze)
        return 0
    missing = missing_numbers(read_frozen(), site_text())
    for number in missing:
        print(number)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
