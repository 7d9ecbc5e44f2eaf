"""An external check of the bulk-modulus models: ASE's ``dcdft`` collection (71 elemental solids), ``dcdft.json``.

Usage (from the repository root; needs ``ase``, pinned in requirements.txt)::

    python docs/results/uncertainty/dcdft_check.py --out docs/results/uncertainty

The labels are the Delta-test's WIEN2k equation-of-state bulk moduli B0 (GPa; ``exp_B`` where the collection
has an experimental value), not the Voigt-Reuss-Hill K of Materials Project that the models learned, and the
originals were trained on Materials Project, which holds these elements: so this is a check of how far the
models carry to another definition and another code, not an unseen-data test. Predictions are compared in
log10(GPa), the models' unit. The noble gases and the molecular solids (H, N, O, F, Cl, Br, I and the noble
gases: van der Waals bound, WIEN2k B0 of 0.55-54 GPa) are also reported apart.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from cgcnn.zoo import load_model

#: Models that predict a bulk modulus, and which of their targets it is.
MODELS = {"bulk-moduli": "bulk_moduli", "own-combined": "log10_K_VRH"}
#: Van der Waals solids of the collection (noble gases and molecular crystals).
VDW = ("H", "He", "N", "O", "F", "Ne", "Cl", "Ar", "Br", "Kr", "I", "Xe", "Rn")


def _summary(errors: np.ndarray) -> dict:
    return {"n": len(errors), "mae": float(np.mean(np.abs(errors))), "bias": float(np.mean(errors))}


def main() -> None:
    """Predict the 71 solids with each bulk-modulus model and write ``dcdft.json``."""
    from ase.collections import dcdft
    from pymatgen.io.ase import AseAtomsAdaptor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of dcdft.json")
    args = parser.parse_args()
    names = list(dcdft.names)
    structures = [AseAtomsAdaptor.get_structure(dcdft[name]) for name in names]
    wien2k = np.log10([dcdft.data[name]["wien2k_B"] for name in names])
    has_exp = np.array(["exp_B" in dcdft.data[name] for name in names])
    exp = np.log10([dcdft.data[name].get("exp_B", np.nan) for name in names])
    vdw = np.array([name in VDW for name in names])
    report = {"labels": "log10 of the WIEN2k EOS B0 (GPa) of ASE's dcdft collection; exp_B where given", "models": {}}
    for model_name, target in MODELS.items():
        predictor = load_model(model_name)
        start = time.perf_counter()
        predicted = predictor.predict_structures(structures)[:, predictor.targets.index(target)]
        seconds = time.perf_counter() - start
        report["models"][model_name] = {
            "target": target,
            "all_vs_wien2k": _summary(predicted - wien2k),
            "without_vdw_vs_wien2k": _summary((predicted - wien2k)[~vdw]),
            "vdw_vs_wien2k": _summary((predicted - wien2k)[vdw]),
            "vs_experiment": _summary((predicted - exp)[has_exp]),
            "spearman_without_vdw": float(_spearman(predicted[~vdw], wien2k[~vdw])),
            "seconds": round(seconds, 2),
            "predictions": {name: round(float(v), 4) for name, v in zip(names, predicted, strict=True)},
        }
        print(model_name, json.dumps({k: v for k, v in report["models"][model_name].items() if k != "predictions"}))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dcdft.json").write_text(json.dumps(report, indent=1) + "\n")


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return spearmanr(a, b).statistic


if __name__ == "__main__":
    main()
