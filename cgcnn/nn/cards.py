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
        shift_penalty: for this project's own models, how much worse the same recipe does on chemistry it never
            saw (see :func:`shift_penalty`): the same numbers on every own card, because it is measured once on
            a pair of models trained for the purpose; empty on other cards.
        members: a shipped ensemble's member models (empty for one model).
        calibration: what its intervals and distances rest on (``cgcnn.nn.conformal.Calibration.summary``, the
            calibration file, or ``reason`` when there are none); filled in by the zoo when it lists the model.
        external_check: its error on crystals from outside its training data's source, where measured (the
            bulk-modulus models on ASE's ``dcdft`` elemental solids), with the caveats; filled in by the zoo.
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
    shift_penalty: dict = field(default_factory=dict)
    members: list[str] = field(default_factory=list)
    calibration: dict = field(default_factory=dict)
    external_check: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain dict (JSON- and ``weights_only``-safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelCard:
        """Inverse of :meth:`to_dict`, ignoring keys from newer versions."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def shift_penalty(random_card: ModelCard, shifted_card: ModelCard) -> dict:
    """The distribution-shift penalty measured by a pair of pretrainings (see ``pretrain --split``).

    Both models follow the same recipe on the same crystals with block sizes equal by construction: one on
    ``random-like:FAMILY`` (test crystals drawn at random), one on ``chemistry:FAMILY`` (the test crystals are
    every crystal containing a family element, and no such crystal was trained on). The ratio of their test
    MAEs is how much a test MAE on familiar chemistry understates the error on unfamiliar chemistry.

    Returns:
        A JSON-ready dict: family, elements, target, n_test, both MAEs, ``ratio`` (shifted / random),
        ``difference`` (shifted - random), the two models' names and a one-sentence ``statement``.

    Raises:
        ValueError: the cards are not such a pair (other split rules, families, targets or test sizes).
    """
    rules = [card.details.get("split", {}) for card in (random_card, shifted_card)]
    family = rules[1].get("family", "")
    if rules[0].get("split_rule") != f"random-like:{family}" or rules[1].get("split_rule") != f"chemistry:{family}":
        raise ValueError("need a random-like:FAMILY card and a chemistry:FAMILY card of the same family")
    target = shifted_card.targets[0] if shifted_card.targets else ""
    if random_card.targets[:1] != [target]:
        raise ValueError(f"the two models learn different targets: {random_card.targets} vs {shifted_card.targets}")
    sizes = [card.details["split"]["sizes"] for card in (random_card, shifted_card)]
    if sizes[0] != sizes[1]:
        raise ValueError(f"the two splits have different block sizes: {sizes[0]} vs {sizes[1]}")
    random_mae = float(random_card.details["test_mae"][target])
    shifted_mae = float(shifted_card.details["test_mae"][target])
    symbols = list(rules[1].get("family_elements", []))
    elements = ", ".join(symbols[:-1]) + f" or {symbols[-1]}" if len(symbols) > 1 else "".join(symbols)
    units = shifted_card.units.split(", ")[0]
    n_test = int(sizes[1]["test"])
    ratio = shifted_mae / random_mae
    statement = (
        f"Measured on one pair of models trained with this project's recipe: on {n_test} crystals containing "
        f"{elements} ({family}), a chemistry absent from the training data, the {target.replace('_', ' ')} MAE "
        f"is {shifted_mae:.3f} {units}, {ratio:.2f}x (+{shifted_mae - random_mae:.3f} {units}) the "
        f"{random_mae:.3f} {units} on {n_test} crystals held out at random; expect this card's MAE to "
        "understate the error on chemistry unlike the training data."
    )
    return {
        "family": family,
        "elements": rules[1].get("family_elements", []),
        "target": target,
        "units": units,
        "n_test": n_test,
        "n_train": int(sizes[1]["train"]),
        "random_mae": round(random_mae, 4),
        "shifted_mae": round(shifted_mae, 4),
        "ratio": round(ratio, 2),
        "difference": round(shifted_mae - random_mae, 4),
        "models": {"random": random_card.name, "shifted": shifted_card.name},
        "statement": statement,
    }
