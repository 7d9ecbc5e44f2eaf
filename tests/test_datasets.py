from __future__ import annotations

import io
import json
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cgcnn.cli import data as cli_data
from cgcnn.data.datasets import (
    DEFAULT_ASSET_NAME,
    DatasetError,
    default_asset_path,
    load_default_dataset,
    read_asset,
    write_asset,
)
from cgcnn.data.elements import original_table_path
from cgcnn.data.folders import (
    export_cgcnn_folder,
    read_cgcnn_folder,
    read_cifs_with_labels,
    read_zip,
)
from cgcnn.data.splits import (
    block_size,
    canonical_blocks,
    first_n_canonical,
    make_split,
    pretraining_ids,
    protocol_split,
    twins_of_test_block,
)

#: The committed asset is frozen: trained models record this hash.
FROZEN_HASH = "ee9242334c46b983fbe66dafb2b4a768f82772c6a92811a3b0dd3f365899789b"
ASSET = Path(__file__).resolve().parent.parent / "assets" / DEFAULT_ASSET_NAME


@pytest.fixture(scope="module")
def ds():
    return load_default_dataset()


def same_structure(a, b, tol=1e-5) -> bool:
    """Same cell (lengths, angles: a CIF does not keep the orientation) and same sites (any order, mod 1)."""
    if len(a) != len(b):
        return False
    if not (
        np.allclose(a.lattice.abc, b.lattice.abc, atol=tol)
        and np.allclose(a.lattice.angles, b.lattice.angles, atol=100 * tol)
    ):
        return False
    za = np.array([s.Z for s in a.species])
    zb = np.array([s.Z for s in b.species])
    diff = a.frac_coords[:, None, :] - b.frac_coords[None, :, :]
    diff -= np.round(diff)
    close = (np.abs(diff).max(axis=2) < tol) & (za[:, None] == zb[None, :])
    return bool(close.any(axis=1).all() and close.any(axis=0).all())


# ---- the embedded dataset -----------------------------------------------------------------------------------


def test_asset_is_frozen_and_resolved_beside_the_package(ds):
    assert default_asset_path() == ASSET
    assert ds.content_hash == FROZEN_HASH
    assert ds.metadata["content_hash"] == FROZEN_HASH


def test_counts(ds):
    assert len(ds) == 6317 == ds.metadata["n_crystals"]
    counts = ds.label_counts()
    assert counts["log10_K_VRH"] == counts["log10_G_VRH"] == 1181
    assert 6200 < counts["band_gap"] <= len(ds)
    assert 6200 < counts["formation_energy_per_atom"] <= len(ds)
    assert {t: c["total"] for t, c in ds.metadata["labels"].items()} == counts
    assert len(ds.rejected) == ds.metadata["n_rejected"]
    assert ds.metadata["conflicts"]["formation_energy_per_atom"]["n"] > 0
    assert ds.metadata["conflicts"]["band_gap"]["n"] > 0
    assert ds.metadata["structure_conflicts"]["n"] > 0


def test_ids_unique_and_labels_indexed_by_id(ds):
    assert len(set(ds.ids.tolist())) == len(ds)
    assert list(ds.labels.index) == ds.ids.tolist()
    assert all(i.startswith("mp-") for i in ds.ids.tolist())


def test_every_value_has_a_source(ds):
    values = ds.labels.notna().to_numpy()
    sources = ds.label_sources.map(lambda v: isinstance(v, str)).to_numpy()
    assert (values == sources).all()
    used = set(ds.label_sources.stack().dropna().unique()) | set(ds.structure_sources.unique())
    assert used <= set(ds.sources)
    assert ds.structure_sources.notna().all()
    assert "mp2018_megnet" in ds.metadata["mp_versions"]


def test_label_ranges(ds):
    lab = ds.labels
    assert (lab["band_gap"].dropna() >= 0).all()
    assert lab["log10_K_VRH"].dropna().between(0, 3).all()
    assert lab["log10_G_VRH"].dropna().between(0, 3).all()
    assert lab["formation_energy_per_atom"].dropna().between(-5, 5).all()


def test_structure_and_formula(ds):
    s = ds.structure("mp-10")
    assert s.composition.reduced_formula == "As" == ds.formulas[ds.index_of("mp-10")]
    assert len(s) == 2 and s.is_ordered
    assert [x.formula for x in ds.structures(["mp-10", "mp-10"])] == ["As2", "As2"]
    with pytest.raises(KeyError, match="mp-nope"):
        ds.structure("mp-nope")


def test_loading_is_fast_and_cached():
    t = time.perf_counter()
    read_asset(ASSET)
    assert time.perf_counter() - t < 2.0
    assert load_default_dataset() is load_default_dataset()


def test_drop_heavy(ds):
    light = load_default_dataset(drop_heavy=True)
    assert 0 < len(light) < len(ds)
    assert light.species.max() <= 80
    assert light.content_hash != ds.content_hash


def test_corrupt_asset_is_refused(tmp_path, monkeypatch):
    with np.load(ASSET, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["labels"] = arrays["labels"].copy()
    arrays["labels"][0, 0] += 1.0
    bad = tmp_path / "bad.npz"
    np.savez_compressed(bad, **arrays)
    monkeypatch.setenv("CGCNN_DATASET", str(bad))
    with pytest.raises(DatasetError, match="corrupt or was modified"):
        load_default_dataset()
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    monkeypatch.setenv("CGCNN_DATASET", str(tmp_path / "junk.npz"))
    with pytest.raises(DatasetError, match="cannot read"):
        load_default_dataset()
    monkeypatch.setenv("CGCNN_DATASET", str(tmp_path / "missing.npz"))
    with pytest.raises(DatasetError, match="not found"):
        load_default_dataset()


def test_subset_write_read_roundtrip(ds, tmp_path):
    sub = ds.subset(ds.ids[:30].tolist())
    path = tmp_path / "sub.npz"
    digest = write_asset(sub, path, {"note": "test"})
    back = read_asset(path)
    assert digest == sub.content_hash == back.content_hash
    pd.testing.assert_frame_equal(back.labels, sub.labels)
    assert back.ids.tolist() == sub.ids.tolist()
    for a, b in zip(back.arrays("mp-10"), ds.arrays("mp-10"), strict=True):
        np.testing.assert_array_equal(a, b)


# ---- splits -------------------------------------------------------------------------------------------------


def test_protocol_split_deterministic_and_disjoint(ds):
    a = protocol_split(ds, 0)
    b = make_split(ds, "band_gap", 1000, 1000, 1000, split_seed=0)
    assert a == b and a.content_hash == b.content_hash
    assert a.sizes == (1000, 1000, 1000)
    assert not set(a.train) & set(a.val) and not set(a.train) & set(a.test) and not set(a.val) & set(a.test)
    assert all(not np.isnan(ds.labels.at[i, "band_gap"]) for i in a.train + a.val + a.test)
    assert protocol_split(ds, 1).content_hash != a.content_hash


def test_smaller_sizes_are_prefixes(ds):
    big = make_split(ds, "band_gap", 3000, 1000, 1000)
    small = make_split(ds, "band_gap", 100, 50, 200)
    assert small.train == big.train[:100] and small.val == big.val[:50] and small.test == big.test[:200]
    # Changing one size never moves a crystal of another role.
    assert make_split(ds, "band_gap", 100, 1000, 50).val == big.val


def test_split_size_errors(ds):
    with pytest.raises(DatasetError, match="n_test=1001"):
        make_split(ds, "band_gap", 10, 10, 1001)
    with pytest.raises(DatasetError, match="n_train"):
        make_split(ds, "band_gap", 10_000, 10, 10)
    with pytest.raises(DatasetError, match="no target"):
        make_split(ds, "nonexistent", 1, 1, 1)


def test_small_target_blocks(ds):
    blocks = canonical_blocks(ds, "log10_K_VRH")
    assert len(blocks.test) == len(blocks.val) == block_size(1181) == 236
    assert len(blocks.train) == 1181 - 2 * 236


def test_pretraining_excludes_band_gap_test_block(ds):
    test_block = set(canonical_blocks(ds, "band_gap", 0).test)
    for target in ("formation_energy_per_atom", "band_gap", "log10_K_VRH"):
        pre = pretraining_ids(ds, target, 0)
        assert not set(pre) & test_block
        assert len(pre) == len(set(ds.with_target(target)) - test_block - twins_of_test_block(ds, 0))
        assert len(pretraining_ids(ds, target, 0, exclude_twins=False)) == len(set(ds.with_target(target)) - test_block)
    assert not set(pretraining_ids(ds, "formation_energy_per_atom", 0)) & set(protocol_split(ds).test)
    # Another seed gives another test block.
    assert set(pretraining_ids(ds, "band_gap", 3)) & test_block


def test_first_n_canonical(ds):
    s = first_n_canonical(ds, "band_gap", 3000)
    assert s == protocol_split(ds)
    s = first_n_canonical(ds, "band_gap", 1500)
    assert s.sizes == (0, 500, 1000)


# ---- CGCNN folder, zip, CIF list ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(ds, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "folder"
    split = first_n_canonical(ds, "band_gap", 12)
    ids = [*split.test, *split.val, *split.train]
    export_cgcnn_folder(ds, ids, "band_gap", out, split=split)
    return out, ids


def test_export_read_roundtrip(ds, exported):
    out, ids = exported
    assert (out / "atom_init.json").read_bytes() == original_table_path().read_bytes()
    rows = (out / "id_prop.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ids
    assert json.loads((out / "split.json").read_text())["test"] == ids
    back = read_cgcnn_folder(out)
    assert back.rejected == ()
    assert back.ids.tolist() == ids
    assert back.atom_init == original_table_path().read_text()
    np.testing.assert_array_equal(back.labels["target"].to_numpy(), ds.labels.loc[ids, "band_gap"].to_numpy())
    for cid in ids:
        assert same_structure(back.structure(cid), ds.structure(cid)), cid


def test_export_refuses_missing_label_and_nonempty_folder(ds, tmp_path):
    no_k = next(i for i in ds.ids.tolist() if np.isnan(ds.labels.at[i, "log10_K_VRH"]))
    with pytest.raises(DatasetError, match="have no 'log10_K_VRH'"):
        export_cgcnn_folder(ds, [no_k], "log10_K_VRH", tmp_path / "x")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "f.txt").write_text("x")
    with pytest.raises(DatasetError, match="not empty"):
        export_cgcnn_folder(ds, ["mp-10"], "band_gap", tmp_path / "busy")


def _zip_bytes(folder: Path, prefix: str = "", extra: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(folder.iterdir()):
            text = f.read_text()
            if f.name == "id_prop.csv" and extra:
                text += "".join(f"{Path(n).stem},1.5\n" for n in extra)
            zf.writestr(prefix + f.name, text)
        for name, text in (extra or {}).items():
            zf.writestr(prefix + name, text)
        zf.writestr("__MACOSX/._junk", "junk")
    return buf.getvalue()


def test_read_zip_reports_bad_cif_by_name(exported, tmp_path):
    out, ids = exported
    data = _zip_bytes(out, prefix="mydata/", extra={"broken-1.cif": "data_x\n_cell_length_a 3\nnonsense"})
    ds_zip = read_zip(data)
    assert ds_zip.ids.tolist() == ids
    assert [r[0] for r in ds_zip.rejected] == ["broken-1"]
    assert "CIF" in ds_zip.rejected[0][1]
    path = tmp_path / "d.zip"
    path.write_bytes(data)
    assert read_zip(path).ids.tolist() == ids


def test_read_zip_errors(exported):
    out, _ = exported
    with pytest.raises(DatasetError, match="not a zip"):
        read_zip(b"hello")
    with pytest.raises(DatasetError, match="limit"):
        read_zip(_zip_bytes(out), max_bytes=100)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.cif", "x")
    with pytest.raises(DatasetError, match=r"no id_prop\.csv"):
        read_zip(buf.getvalue())


def test_folder_missing_cif_and_bad_label(exported, tmp_path):
    out, ids = exported
    folder = tmp_path / "f"
    shutil.copytree(out, folder)
    (folder / f"{ids[0]}.cif").unlink()
    (folder / "id_prop.csv").write_text((folder / "id_prop.csv").read_text() + "mp-10,abc\n")
    back = read_cgcnn_folder(folder)
    reasons = dict(back.rejected)
    assert "no CIF file" in reasons[ids[0]]
    assert "not a number" in reasons["mp-10"]
    assert len(back) == len(ids) - 1
    with pytest.raises(DatasetError, match=r"no id_prop\.csv"):
        read_cgcnn_folder(tmp_path)


def test_read_cifs_with_labels(exported, tmp_path):
    out, ids = exported
    labels = tmp_path / "labels.csv"
    labels.write_text("material,gap,other\n" + "".join(f"{i},{k}.5,{k}\n" for k, i in enumerate(ids[:5])))
    back = read_cifs_with_labels([out / f"{i}.cif" for i in ids[:6]], labels)
    assert back.ids.tolist() == ids[:5]
    assert back.targets == ["gap", "other"]
    assert back.labels.at[ids[1], "gap"] == 1.5
    assert dict(back.rejected) == {ids[5]: "CIF without a label in the labels file"}


# ---- CLI ----------------------------------------------------------------------------------------------------


def test_cli_info_json(capsys):
    assert cli_data.main(["data", "info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_crystals"] == 6317 and info["n_rejected"] == 0
    assert info["labels"]["log10_K_VRH"] == 1181
    assert set(info["labels"]) >= {"formation_energy_per_atom", "band_gap", "log10_K_VRH", "log10_G_VRH"}
    assert info["content_hash"] == FROZEN_HASH


def test_cli_export_and_errors(tmp_path, capsys):
    assert cli_data.main(["data", "export", "--n", "5", "--seed", "2", str(tmp_path / "o")]) == 0
    assert len((tmp_path / "o" / "id_prop.csv").read_text().splitlines()) == 5
    capsys.readouterr()
    assert cli_data.main(["data", "export", "--target", "nope", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_nan_and_infinite_labels_are_reported_not_trained_on(tmp_path):
    from cgcnn.data.folders import read_cgcnn_folder

    src = Path(__file__).parent / "data" / "cifs"
    for name in ("mp-30", "mp-720", "mp-2184"):
        (tmp_path / f"{name}.cif").write_text((src / f"{name}.cif").read_text())
    (tmp_path / "id_prop.csv").write_text("mp-30,1.0\nmp-720,nan\nmp-2184,inf\n")
    ds = read_cgcnn_folder(tmp_path)
    assert list(ds.ids) == ["mp-30"]
    reasons = dict(ds.rejected)
    assert "NaN" in reasons["mp-720"] and "infinite" in reasons["mp-2184"]
