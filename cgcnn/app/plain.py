"""User-supplied text made inert before a page renders it: run and display names, ids, file names, labels.

Streamlit renders Markdown (with GitHub's autolinks, ``:color[...]`` directives and LaTeX) in ``st.markdown``,
captions, alerts, toasts, metric labels and progress texts; Plotly renders a subset of HTML (``<a>``,
``<span style>``) in titles and legends. A classmate's run name must show as the characters it holds, never as
a link, an image beacon or a red banner, so every page passes user text through :func:`markdown` or
:func:`plotly` (tables and ``st.text``/``st.code`` are plain already).
"""

from __future__ import annotations

import re

from cgcnn.analysis.markup import plotly_text, strip_bidi

# Every character that starts Markdown, GFM, Streamlit directive or LaTeX syntax (CommonMark lets any ASCII
# punctuation be escaped with a backslash; these are the ones that do something).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+\-!|~:$=@^&])")
# GFM autolinks bare URLs and e-mail addresses *after* parsing, on the unescaped text, so backslashes cannot stop
# it: an invisible WORD JOINER (U+2060, not a word character) inside "http:", "www." and before "@" breaks the
# patterns while the text still reads the same.
_AUTOLINK = re.compile(r"(?i)(https?|ftp|mailto|xmpp)(?=\\:)|(www)(?=\.)|(?=\\@)")
WORD_JOINER = "\u2060"


def text(value: object) -> str:
    """``value`` as plain text without bidirectional controls (for tables, pickers and the escapes below)."""
    return strip_bidi(value)


def markdown(value: object) -> str:
    """``value`` escaped so that Streamlit's Markdown shows it literally (no link, image, style or HTML)."""
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", text(value))
    return _AUTOLINK.sub(lambda m: (m.group(1) or m.group(2) or "") + WORD_JOINER, escaped)


#: ``text`` escaped for Plotly titles, legends and axis labels (its HTML subset becomes literal text, bidirectional
#: controls are dropped); one implementation, in the analysis layer whose figures need it too.
plotly = plotly_text
