"""The one rule for names people choose: run names saved to the zoo and display names in the app.

Names are shown to every classmate and, for run names, pick a model by name, so they are held to a small
alphabet: Unicode letters and digits, space and ``-_.``, at most :data:`MAX_NAME_LENGTH` characters. That
leaves nothing for Markdown, HTML or Streamlit's ``:color[...]`` directives to act on, and a run can never
shadow a zoo model (``band-gap``, compared case-insensitively): callers pass the reserved names in, so this
module stays at the bottom layer. Names stored before the rule existed are still shown (as plain text) and can
be renamed.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from cgcnn.errors import CGCNNError

#: Longest name, in characters.
MAX_NAME_LENGTH = 40
#: Characters allowed besides Unicode letters and digits.
NAME_PUNCTUATION = frozenset(" -_.")


class InvalidName(CGCNNError):
    """A chosen name that breaks the naming rule (the message says which part)."""


def name_problem(name: str, reserved: Iterable[str] = (), what: str = "a name") -> str | None:
    """Why ``name`` is not acceptable, or None if it is (``name`` is taken as typed, after NFC and trimming).

    Args:
        name: the proposed name.
        reserved: names it may not equal, compared case-insensitively (zoo models, own models).
        what: how the message calls it ("a run name", "a display name").
    """
    text = unicodedata.normalize("NFC", name or "").strip()
    if not text:
        return f"{what} cannot be empty"
    if len(text) > MAX_NAME_LENGTH:
        return f"{what} has at most {MAX_NAME_LENGTH} characters; this one has {len(text)}"
    bad = [ch for ch in text if not _allowed(ch)]
    if bad:
        shown = ", ".join(repr(ch) for ch in dict.fromkeys(bad))
        return f"{what} may hold only letters, digits, spaces and - _ . (not {shown})"
    folded = text.casefold()
    clash = next((r for r in reserved if r.casefold() == folded), None)
    if clash is not None:
        return f"{what} may not be {text!r}: that is the zoo model {clash!r}"
    return None


def name_key(name: str) -> str:
    """The key two names are the same under: NFC, trimmed, case-folded (``Alice`` and ``alice`` are one name).

    Display names are claimed under it and runs are owned under it (the run store's ``owner_key``), so one
    person's runs, list and quota do not split by spelling.
    """
    return unicodedata.normalize("NFC", name or "").strip().casefold()


def validate_name(name: str, reserved: Iterable[str] = (), what: str = "a name") -> str:
    """The name, normalised (NFC, trimmed), if it follows the rule.

    Raises:
        InvalidName: with a one-line reason (see :func:`name_problem`).
    """
    problem = name_problem(name, reserved, what)
    if problem is not None:
        raise InvalidName(problem[0].upper() + problem[1:])
    return unicodedata.normalize("NFC", name).strip()


def is_valid_name(name: str | None, reserved: Iterable[str] = ()) -> bool:
    """Whether a (stored) name follows the rule; pages show the others as plain text with a rename hint."""
    return name_problem(name or "", reserved) is None


def _allowed(ch: str) -> bool:
    return ch in NAME_PUNCTUATION or unicodedata.category(ch)[0] in "LN"
