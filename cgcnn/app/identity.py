"""Who may change a run: a display name is claimed by a secret, server-issued token that lives in a cookie.

A display name alone proves nothing (anyone can type a classmate's), so the first browser to use a name claims
it with a random token; the run store keeps only the token's sha256. Later sessions presenting the same token
are that student; a session typing the name with another token is refused. Only the claiming session, or a
teacher, can cancel, delete or rename the name's runs (:func:`can_modify`). An optional class code
(``CGCNN_CLASS_CODE``) must be typed to claim a new name, so only the class can join a server that is reachable
by others. No Streamlit here: the pages call these.

Tokens are issued by this server only: ``t1.<issued>.<nonce>.<signature>``, signed with a key kept in
``$CGCNN_HOME/sign_in.key`` (created on first use, readable by the server's user only). So a token a client
makes up is refused, and every token expires ``CGCNN_SIGN_IN_HOURS`` after it was issued (a class-length
period): an old leaked token stops working. The page keeps the token in a browser cookie, never in the
address, so a link a student shares carries only what is shown, never who she is. A teacher can release a
name (lost cookie, a squatted name): :func:`release_name`, the Class page, ``python -m cgcnn names release``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cgcnn.errors import CGCNNError
from cgcnn.names import name_key, validate_name
from cgcnn.runs.store import RunRecord, RunStore

#: Environment variable: the code a student types to claim a display name (unset: no code needed).
CLASS_CODE_ENV = "CGCNN_CLASS_CODE"
#: Format tag of the tokens this module issues.
TOKEN_VERSION = "t1"
#: File (in the run store's home) holding the key that signs tokens.
KEY_FILE = "sign_in.key"


class NameClaimed(CGCNNError):
    """The display name belongs to another browser's token."""


class ClassCodeRequired(CGCNNError):
    """This server asks for the class code before a new display name can be claimed."""


class TokenRefused(CGCNNError):
    """A token this server did not issue, or one past its lifetime."""


@dataclass(frozen=True)
class Identity:
    """A signed-in session: its display name, the hash of its token and the token (empty name: not signed in)."""

    name: str = ""
    token_hash: str = ""
    token: str = ""

    @property
    def signed_in(self) -> bool:
        """Whether the session holds a claimed name."""
        return bool(self.name and self.token_hash)


def server_key(home: Path | None = None) -> bytes:
    """The key that signs this server's tokens (``<home>/sign_in.key``, made on first use, mode 600)."""
    from cgcnn.runs.store import default_home

    path = Path(home if home is not None else default_home()) / KEY_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as f:
        f.write(key.hex())
    return key


def _signature(key: bytes, purpose: str, body: str) -> str:
    return hmac.new(key, f"{purpose}|{body}".encode(), hashlib.sha256).hexdigest()[:32]


def new_token(home: Path | None = None, purpose: str = "student", now: float | None = None) -> str:
    """A fresh secret for a browser, signed by this server (URL- and cookie-safe; 144 random bits).

    Args:
        home: the run store's home (its key signs the token; default ``$CGCNN_HOME``).
        purpose: what the token is for (a student's sign-in, or the teacher's mode: see
            :mod:`cgcnn.app.teacher`); a token of one purpose is refused for another.
        now: the issue time (tests).
    """
    issued = int(time.time() if now is None else now)
    body = f"{TOKEN_VERSION}.{issued}.{secrets.token_urlsafe(18)}"
    return f"{body}.{_signature(server_key(home), purpose, body)}"


def token_problem(
    token: str | None,
    home: Path | None = None,
    purpose: str = "student",
    hours: float | None = None,
    now: float | None = None,
) -> str | None:
    """Why ``token`` does not sign in (not issued here, or expired), or None if it does.

    Args:
        token: the token presented.
        home: the run store's home (whose key signed it).
        purpose: the purpose it must have been issued for.
        hours: its lifetime (default ``CGCNN_SIGN_IN_HOURS``; 0: no expiry).
        now: the time to check at (tests).
    """
    parts = (token or "").split(".")
    if len(parts) != 4 or parts[0] != TOKEN_VERSION or not parts[1].isdigit():
        return "this sign-in was not issued by this server"
    body = ".".join(parts[:3])
    if not hmac.compare_digest(parts[3], _signature(server_key(home), purpose, body)):
        return "this sign-in was not issued by this server"
    if hours is None:
        from cgcnn.settings import current_limits

        hours = current_limits().sign_in_hours
    age = (time.time() if now is None else now) - int(parts[1])
    if hours and age > hours * 3600:
        return f"this sign-in expired ({hours:g} h after it was issued; set by CGCNN_SIGN_IN_HOURS)"
    return None


def valid_token(token: str | None, home: Path | None = None, purpose: str = "student") -> bool:
    """Whether ``token`` was issued by this server for ``purpose`` and has not expired."""
    return token_problem(token, home, purpose) is None


def hash_token(token: str) -> str:
    """What the store keeps of a token (sha256 hex): a copy of the database does not let anyone sign in."""
    return hashlib.sha256(token.encode()).hexdigest()


def class_code() -> str:
    """The class code this server asks for (``$CGCNN_CLASS_CODE``), or '' for none."""
    return os.environ.get(CLASS_CODE_ENV, "").strip()


def sign_in(store: RunStore, name: str, token: str, code: str = "", guard_keys: Sequence[str] = ()) -> Identity:
    """Claim ``name`` for ``token`` (first use) or check that ``token`` holds it (later uses).

    Args:
        store: the run store (holds the claims).
        name: the display name typed; it must follow :mod:`cgcnn.names`.
        token: the browser's secret, issued by :func:`new_token`.
        code: the class code typed, needed only to claim a new name when ``CGCNN_CLASS_CODE`` is set.
        guard_keys: who a wrong class code counts against (session, client address): wrong codes are delayed
            and locked out like teacher passwords (:mod:`cgcnn.app.guard`).

    Raises:
        TokenRefused: a token this server did not issue, or an expired one.
        InvalidName: a name that breaks the naming rule.
        ClassCodeRequired: a new name without the right class code.
        NameClaimed: another browser holds the name.
    """
    clean = validate_name(name, what="a display name")
    problem = token_problem(token, store.home)
    if problem is not None:
        raise TokenRefused(f"{problem}: reload the page to get a new one")
    mine = hash_token(token)
    key = name_key(clean)
    holder = store.name_claim(key)
    if holder is None:
        required = class_code()
        if required:
            _check_class_code(code, required, guard_keys)
        holder = store.claim_name(key, clean, mine)
    if not hmac.compare_digest(holder, mine):
        taken = store.claimed_as(key) or clean
        if taken.casefold() != clean.casefold():  # not a spelling of one name: a look-alike
            raise NameClaimed(
                f"the display name {clean!r} looks like {taken!r}, which someone else on this server uses: "
                "choose a name that looks different"
            )
        raise NameClaimed(
            f"the display name {clean!r} is already used by someone else on this server: choose another "
            "(or ask your teacher to release it if it is yours)"
        )
    return Identity(clean, mine, token)


def _check_class_code(code: str, required: str, keys: Sequence[str]) -> None:
    """Raise :class:`ClassCodeRequired` unless ``code`` is the class code (guarded against guessing)."""
    from cgcnn.app.guard import CLASS_CODE_GUARD

    locked = CLASS_CODE_GUARD.locked_for(keys)
    if locked > 0:
        raise ClassCodeRequired(CLASS_CODE_GUARD.refusal(locked))
    if not code.strip():
        raise ClassCodeRequired("enter the class code your teacher gave you to use a new name")
    if hmac.compare_digest(code.strip().encode(), required.encode()):
        CLASS_CODE_GUARD.succeeded(keys)
        return
    if keys:  # a page's session and address; library callers are local and unguarded
        time.sleep(CLASS_CODE_GUARD.failed(keys))
    locked = CLASS_CODE_GUARD.locked_for(keys)
    raise ClassCodeRequired(
        CLASS_CODE_GUARD.refusal(locked) if locked > 0 else "that class code is not right: ask your teacher for it"
    )


def name_of_token(store: RunStore, token: str) -> str:
    """The display name ``token`` holds ('' if none, or if the token is not a valid one of this server)."""
    if not token or token_problem(token, store.home) is not None:
        return ""
    return store.name_held_by(hash_token(token)) or ""


def release_name(store: RunStore, name: str, is_teacher: bool) -> bool:
    """Free a claimed display name (the teacher's action: a student lost her cookie, a name was squatted).

    Returns whether a claim was released; its runs stay, and the next browser to sign in with the name claims it.

    Raises:
        CGCNNError: not in teacher mode.
    """
    if not is_teacher:
        raise CGCNNError("only the teacher can release a display name")
    return store.release_name(name_key(name))


def can_modify(identity: Identity, record: RunRecord, is_teacher: bool = False) -> bool:
    """Whether this session may cancel, delete or rename ``record``: its owner's claiming session, or a teacher."""
    if is_teacher:
        return True
    return identity.signed_in and bool(record.owner_key) and record.owner_key == name_key(identity.name)
