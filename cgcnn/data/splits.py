"""Reproducible splits: one canonical order per target, and studies that take prefixes of its blocks.

Splits follow one rule for every target (see :func:`canonical_order` and :func:`make_split`): the ids having
the target are shuffled once with ``numpy.random.default_rng(split_seed)``; the first block of that
canonical order is the test block, the next the validation block, the rest the training block. Asking for
fewer crystals takes a prefix of each block, so a smaller study never sees a crystal that a larger study with
the same seed used for another role.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from cgcnn.data.datasets import CrystalDataset, DatasetError
from cgcnn.data.dedup import groups_for, twins

#: The study protocol: band-gap crystals per split (test, validation, train).
PROTOCOL_TARGET = "band_gap"
PROTOCOL_SIZE = 1000
#: Size of the canonical test and validation blocks (capped at a fifth of the crystals, see ``block_size``).
BLOCK_SIZE = 1000


# --------------------------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Train / validation / test ids of one study.

    Attributes:
        target: the label the split is for.
        split_seed: seed of the canonical order.
        train, val, test: ids, in canonical order.
        dataset_hash: content hash of the dataset the split was drawn from.
    """

    target: str
    split_seed: int
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    dataset_hash: str = ""

    @property
    def content_hash(self) -> str:
        """SHA-256 of the ordered ids and sizes: equal hashes mean the same crystals in the same roles."""
        payload = json.dumps(
            {
                "sizes": [len(self.train), len(self.val), len(self.test)],
                "train": list(self.train),
                "val": list(self.val),
                "test": list(self.test),
            }
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    @property
    def sizes(self) -> tuple[int, int, int]:
        """``(n_train, n_val, n_test)``."""
        return len(self.train), len(self.val), len(self.test)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (for run records and exports)."""
        return {
            "target": self.target,
            "split_seed": self.split_seed,
            "dataset_hash": self.dataset_hash,
            "content_hash": self.content_hash,
            "train": list(self.train),
            "val": list(self.val),
            "test": list(self.test),
        }


def block_size(n_with_target: int) -> int:
    """Size of the canonical test and validation blocks: ``min(1000, n // 5)``.

    1000 is the study protocol; the cap keeps at least three fifths of a small dataset (e.g. the 1,181
    elastic crystals: 236 / 236 / 709) for training.
    """
    return min(BLOCK_SIZE, n_with_target // 5)


def canonical_order(dataset: CrystalDataset, target: str, split_seed: int = 0) -> list[str]:
    """Ids having ``target``, sorted as strings, then permuted once by ``default_rng(split_seed)``.

    Sorting first makes the order independent of how the dataset happens to be ordered.
    """
    ids = sorted(dataset.with_target(target))
    perm = np.random.default_rng(split_seed).permutation(len(ids))
    return [ids[i] for i in perm]


@dataclass(frozen=True)
class CanonicalBlocks:
    """The three blocks of the canonical order: ``test = p[:b]``, ``val = p[b:2b]``, ``train = p[2b:]``."""

    test: tuple[str, ...]
    val: tuple[str, ...]
    train: tuple[str, ...]


def canonical_blocks(dataset: CrystalDataset, target: str, split_seed: int = 0) -> CanonicalBlocks:
    """Cut the canonical order of ``target`` into its test, validation and training blocks."""
    order = canonical_order(dataset, target, split_seed)
    b = block_size(len(order))
    return CanonicalBlocks(test=tuple(order[:b]), val=tuple(order[b : 2 * b]), train=tuple(order[2 * b :]))


def make_split(
    dataset: CrystalDataset, target: str, n_train: int, n_val: int, n_test: int, split_seed: int = 0
) -> Split:
    """Deterministic split: the first ``n_test`` of the test block, ``n_val`` of the validation block, ...

    Because each role takes a prefix of its own fixed block, a smaller study is nested in a larger one with
    the same seed, and no crystal changes role when sizes change.

    Raises:
        DatasetError: unknown target.
        ValueError: a size is negative or larger than its block.
    """
    blocks = canonical_blocks(dataset, target, split_seed)
    for role, n, block in (
        ("n_train", n_train, blocks.train),
        ("n_val", n_val, blocks.val),
        ("n_test", n_test, blocks.test),
    ):
        if n < 0:
            raise DatasetError(f"{role} must be >= 0, got {n}")
        if n > len(block):
            total = len(blocks.test) + len(blocks.val) + len(blocks.train)
            raise DatasetError(
                f"{role}={n} is more than the {len(block)} crystals of its block: dataset '{dataset.name}' has "
                f"{total} crystals with '{target}' (blocks test/val/train = {len(blocks.test)}/"
                f"{len(blocks.val)}/{len(blocks.train)})"
            )
    return Split(
        target=target,
        split_seed=split_seed,
        train=blocks.train[:n_train],
        val=blocks.val[:n_val],
        test=blocks.test[:n_test],
        dataset_hash=dataset.content_hash,
    )


def protocol_split(dataset: CrystalDataset, split_seed: int = 0) -> Split:
    """The study protocol: 1000 / 1000 / 1000 band-gap crystals."""
    return make_split(dataset, PROTOCOL_TARGET, PROTOCOL_SIZE, PROTOCOL_SIZE, PROTOCOL_SIZE, split_seed)


def pretraining_ids(dataset: CrystalDataset, target: str, split_seed: int = 0, exclude_twins: bool = True) -> list[str]:
    """Ids with ``target`` minus the canonical band-gap test block (same dataset, same seed) and its twins.

    A model pretrained on these ids has never seen a crystal on which a band-gap fine-tune with this seed
    is evaluated. (The whole test block is excluded, whatever ``n_test`` a study later uses.) Excluding by id
    is not enough: Materials Project lists some structures twice, so ``exclude_twins`` (the rule since the
    structure check) also drops every crystal structure-equivalent to one in the test block (see
    :mod:`cgcnn.data.dedup`). ``exclude_twins=False`` is the earlier, id-only rule that the committed zoo models
    were pretrained with. Order: the canonical order of ``target``.
    """
    excluded: set[str] = set()
    if PROTOCOL_TARGET in dataset.labels.columns:
        excluded = set(canonical_blocks(dataset, PROTOCOL_TARGET, split_seed).test)
        if exclude_twins:
            excluded |= twins_of_test_block(dataset, split_seed)
    return [cid for cid in canonical_order(dataset, target, split_seed) if cid not in excluded]


def twins_of_test_block(dataset: CrystalDataset, split_seed: int = 0) -> set[str]:
    """Crystals outside the band-gap test block of ``split_seed`` that are structure twins of one inside it."""
    test = canonical_blocks(dataset, PROTOCOL_TARGET, split_seed).test
    return twins(groups_for(dataset, test), test) & set(dataset.ids.tolist())


def first_n_canonical(dataset: CrystalDataset, target: str, n: int, split_seed: int = 0) -> Split:
    """The first ``n`` crystals of the canonical order, as a split (test block, then val, then train).

    ``n = 3000`` on the band gap is exactly the 1000 / 1000 / 1000 study protocol.

    Raises:
        ValueError: if fewer than ``n`` crystals have ``target``.
    """
    blocks = canonical_blocks(dataset, target, split_seed)
    total = len(blocks.test) + len(blocks.val) + len(blocks.train)
    if n < 0 or n > total:
        raise DatasetError(f"asked for {n} crystals but dataset '{dataset.name}' has {total} with '{target}'")
    n_test = min(n, len(blocks.test))
    n_val = min(n - n_test, len(blocks.val))
    return make_split(dataset, target, n - n_test - n_val, n_val, n_test, split_seed)
