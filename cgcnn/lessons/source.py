"""Where a key of a lesson's TOML text is written: the line numbers that lesson errors quote.

Why a scan of the text: :mod:`tomllib` returns plain dicts without positions, and a teacher fixing an uploaded
lesson needs "line 14", not "step 3". The scan knows just enough TOML for lesson files: ``[[steps]]`` headers
start the steps (in order), a key is written ``key = ...`` (or quoted) at the start of a line, and a dotted path
such as ``answer.type`` is found as ``type`` after the line of ``answer`` (an inline table written over several
lines, or a ``[steps.answer]`` table). Where a key cannot be found, the line of its step (or 1) is given: a line
near the mistake is still better than none.
"""

from __future__ import annotations

import re

_STEPS_HEADER = re.compile(r"^\s*\[\[\s*steps\s*\]\]\s*(#.*)?$")
_TABLE_HEADER = re.compile(r"^\s*\[")


def _key_pattern(key: str) -> re.Pattern[str]:
    name = re.escape(key)
    return re.compile(rf"""^\s*(?:{name}|"{name}"|'{name}')\s*=|[{{,]\s*(?:{name}|"{name}"|'{name}')\s*=""")


class SourceLines:
    """The lines of a lesson's text, with the ranges of its top level and of each ``[[steps]]`` table.

    Args:
        text: the TOML source as uploaded.
    """

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.step_starts = [i for i, line in enumerate(self.lines) if _STEPS_HEADER.match(line)]

    def step_line(self, number: int) -> int:
        """The 1-based line of the ``[[steps]]`` header of step ``number`` (1-based); 1 if there is none."""
        if 1 <= number <= len(self.step_starts):
            return self.step_starts[number - 1] + 1
        return 1

    def _step_range(self, number: int) -> tuple[int, int]:
        start = self.step_starts[number - 1]
        end = self.step_starts[number] if number < len(self.step_starts) else len(self.lines)
        return start, end

    def _top_range(self) -> tuple[int, int]:
        first_table = next((i for i, line in enumerate(self.lines) if _TABLE_HEADER.match(line)), len(self.lines))
        return 0, first_table

    def _find(self, dotted: str, start: int, end: int) -> int | None:
        """0-based line of ``dotted`` (``a.b``: ``b`` at or after ``a``'s line) within ``[start, end)``."""
        found = None
        for part in dotted.split("."):
            pattern = _key_pattern(part)
            begin = start if found is None else found
            hit = next((i for i in range(begin, end) if pattern.search(self.lines[i])), None)
            if hit is None:
                return found
            found = hit
        return found

    def key_line(self, number: int | None, key: str | None) -> int:
        """The 1-based line of ``key`` (dotted for nested tables) in step ``number``, or at the top level (None).

        Falls back to the step's header line (or line 1) when the key is not written out (a missing key).
        """
        if number is None:
            start, end = self._top_range()
            hit = self._find(key, start, end) if key else None
            return hit + 1 if hit is not None else 1
        if not 1 <= number <= len(self.step_starts):
            return 1
        start, end = self._step_range(number)
        hit = self._find(key, start, end) if key else None
        return hit + 1 if hit is not None else start + 1
