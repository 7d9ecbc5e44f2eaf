"""The run protocol: what a fine-tune is measured on (target, split sizes, epochs, early stopping).

Why one value: the study's protocol (band gap, 1000/1000/1000 crystals, 30 epochs, no early stopping) used to be
written out in the spec, the sweep grid, the CLI options, the app's form, the class presets and the Table 2
filter, and any one of them could drift. :data:`STUDY` is now declared here only; each of those surfaces takes
its defaults from it, and a teacher's presets are :class:`RunProtocol` values too.

The band-gap target and the 1000-crystal blocks are the canonical split's own (:mod:`cgcnn.data.splits`, a lower
layer that needs them too); the epochs are declared here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cgcnn.data.splits import PROTOCOL_SIZE, PROTOCOL_TARGET


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

    target: str
    n_train: int
    n_val: int
    n_test: int
    epochs: int
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
STUDY = RunProtocol(
    PROTOCOL_TARGET, PROTOCOL_SIZE, PROTOCOL_SIZE, PROTOCOL_SIZE, epochs=30, title="The study's protocol"
)
