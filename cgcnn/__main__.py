"""``python -m cgcnn``: the command-line interface (see :mod:`cgcnn.cli`)."""

from __future__ import annotations

import sys

from cgcnn.cli import main

sys.exit(main())
