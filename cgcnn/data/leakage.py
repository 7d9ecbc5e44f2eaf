"""Leakage by structure: test crystals whose structure twin was among the crystals a model learnt from.

The canonical split keeps every id in one role, but an id is not a structure: a test crystal whose twin (see
:mod:`cgcnn.data.dedup`) sits in the fine-tune training block or in a pretraining set has, in effect, been
seen. :func:`twin_leaks` says which test crystals of a split are affected and through which set, so that
stored results can be re-scored without them (``sweep-summary --exclude-twins``) and the dataset README can
report the count. The split itself stays as it is, so shipped results remain comparable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cgcnn.data.datasets import CrystalDataset
from cgcnn.data.dedup import groups_for, twins
from cgcnn.data.splits import PROTOCOL_SIZE, PROTOCOL_TARGET, canonical_blocks, pretraining_ids


@dataclass(frozen=True)
class TwinLeaks:
    """Which crystals of one band-gap test block have a structure twin elsewhere, and where.

    Attributes:
        split_seed: the canonical split.
        n_train: size of the fine-tune training set (a prefix of the training block).
        n_test: size of the test set (a prefix of the test block).
        pretraining_split_seed: the split seed whose test block the pretraining pool left out (the committed
            own models: 0, whatever split a fine-tune uses).
        where: set name → ids of test crystals with a twin in that set. Sets: ``pretraining`` (the id-only
            pretraining pool the committed models used: every crystal with a label outside the test block of
            ``pretraining_split_seed``), ``finetune_train`` (the first ``n_train`` of the training block),
            ``validation`` (the validation block), ``test`` (another crystal of the same test set); and
            ``pretraining_by_id``: test crystals that are in the pretraining pool themselves (none when the
            pool left out this split's test block).
    """

    split_seed: int
    n_train: int
    n_test: int
    where: dict[str, tuple[str, ...]] = field(default_factory=dict)
    pretraining_split_seed: int = 0

    @property
    def leaked(self) -> tuple[str, ...]:
        """Test crystals seen in training or pretraining, as a twin or (pretraining of another split) by id."""
        seen = ("pretraining", "pretraining_by_id", "finetune_train")
        return tuple(sorted(set().union(*(self.where[name] for name in seen))))

    def to_dict(self) -> dict[str, Any]:
        """Counts per set and the leaked ids (for metadata, the README and result folders)."""
        return {
            "split_seed": self.split_seed,
            "pretraining_split_seed": self.pretraining_split_seed,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "n_with_twin_in": {name: len(ids) for name, ids in self.where.items()},
            "n_leaked": len(self.leaked),
            "leaked": list(self.leaked),
        }


def twin_leaks(
    dataset: CrystalDataset,
    split_seed: int = 0,
    n_train: int = PROTOCOL_SIZE,
    n_test: int = PROTOCOL_SIZE,
    pretraining_split_seed: int | None = None,
) -> TwinLeaks:
    """The test crystals of the band-gap split ``split_seed`` whose twin is in a set a model learnt from.

    The pretraining pool is the union over every label of :func:`cgcnn.data.splits.pretraining_ids` with the
    id-only rule (``exclude_twins=False``) for ``pretraining_split_seed`` (default: ``split_seed``), i.e. what
    the shipped models could have seen; the twin rule of newer pretrainings removes exactly the
    ``pretraining`` entries when both seeds agree. A fine-tune on split 1 from a model pretrained around the
    split-0 test block meets most of its test crystals in the pool by id (``pretraining_by_id``).
    """
    pre_seed = split_seed if pretraining_split_seed is None else pretraining_split_seed
    blocks = canonical_blocks(dataset, PROTOCOL_TARGET, split_seed)
    test = blocks.test[:n_test]
    groups = groups_for(dataset, test)
    pool: set[str] = set()
    for target in dataset.targets:
        pool.update(pretraining_ids(dataset, target, pre_seed, exclude_twins=False))
    sets = {
        "pretraining": pool,
        "finetune_train": set(blocks.train[:n_train]),
        "validation": set(blocks.val),
        "test": set(test),
    }
    where: dict[str, tuple[str, ...]] = {}
    for name, members in sets.items():
        hit = [cid for cid in test if twins(groups, [cid]) & members]
        where[name] = tuple(sorted(hit))
    where["pretraining_by_id"] = tuple(sorted(cid for cid in test if cid in pool))
    return TwinLeaks(split_seed, n_train, len(test), where, pre_seed)
