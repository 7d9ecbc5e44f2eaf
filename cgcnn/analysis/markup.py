"""Text from users made inert in the two markups the pictures speak: HTML (and Plotly's subset of it) and JS.

Run names, crystal ids, element labels and file names come from people. Plotly renders a subset of HTML
(``<a>``, ``<span style>``) in titles, legends and hovers; the crystal scene is an HTML fragment with inline
scripts. Every picture passes user text through one of these functions, so a classmate's run name shows as the
characters it holds, never as a link or a script. The app's Markdown escaping (``cgcnn.app.plain``) builds on
this module; nothing here knows Streamlit.
"""

from __future__ import annotations

import html


def plotly_text(text: object) -> str:
    """``text`` escaped for Plotly titles, legends, axis labels and hover text (its HTML becomes literal text)."""
    return html.escape(str(text), quote=False)


def html_text(text: object) -> str:
    """``text`` escaped for an HTML element's content or a double-quoted attribute."""
    return html.escape(str(text), quote=True)


def js_file_name(name: str, default: str = "download.png") -> str:
    """A file name safe inside a single-quoted JS string in an HTML attribute: letters, digits, ``-_.`` only.

    Anything else becomes ``_`` (no quote, backslash or ``<`` can end the string or the attribute); an empty
    result falls back to ``default``.
    """
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or default
