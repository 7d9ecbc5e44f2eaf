"""Folders of the project checkout that the library reads: the default data, the zoo, static files, results.

One owner, so moving a module to another subpackage cannot silently point it at a folder that does not exist.
"""

from __future__ import annotations

from pathlib import Path

#: The checkout (or installed source tree) that holds ``cgcnn/``, ``assets/``, ``pretrained/`` and ``static/``.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def project_path(*parts: str) -> Path:
    """A path inside the project checkout, e.g. ``project_path("assets", "mp_default.npz")``."""
    return PROJECT_ROOT.joinpath(*parts)
