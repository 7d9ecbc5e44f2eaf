"""Structure-level duplicates: crystals that are the same structure under different ids.

Excluding a test block by id does not exclude its twins: Materials Project lists some structures twice (for
example a polymorph re-relaxed under a new id). A model pretrained on a twin has, in effect, seen the test
crystal. :func:`duplicate_groups` finds them with pymatgen's ``StructureMatcher`` on reduced structures; only
crystals of the same reduced formula can match, so the comparison is bucketed by formula and stays fast
(quadratic only inside a bucket).
"""

from __future__ import annotations

import warnings
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterable

from cgcnn.data.datasets import CrystalDataset

#: Metadata key under which ``data build-default`` stores the groups of the whole dataset.
GROUPS_KEY = "duplicate_groups"

#: StructureMatcher tolerances (pymatgen's defaults): fractional length, site and angle (degrees).
MATCH_TOLERANCES = {"ltol": 0.2, "stol": 0.3, "angle_tol": 5.0}


def duplicate_groups(
    dataset: CrystalDataset,
    ids: Iterable[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[list[str]]:
    """Groups (two or more ids, sorted) of structure-equivalent crystals among ``ids`` (default: all).

    Returns the groups sorted by their first id, so the result is the same on every run.
    """
    from pymatgen.analysis.structure_matcher import StructureMatcher

    chosen = list(dataset.ids.tolist() if ids is None else ids)
    buckets: dict[str, list[str]] = defaultdict(list)
    for cid in chosen:
        buckets[str(dataset.formulas[dataset.index_of(cid)])].append(cid)
    matcher = StructureMatcher(primitive_cell=True, scale=True, attempt_supercell=False, **MATCH_TOLERANCES)
    groups: list[list[str]] = []
    candidates = [members for members in buckets.values() if len(members) > 1]
    for done, members in enumerate(candidates, start=1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structures = [dataset.structure(cid).get_reduced_structure() for cid in members]
            by_id = {id(s): cid for s, cid in zip(structures, members, strict=True)}
            for group in matcher.group_structures(structures):
                if len(group) > 1:
                    groups.append(sorted(by_id[id(s)] for s in group))
        if progress:
            progress(done, len(candidates))
    return sorted(groups)


def twins(groups: list[list[str]], ids: Iterable[str]) -> set[str]:
    """Every id structure-equivalent to one of ``ids`` (``ids`` themselves excluded).

    For example the crystals a pretraining set must drop so that it holds no twin of a test block.
    """
    wanted = set(ids)
    out: set[str] = set()
    for group in groups:
        if wanted.intersection(group):
            out.update(cid for cid in group if cid not in wanted)
    return out


#: Groups computed on the fly, per dataset object and id selection (datasets without stored groups).
_computed: weakref.WeakKeyDictionary[CrystalDataset, dict[frozenset[str], list[list[str]]]] = (
    weakref.WeakKeyDictionary()
)


def groups_for(dataset: CrystalDataset, ids: Iterable[str]) -> list[list[str]]:
    """The duplicate groups that hold any of ``ids``: from the dataset's metadata when it has them.

    ``data build-default`` stores the groups of the whole default dataset (a subset keeps its parent's
    metadata, so its groups may name crystals it lacks; callers intersect with what they use). A dataset
    without stored groups (a user's folder, an older asset) gets them computed for the formula buckets of
    ``ids`` only, which is enough to find every twin of ``ids``, and cached per dataset object.
    """
    wanted = set(ids)
    stored = dataset.metadata.get(GROUPS_KEY)
    if stored is None:
        cache = _computed.setdefault(dataset, {})
        key = frozenset(wanted)
        if key not in cache:
            formulas = {str(dataset.formulas[dataset.index_of(cid)]) for cid in wanted}
            bucket = [str(cid) for cid, f in zip(dataset.ids, dataset.formulas, strict=True) if str(f) in formulas]
            cache[key] = duplicate_groups(dataset, bucket)
        stored = cache[key]
    return [list(g) for g in stored if wanted.intersection(g)]
