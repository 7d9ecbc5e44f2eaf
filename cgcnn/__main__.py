"""``python -m cgcnn``: the command-line interface (see :mod:`cgcnn.cli.main`)."""

from __future__ import annotations

import sys

from cgcnn.cli.main import main

sys.exit(main())
