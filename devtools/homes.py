"""A run store of one test module's own, for page tests whose queued runs must stay queued."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


def own_home(folder: Path) -> Iterator[Path]:
    """Point ``CGCNN_HOME`` at ``folder`` (and drop the app's cached store) until the generator is closed.

    Why: a job runner started by another test in the same process drains the session's store, and would claim the
    queued runs a Class-page test expects to stay queued. Use it as a module-scoped fixture's body:
    ``yield from own_home(tmp_path_factory.mktemp("name"))``.
    """
    import app_ui

    old = os.environ["CGCNN_HOME"]
    os.environ["CGCNN_HOME"] = str(folder)
    app_ui.store.clear()
    try:
        yield folder
    finally:
        os.environ["CGCNN_HOME"] = old
        app_ui.store.clear()
