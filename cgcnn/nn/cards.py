"""Model cards: what a model predicts, in which units, from which data, and how well.

A card travels with every checkpoint this project writes and is built from the metadata of the original ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class ModelCard:
    """Facts about one model, shown in ``python -m cgcnn models`` and on the zoo page.

    Attributes:
        name: registry name (``formation-energy-per-atom``, ``own-combined``, ``run:ID``...).
        kind: ``original`` (Xie & Grossman's checkpoints), ``own`` (this project's ``pretrained/``), ``run`` (a
            stored fine-tune) or ``file`` (a checkpoint path a user gave).
        property: what it predicts, in words.
        units: units of the prediction (``log10(GPa)`` for the moduli, ``probability`` for the classifier).
        train_size: number of training crystals, when known.
        mae: the reported error of the model, see ``mae_metric``.
        mae_metric: what ``mae`` is (e.g. test MAE, or the checkpoint's best validation MAE).
        source: where the weights come from.
        task: ``regression`` or ``classification``.
        targets: output names, in output order.
        notes: caveats a user should read (data overlap, smaller data than the study, ...).
        details: anything else worth keeping (data, split hash, seeds, hyperparameters, training time).
    """

    name: str
    kind: str
    property: str
    units: str
    train_size: int | None
    mae: float | None
    mae_metric: str
    source: str
    task: str = "regression"
    targets: list[str] = field(default_factory=list)
    notes: str = ""
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain dict (JSON- and ``weights_only``-safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelCard:
        """Inverse of :meth:`to_dict`, ignoring keys from newer versions."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
