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

SETTINGS_FILENAME = "class_settings.json"


@dataclass(frozen=True)
class ProtocolPreset:
    """A fixed fine-tune protocol (target, sizes, epochs) a class can be pinned to."""

    title: str
    target: str
    n_train: int
    n_val: int
    n_test: int
    epochs: int

    @property
    def sizes(self) -> tuple[int, int, int]:
        """``(n_train, n_val, n_test)``."""
        return (self.n_train, self.n_val, self.n_test)

    def describe(self) -> str:
        """``band_gap, 1000/1000/1000 crystals, 30 epochs``."""
        return f"{self.target}, {self.n_train}/{self.n_val}/{self.n_test} crystals, {self.epochs} epochs"


#: Presets a teacher can pin: the study's protocol, a shorter one for a lesson, a tiny one for a demo.
PRESETS: dict[str, ProtocolPreset] = {
    "study": ProtocolPreset("The study's protocol", "band_gap", 1000, 1000, 1000, 30),
    "lesson": ProtocolPreset("A lesson-sized run", "band_gap", 300, 200, 200, 15),
    "demo": ProtocolPreset("A one-minute demo", "band_gap", 60, 30, 30, 3),
}


@dataclass(frozen=True)
class ClassSettings:
    """The teacher's choices; None means "not set" (the server's default applies)."""

    pinned_preset: str | None = None
    workers: int | None = None

    @property
    def preset(self) -> ProtocolPreset | None:
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
