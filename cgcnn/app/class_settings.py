"""What a teacher sets for the whole class: the protocol presets, the one pinned preset, the worker count.

Every session of the server (and every server process sharing the ``CGCNN_HOME``) must see the teacher's
choice at once, so it lives in a small JSON file beside the run store (``<home>/class_settings.json``),
written atomically, rather than in one session's state.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from cgcnn.errors import CGCNNError
from cgcnn.training.protocol import STUDY, RunProtocol

SETTINGS_FILENAME = "class_settings.json"


#: Presets a teacher can pin: the study's protocol, a shorter one for a lesson, a tiny one for a demo. Each is
#: a :class:`~cgcnn.training.protocol.RunProtocol` (the same value the CLI, the sweep and the app default to).
PRESETS: dict[str, RunProtocol] = {
    "study": STUDY,
    "lesson": RunProtocol("band_gap", 300, 200, 200, 15, title="A lesson-sized run"),
    "demo": RunProtocol("band_gap", 60, 30, 30, 3, title="A one-minute demo"),
}


@dataclass(frozen=True)
class ClassSettings:
    """The teacher's choices; None means "not set" (the server's default applies)."""

    pinned_preset: str | None = None
    workers: int | None = None

    @property
    def preset(self) -> RunProtocol | None:
        """The pinned preset, if any."""
        return PRESETS.get(self.pinned_preset) if self.pinned_preset else None


def settings_path(home: Path) -> Path:
    """Where the class settings of a store home are kept."""
    return Path(home) / SETTINGS_FILENAME


def load_settings(home: Path) -> ClassSettings:
    """The class settings of ``home`` (defaults if none were saved, or the file is unreadable)."""
    try:
        data = json.loads(settings_path(home).read_text())
    except (OSError, ValueError):
        return ClassSettings()
    preset = data.get("pinned_preset")
    workers = data.get("workers")
    return ClassSettings(
        pinned_preset=preset if preset in PRESETS else None,
        workers=int(workers) if isinstance(workers, int) and workers >= 1 else None,
    )


def save_settings(home: Path, settings: ClassSettings) -> ClassSettings:
    """Check and save the class settings atomically; returns them.

    Raises:
        CGCNNError: an unknown preset or a negative worker count.
    """
    if settings.pinned_preset is not None and settings.pinned_preset not in PRESETS:
        raise CGCNNError(f"unknown protocol preset {settings.pinned_preset!r}: choose one of {', '.join(PRESETS)}")
    if settings.workers is not None and not 1 <= settings.workers <= 64:
        raise CGCNNError(f"the worker count must be between 1 and 64, got {settings.workers}")
    path = settings_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.part")
    tmp.write_text(json.dumps(asdict(settings)))
    tmp.replace(path)
    return settings
