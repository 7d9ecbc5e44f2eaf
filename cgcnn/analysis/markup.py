"""Text from users made inert in the two markups the pictures speak: HTML (and Plotly's subset of it) and JS.

Run names, crystal ids, element labels and file names come from people. Plotly renders a subset of HTML
(``<a>``, ``<span style>``) in titles, legends and hovers; the crystal scene is an HTML fragment with inline
scripts. Every picture passes user text through one of these functions, so a classmate's run name shows as the
characters it holds, never as a link or a script. The app's Markdown escaping (``cgcnn.app.plain``) builds on
this module; nothing here knows Streamlit.
"""

from __future__ import annotations

import html
import re

# Bidirectional controls (embeddings, overrides, isolates, marks): a legacy name holding U+202E (right-to-left
# override) showed itself, and everything after it on the line, reversed. Every escape below drops them.
_BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def strip_bidi(text: object) -> str:
    """``text`` as a string without bidirectional control characters (shown as the characters it holds)."""
    return _BIDI_CONTROLS.sub("", str(text))


def plotly_text(text: object) -> str:
    """``text`` escaped for Plotly titles, legends, axis labels and hover text (its HTML becomes literal text)."""
    return html.escape(strip_bidi(text), quote=False)


def html_text(text: object) -> str:
    """``text`` escaped for an HTML element's content or a double-quoted attribute."""
    return html.escape(strip_bidi(text), quote=True)


def js_file_name(name: str, default: str = "download.png") -> str:
    """A file name safe inside a single-quoted JS string in an HTML attribute: letters, digits, ``-_.`` only.

    Anything else becomes ``_`` (no quote, backslash or ``<`` can end the string or the attribute); an empty
    result falls back to ``default``.
    """
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or default
