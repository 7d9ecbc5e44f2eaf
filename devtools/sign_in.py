"""Server-issued sign-in tokens for the page tests: one per display name and home, as one browser would keep.

The pages accept only tokens this server issued (:func:`cgcnn.app.identity.new_token`, signed with the key in
``$CGCNN_HOME``); a test passes one in the address, where the page takes it out at once and keeps it in the
session (a browser keeps it in a cookie).
"""

from __future__ import annotations

import os

from cgcnn.app import identity

_TOKENS: dict[tuple[str, str], str] = {}


def token_of(user: str, home: str | None = None) -> str:
    """The token of ``user``'s browser on the server at ``home`` (default ``$CGCNN_HOME``), the same on every call."""
    home = home or os.environ["CGCNN_HOME"]
    key = (str(home), user)
    if key not in _TOKENS:
        _TOKENS[key] = identity.new_token(home)
    return _TOKENS[key]
