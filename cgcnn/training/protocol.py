"""The run protocol: what a fine-tune is measured on (target, split sizes, epochs, early stopping).

Why one value: the study's protocol (band gap, 1000/1000/1000 crystals, 30 epochs, no early stopping) used to be
written out in the spec, the sweep grid, the CLI options, the app's form, the class presets and the Table 2
filter, and any one of them could drift. :data:`STUDY` is now declared here only; each of those surfaces takes
its defaults from it, and a teacher's presets are :class:`RunProtocol` values too.

This module imports nothing of the project, so every layer (training, experiments, app, CLI) may use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunProtocol:
    """Target, split sizes, epochs and patience of a fine-tune.

    Attributes:
        target: the label learned.
        n_train, n_val, n_test: crystals of each role (prefixes of the canonical split).
        epochs: passes over the training set.
        patience: early stopping after this many epochs without a better validation MAE (None: never).
        title: a name for people (a preset's title); not part of the protocol's identity.
    """

    target: str = "band_gap"
    n_train: int = 1000
    n_val: int = 1000
    n_test: int = 1000
    epochs: int = 30
    patience: int | None = None
    title: str = field(default="", compare=False)

    @property
    def sizes(self) -> tuple[int, int, int]:
        """``(n_train, n_val, n_test)``."""
        return (self.n_train, self.n_val, self.n_test)

    def describe(self) -> str:
        """``band_gap, 1000/1000/1000 crystals, 30 epochs`` (and the patience when there is one)."""
        text = f"{self.target}, {self.n_train}/{self.n_val}/{self.n_test} crystals, {self.epochs} epochs"
        return text + (f", patience {self.patience}" if self.patience is not None else "")

    def hyperparams(self) -> dict[str, Any]:
        """The training settings this protocol fixes (``epochs``, and ``patience`` when set)."""
        return {"epochs": self.epochs, **({"patience": self.patience} if self.patience is not None else {})}

    def matches(self, target: str | None, sizes: tuple, hyperparams: dict[str, Any] | None) -> bool:
        """Whether a run of ``target``, ``sizes`` and ``hyperparams`` followed this protocol.

        A run that does not say its epochs ran the training default, which is this module's :data:`STUDY`
        epochs (:class:`~cgcnn.training.train.TrainConfig` takes its default from it).
        """
        hyper = hyperparams or {}
        return (
            target == self.target
            and tuple(int(n) for n in sizes) == self.sizes
            and int(hyper.get("epochs", STUDY.epochs)) == self.epochs
            and hyper.get("patience") == self.patience
        )


#: The study's protocol: band gap, 1000/1000/1000 crystals, 30 epochs, no early stopping. Declared only here.
STUDY = RunProtocol(title="The study's protocol")
