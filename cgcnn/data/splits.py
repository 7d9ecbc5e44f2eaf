"""Reproducible splits: one canonical order per target, and studies that take prefixes of its blocks.

Splits follow one rule for every target (see :func:`canonical_order` and :func:`make_split`): the ids having
the target are shuffled once with ``numpy.random.default_rng(split_seed)``; the first block of that
canonical order is the test block, the next the validation block, the rest the training block. Asking for
fewer crystals takes a prefix of each block, so a smaller study never sees a crystal that a larger study with
the same seed used for another role.

Splits by chemistry (:func:`rule_split`) measure distribution shift inside the default data: ``chemistry:FAMILY``
makes every crystal containing an element of FAMILY the test block, so the model is tested only on chemistry
it never trained on; ``random-like:FAMILY`` is its control, a random split with exactly the same block sizes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cgcnn.data.datasets import CrystalDataset, DatasetError
from cgcnn.data.dedup import groups_for, twins

#: The study protocol's target and crystals per split (test, validation, train); with its epochs they make
#: :data:`cgcnn.training.protocol.STUDY`, the one declaration the rest of the project reads.
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


# --------------------------------------------------------------------------------------------------------------
# Distribution shift: splits by chemistry
# --------------------------------------------------------------------------------------------------------------

#: Named element families a chemistry split can hold out (``chemistry:NAME``). A family can also be written as
#: its elements joined by ``+`` (``chemistry:Fe+Co+Ni``).
ELEMENT_FAMILIES: dict[str, tuple[str, ...]] = {
    "halogens": ("F", "Cl", "Br", "I", "At"),
    "iron-triad": ("Fe", "Co", "Ni"),
    "platinum-group": ("Ru", "Rh", "Pd", "Os", "Ir", "Pt"),
    "coinage-metals": ("Cu", "Ag", "Au"),
    "alkali-metals": ("Li", "Na", "K", "Rb", "Cs"),
    "alkaline-earth-metals": ("Be", "Mg", "Ca", "Sr", "Ba"),
    "lanthanides": ("La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu"),
    "actinides": ("Ac", "Th", "Pa", "U", "Np", "Pu"),
}
#: The split kinds (``--split`` of ``pretrain``): ``random``; ``chemistry:FAMILY`` (every crystal containing an
#: element of FAMILY is the test block, none of them is trained or validated on); ``random-like:FAMILY`` (a
#: random split with exactly the block sizes of ``chemistry:FAMILY``: its control).
SPLIT_KINDS = ("random", "chemistry", "random-like")

_ELEMENT_SYMBOL = re.compile(r"[A-Z][a-z]?")


@dataclass(frozen=True)
class SplitRule:
    """A named way to cut a set of crystals into training, validation and test blocks.

    Attributes:
        kind: one of :data:`SPLIT_KINDS`.
        family: the held-out element family's name (``iron-triad`` or ``Fe+Co+Ni``); empty for ``random``.
        elements: the family's element symbols.
    """

    kind: str = "random"
    family: str = ""
    elements: frozenset[str] = frozenset()

    def __str__(self) -> str:
        return self.kind if self.kind == "random" else f"{self.kind}:{self.family}"


def parse_split_rule(text: str) -> SplitRule:
    """``random``, ``chemistry:FAMILY`` or ``random-like:FAMILY`` -> :class:`SplitRule`.

    Raises:
        DatasetError: an unknown kind or family, or an element symbol that does not exist.
    """
    kind, _, family = text.strip().partition(":")
    if kind not in SPLIT_KINDS:
        raise DatasetError(f"unknown split {text!r}: use random, chemistry:FAMILY or random-like:FAMILY")
    if kind == "random":
        if family:
            raise DatasetError(f"the random split takes no family, got {text!r}")
        return SplitRule()
    return SplitRule(kind=kind, family=family, elements=family_elements(family))


def family_elements(family: str) -> frozenset[str]:
    """The element symbols of a family: a name of :data:`ELEMENT_FAMILIES` or symbols joined by ``+``.

    Raises:
        DatasetError: an unknown name or element.
    """
    if family in ELEMENT_FAMILIES:
        return frozenset(ELEMENT_FAMILIES[family])
    symbols = [s.strip() for s in family.split("+") if s.strip()]
    known = _element_symbols()
    if not symbols or any(s not in known for s in symbols):
        raise DatasetError(
            f"unknown element family {family!r}: use one of {', '.join(ELEMENT_FAMILIES)} or elements joined "
            "by '+', e.g. Fe+Co+Ni"
        )
    return frozenset(symbols)


def elements_of_formula(formula: str) -> frozenset[str]:
    """Element symbols of a formula such as ``Fe2O3`` or ``LiCoO2`` (no brackets, as reduced formulas are)."""
    return frozenset(_ELEMENT_SYMBOL.findall(formula))


def dataset_elements(dataset: CrystalDataset, ids: Iterable[str]) -> dict[str, frozenset[str]]:
    """Element symbols of each crystal in ``ids``, read from its atomic numbers (exact, no formula parsing)."""
    from pymatgen.core import Element

    out = {}
    for cid in ids:
        _, numbers, _ = dataset.arrays(cid)
        out[cid] = frozenset(Element.from_Z(int(z)).symbol for z in np.unique(numbers))
    return out


def family_members(elements_by_id: Mapping[str, Iterable[str]], elements: Iterable[str]) -> list[str]:
    """Sorted ids of the crystals containing at least one of ``elements``."""
    family = set(elements)
    return sorted(cid for cid, present in elements_by_id.items() if family & set(present))


def rule_split(
    rule: SplitRule,
    elements_by_id: Mapping[str, Iterable[str]],
    split_seed: int,
    val_fraction: float,
    test_fraction: float,
    label: str = "pretraining",
) -> Split:
    """Cut the crystals of ``elements_by_id`` by ``rule``; the same seed always gives the same split.

    Every kind permutes the sorted ids by ``default_rng(split_seed)`` (the rule of ``pretrain``'s own split)
    and takes blocks of ``n_val = round(n * val_fraction)`` validation crystals:

    - ``random``: test = the first ``round(n * test_fraction)``, then validation, then training;
    - ``chemistry``: test = every crystal containing a family element (``test_fraction`` is not used);
      validation = the first ``n_val`` of the others, training = the rest. No family crystal is trained or
      validated on, so the test block measures the error on chemistry the model never saw;
    - ``random-like``: a random split with exactly the chemistry split's block sizes (test = the first
      ``n_family`` of the permutation), so the two test MAEs differ only by *which* crystals are tested.

    Raises:
        DatasetError: too few crystals for three non-empty blocks, or a family with no crystal.
    """
    ordered = sorted(elements_by_id)
    perm = np.random.default_rng(split_seed).permutation(len(ordered))
    order = [ordered[i] for i in perm]
    n_val = round(len(order) * val_fraction)
    if rule.kind == "random":
        n_test = round(len(order) * test_fraction)
    else:
        members = family_members(elements_by_id, rule.elements)
        if not members:
            raise DatasetError(f"no crystal contains an element of {rule.family} ({', '.join(sorted(rule.elements))})")
        n_test = len(members)
    if n_test < 1 or n_val < 1 or len(order) - n_test - n_val < 2:
        raise DatasetError(f"{len(order)} crystals are too few for a training/validation/test split by {rule}")
    if rule.kind == "chemistry":
        held_out = set(members)
        test = tuple(cid for cid in order if cid in held_out)
        rest = [cid for cid in order if cid not in held_out]
        return Split(label, split_seed, train=tuple(rest[n_val:]), val=tuple(rest[:n_val]), test=test)
    return Split(
        label,
        split_seed,
        train=tuple(order[n_test + n_val :]),
        val=tuple(order[n_test : n_test + n_val]),
        test=tuple(order[:n_test]),
    )


def _element_symbols() -> frozenset[str]:
    from pymatgen.core import Element

    return frozenset(e.symbol for e in Element)
