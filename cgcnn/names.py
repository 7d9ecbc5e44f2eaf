"""The one rule for names people choose: run names saved to the zoo and display names in the app.

Names are shown to every classmate and, for run names, pick a model by name, so they are held to a small
alphabet: Unicode letters and digits, space and ``-_.``, at most :data:`MAX_NAME_LENGTH` characters. That
leaves nothing for Markdown, HTML or Streamlit's ``:color[...]`` directives to act on, and a run can never
shadow a zoo model (``band-gap``): callers pass the reserved names in, so this module stays at the bottom
layer. Names stored before the rule existed are still shown (as plain text) and can be renamed.

Two names are the same name when their :func:`name_key` is: NFKC (fullwidth ``ａｌｉｃｅ`` is ``alice``),
case-folded, then a confusable *skeleton* (each character that looks like a Latin letter or digit becomes that
letter, from Unicode's confusables table via ``confusable_homoglyphs``: Cyrillic ``alіce`` and Greek ``Αlice``
are ``alice``). So a look-alike of a taken display name, a zoo model or another run's name is refused with a
message naming the name it resembles, and one person's runs, list and quota cannot split by spelling.
Invisible and filler characters (zero-width, bidi controls, U+3164 HANGUL FILLER, ...) are refused outright: a
name must be seen to be told apart.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable

from cgcnn.errors import CGCNNError

#: Longest name, in characters.
MAX_NAME_LENGTH = 40
#: Characters allowed besides Unicode letters and digits.
NAME_PUNCTUATION = frozenset(" -_.")
#: ``pretrained`` values that name no network (a spec's scratch run and the baselines, see
#: ``cgcnn.training.baselines``), with what each means: no file, saved run or own model may be called so, or a
#: name could pick a network where a yardstick was meant (checked with :func:`name_key`, as every name).
RESERVED_MEANINGS: dict[str, str] = {
    "none": "training from scratch",
    "mean": "the mean baseline",
    "composition": "the composition baseline",
}
RESERVED_WORDS: tuple[str, ...] = tuple(RESERVED_MEANINGS)

#: Letters that draw nothing (fillers of Hangul and braille, invisible marks): refused like format characters.
INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0\u2800\u034f\u17b4\u17b5\u180e\u2028\u2029")


class InvalidName(CGCNNError):
    """A chosen name that breaks the naming rule (the message says which part)."""


def name_problem(
    name: str, reserved: Iterable[str] = (), what: str = "a name", taken: Iterable[str] = ()
) -> str | None:
    """Why ``name`` is not acceptable, or None if it is (``name`` is taken as typed, after NFKC and trimming).

    Args:
        name: the proposed name.
        reserved: names it may not be or resemble (zoo models, own models).
        what: how the message calls it ("a run name", "a display name").
        taken: names in use by others that it may not resemble (another run's name, another person's name);
            the same name exactly is the caller's business (e.g. signing in again).
    """
    raw = (name or "").strip()
    hidden = [ch for ch in raw if _invisible(ch)]
    if hidden:
        shown = ", ".join(f"U+{ord(ch):04X}" for ch in dict.fromkeys(hidden))
        return f"{what} may not hold invisible or filler characters ({shown})"
    text = unicodedata.normalize("NFKC", raw).strip()
    if not text:
        return f"{what} cannot be empty"
    if len(text) > MAX_NAME_LENGTH:
        return f"{what} has at most {MAX_NAME_LENGTH} characters; this one has {len(text)}"
    bad = [ch for ch in text if not _allowed(ch)]
    if bad:
        shown = ", ".join(repr(ch) for ch in dict.fromkeys(bad))
        return f"{what} may hold only letters, digits, spaces and - _ . (not {shown})"
    key = name_key(text)
    clash = next((r for r in reserved if name_key(r) == key), None)
    if clash in RESERVED_MEANINGS:
        return f"{what} may not be {text!r}: {clash!r} is reserved for {RESERVED_MEANINGS[clash]}"
    if clash is not None:
        same = clash.casefold() == text.casefold()
        return f"{what} may not be {text!r}: that {'is' if same else 'looks like'} the zoo model {clash!r}"
    twin = next((t for t in taken if t != text and name_key(t) == key), None)
    if twin is not None:
        return f"{what} {text!r} looks like {twin!r}, which is already used: choose a name that looks different"
    return None


def name_key(name: str) -> str:
    """The key two names are the same under: NFKC, trimmed, case-folded, then the confusable skeleton.

    ``Alice``, ``ａｌｉｃｅ`` and Cyrillic ``alіce`` are one name. Display names are claimed under it and runs
    are owned under it (the run store's ``owner_key``), so one person's runs, list and quota do not split by
    spelling.
    """
    text = unicodedata.normalize("NFKC", name or "").strip().casefold()
    return unicodedata.normalize("NFKC", "".join(_skeleton_char(ch) for ch in text)).casefold()


def validate_name(name: str, reserved: Iterable[str] = (), what: str = "a name", taken: Iterable[str] = ()) -> str:
    """The name, normalised (NFKC, trimmed), if it follows the rule.

    Raises:
        InvalidName: with a one-line reason (see :func:`name_problem`).
    """
    problem = name_problem(name, reserved, what, taken)
    if problem is not None:
        raise InvalidName(problem[0].upper() + problem[1:])
    return unicodedata.normalize("NFKC", name).strip()


def is_reserved_word(name: str | None) -> bool:
    """Whether ``name`` is (or looks like) one of :data:`RESERVED_WORDS`: ``none``, ``mean``, ``composition``."""
    key = name_key(name or "")
    return any(name_key(word) == key for word in RESERVED_WORDS)


def is_valid_name(name: str | None, reserved: Iterable[str] = ()) -> bool:
    """Whether a (stored) name follows the rule; pages show the others as plain text with a rename hint."""
    return name_problem(name or "", reserved) is None


def _allowed(ch: str) -> bool:
    return ch in NAME_PUNCTUATION or unicodedata.category(ch)[0] in "LN"


def _invisible(ch: str) -> bool:
    return ch in INVISIBLE or unicodedata.category(ch) == "Cf"


@functools.lru_cache(maxsize=4096)
def _skeleton_char(ch: str) -> str:
    """``ch``, or the ASCII letter or digit it is confusable with (Unicode's confusables table)."""
    if ch.isascii():
        return ch
    from confusable_homoglyphs import confusables

    for glyph in confusables.confusables_data.get(ch, ()):
        target = glyph["c"]
        if target.isascii() and target.isalnum():
            return target.casefold()
    return ch
