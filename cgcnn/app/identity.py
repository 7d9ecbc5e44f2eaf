"""Who may change a run: a display name is claimed by a secret token that lives in the student's browser.

A display name alone proves nothing (anyone can type a classmate's), so the first browser to use a name claims
it with a random token (kept in the page address as ``?token=...``); the run store keeps only the token's
sha256. Later sessions presenting the same token are that student; a session typing the name with another
token is refused. Only the claiming session, or a teacher, can cancel, delete or rename the name's runs
(:func:`can_modify`). An optional class code (``CGCNN_CLASS_CODE``) must be typed to claim a new name, so
only the class can join a server that is reachable by others. No Streamlit here: the pages call these.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass

from cgcnn.errors import CGCNNError
from cgcnn.names import name_key, validate_name
from cgcnn.runs.store import RunRecord, RunStore

#: Environment variable: the code a student types to claim a display name (unset: no code needed).
CLASS_CODE_ENV = "CGCNN_CLASS_CODE"
#: Shortest token accepted (``new_token`` gives 32 characters).
MIN_TOKEN_LENGTH = 16


class NameClaimed(CGCNNError):
    """The display name belongs to another browser's token."""


class ClassCodeRequired(CGCNNError):
    """This server asks for the class code before a new display name can be claimed."""


@dataclass(frozen=True)
class Identity:
    """A signed-in session: its display name and the hash of its token (empty name: not signed in)."""

    name: str = ""
    token_hash: str = ""

    @property
    def signed_in(self) -> bool:
        """Whether the session holds a claimed name."""
        return bool(self.name and self.token_hash)


def new_token() -> str:
    """A fresh secret for a browser (URL-safe, 192 bits)."""
    return secrets.token_urlsafe(24)


def hash_token(token: str) -> str:
    """What the store keeps of a token (sha256 hex): a copy of the database does not let anyone sign in."""
    return hashlib.sha256(token.encode()).hexdigest()


def class_code() -> str:
    """The class code this server asks for (``$CGCNN_CLASS_CODE``), or '' for none."""
    return os.environ.get(CLASS_CODE_ENV, "").strip()


def sign_in(store: RunStore, name: str, token: str, code: str = "") -> Identity:
    """Claim ``name`` for ``token`` (first use) or check that ``token`` holds it (later uses).

    Args:
        store: the run store (holds the claims).
        name: the display name typed; it must follow :mod:`cgcnn.names`.
        token: the browser's secret.
        code: the class code typed, needed only to claim a new name when ``CGCNN_CLASS_CODE`` is set.

    Raises:
        InvalidName: a name that breaks the naming rule.
        ClassCodeRequired: a new name without the right class code.
        NameClaimed: another browser holds the name.
    """
    clean = validate_name(name, what="a display name")
    if not token or len(token) < MIN_TOKEN_LENGTH:
        raise CGCNNError("this browser has no valid sign-in token: reload the page")
    mine = hash_token(token)
    key = name_key(clean)
    holder = store.name_claim(key)
    if holder is None:
        required = class_code()
        if required and not hmac.compare_digest(code.strip().encode(), required.encode()):
            raise ClassCodeRequired(
                "enter the class code your teacher gave you to use a new name" if not code.strip()
                else "that class code is not right: ask your teacher for it"
            )  # fmt: skip
        holder = store.claim_name(key, clean, mine)
    if not hmac.compare_digest(holder, mine):
        raise NameClaimed(
            f"the display name {clean!r} is already used by someone else on this server: choose another "
            "(or open the link you used before: it carries your token)"
        )
    return Identity(clean, mine)


def can_modify(identity: Identity, record: RunRecord, is_teacher: bool = False) -> bool:
    """Whether this session may cancel, delete or rename ``record``: its owner's claiming session, or a teacher."""
    if is_teacher:
        return True
    return identity.signed_in and bool(record.owner_key) and record.owner_key == name_key(identity.name)
