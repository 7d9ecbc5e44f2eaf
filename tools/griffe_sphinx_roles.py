"""A Griffe extension for the docs site: Sphinx roles in docstrings become Markdown code.

The package's docstrings are Google style with a few reStructuredText roles (``:func:`run_finetune```,
``:class:`~cgcnn.nn.predictor.Predictor```) that read well in an editor and in ``help()``. mkdocstrings renders
docstrings as Markdown, where a role would show as raw ``:func:`` text; this extension (listed in mkdocs.yml)
rewrites each role to an inline code span before the docstring is parsed: ``~a.b.name`` becomes ``name``, as
Sphinx shows it. It changes only what the site shows, never the source.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|exc|obj):`(~?)([^`]+)`")


def roles_to_code(text: str) -> str:
    """``text`` with every Sphinx role as a Markdown code span (``~`` keeps only the last dotted part)."""

    def code(match: re.Match[str]) -> str:
        short, target = match.group(1), match.group(2)
        return f"`{target.rsplit('.', 1)[-1] if short else target}`"

    return ROLE.sub(code, text)


class SphinxRoles(griffe.Extension):
    """Rewrites the roles of every object's docstring as the objects are loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Griffe calls this for each loaded object; its docstring is parsed later, so the rewrite is seen."""
        if obj.docstring is not None:
            obj.docstring.value = roles_to_code(obj.docstring.value)
