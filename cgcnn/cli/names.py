"""``python -m cgcnn names release NAME``: the teacher frees a display name held by a lost or squatting browser.

A display name is claimed by the first browser's token (:mod:`cgcnn.app.identity`); a student who lost her
cookie, or a name taken by someone else, needs the teacher to release it. The runs stay; the next browser to
sign in with the name claims it. Running this command needs access to the server's ``$CGCNN_HOME``, which
is what makes it the teacher's.
"""

from __future__ import annotations

import argparse
import sys

from cgcnn.names import name_key


def _cmd_release(args: argparse.Namespace) -> int:
    from cgcnn.runs.store import RunStore

    if RunStore().release_name(name_key(args.name)):
        print(f"released the display name {args.name!r}: the next browser to use it claims it")
        return 0
    print(f"nobody holds the display name {args.name!r}", file=sys.stderr)
    return 1


def add_names_parser(sub: argparse._SubParsersAction) -> None:
    """``names release NAME``."""
    p = sub.add_parser("names", help="display names claimed by students' browsers")
    names = p.add_subparsers(dest="names_command", required=True)
    r = names.add_parser("release", help="free a claimed display name (its runs stay)")
    r.add_argument("name", help="the display name (compared like the app does: case-insensitively)")
    r.set_defaults(func=_cmd_release)
