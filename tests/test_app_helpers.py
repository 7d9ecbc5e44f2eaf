"""The computations behind the app pages (cgcnn.app.launch), without Streamlit."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from conftest import CIF_DIR

from cgcnn.analysis import explain
from cgcnn.app import classroom, launch, tables, uploads
from cgcnn.data.graph import structure_to_graph
from cgcnn.errors import CGCNNError
from cgcnn.nn.layers import CONV_LAYERS
from cgcnn.nn.model import CrystalGraphConvNet, ModelConfig
from cgcnn.runs import estimates
from cgcnn.runs.store import RunStore
from cgcnn.training.protocol import RunProtocol
from cgcnn.zoo import load_model


@pytest.fixture(scope="module")
def band_gap():
    return load_model("band-gap")


@pytest.fixture(scope="module")
def crystal():
    from conftest import read

    return read(sorted(p.stem for p in CIF_DIR.glob("*.cif"))[0])


def test_gate_weights_per_layer_and_contributions(band_gap, crystal):
    graph = structure_to_graph(crystal, band_gap.graph_params)
    layers, kind = explain.edge_weight_layers(band_gap, graph)
    assert kind == "gate" and len(layers) == band_gap.model.config.n_conv
    assert all(w.shape == (len(graph.edge_src), 1) and ((w > 0) & (w < 1)).all() for w in layers)
    per_atom, mean, prediction = explain.atom_contributions(band_gap, graph)
    assert per_atom.shape == (len(crystal),) and mean == pytest.approx(per_atom.mean())
    assert prediction == pytest.approx(float(band_gap.predict_structures([crystal])[0, 0]), abs=1e-5)


@pytest.mark.skipif("attention" not in CONV_LAYERS, reason="attention layers not in this checkout")
def test_attention_weights_have_one_column_per_head(band_gap, crystal):
    import dataclasses

    config = ModelConfig(n_conv=2, conv="attention", conv_options={"heads": 2}, targets=["y"])
    predictor = dataclasses.replace(band_gap, model=CrystalGraphConvNet(config).eval())
    graph = structure_to_graph(crystal, predictor.graph_params)
    layers, kind = explain.edge_weight_layers(predictor, graph)
    assert kind == "attention" and [w.shape for w in layers] == [(len(graph.edge_src), 2)] * 2
    # softmax over each atom's real edges: coefficients of one atom and head sum to one
    m = graph.max_neighbors
    sums = layers[0].reshape(-1, m, 2).sum(axis=1)
    assert np.allclose(sums, 1.0, atol=1e-5)


def test_launch_validates_before_queueing(tmp_path, monkeypatch):
    monkeypatch.setenv(classroom.WORKERS_ENV, "0")  # queue only: nothing runs here
    store = RunStore(tmp_path / "runs.sqlite")
    specs = launch.make_specs(["none", "band-gap"], [0, 5], RunProtocol("band_gap", 40, 20, 20, 2), [0])
    refused = []
    for spec in specs:
        try:
            spec.validate()
        except CGCNNError as exc:
            refused.append((launch.describe_spec(spec), str(exc)))
    assert [r[0] for r in refused] == ["scratch, freeze 5, seed 0", "band-gap, freeze 5, seed 0"]
    result = launch.launch(store, specs, owner="dora")
    assert len(result.run_ids) == 2 and len(result.refused) == 2
    assert {r.status for r in store.list_runs(owner="dora")} == {"queued"}
    with pytest.raises(CGCNNError, match="nothing was queued"):
        launch.launch(store, specs[1:2], owner="dora")
    with pytest.raises(CGCNNError, match="more than the"):
        launch.make_specs(["none"], [0], RunProtocol("log10_K_VRH", 5000, 20, 20, 2), [0])[0].validate()
    with pytest.raises(CGCNNError, match="unknown target"):
        launch.make_specs(["none"], [0], RunProtocol("colour", 40, 20, 20, 2), [0])[0].validate()


def test_upload_is_checked_and_kept_by_content(tmp_path, cif_dir):
    store = RunStore(tmp_path / "runs.sqlite")
    buffer = io.BytesIO()
    ids = sorted(p.stem for p in cif_dir.glob("*.cif"))[:6]
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data/id_prop.csv", "".join(f"{i},{k * 0.5}\n" for k, i in enumerate(ids)))
        for i in ids:
            archive.write(cif_dir / f"{i}.cif", f"data/{i}.cif")
    path, dataset = launch.save_upload(store, buffer.getvalue(), "mine.zip")
    assert path.parent == store.home / "uploads" and path.is_file() and len(dataset) == 6
    assert launch.save_upload(store, buffer.getvalue(), "again.zip")[0] == path
    with pytest.raises(CGCNNError, match=r"id_prop\.csv"):
        launch.save_upload(store, _zip({"a.cif": b"x"}), "bad.zip")
    with pytest.raises(CGCNNError, match="MB"):
        launch.save_upload(store, b"0" * (uploads.MAX_ZIP_UPLOAD_BYTES + 1), "huge.zip")


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_predict_uploads_reports_bad_files_by_name(band_gap, cif_dir):
    good = sorted(cif_dir.glob("*.cif"))[:3]
    files = [(p.name, p.read_bytes()) for p in good[:1]]
    files.append(("bundle.zip", _zip({p.name: p.read_bytes() for p in good[1:]} | {"notes.txt": b"hi"})))
    files.append(("empty.cif", b""))
    files.append(("junk.zip", b"not a zip"))
    table, errors = uploads.predict_uploads({"band-gap": band_gap}, files)
    assert len(table) == 3 and table["band-gap (eV)"].notna().all()
    assert table["file"].tolist()[1].startswith("bundle.zip/")
    assert any(e.startswith("empty.cif") for e in errors) and any(e.startswith("junk.zip") for e in errors)


def test_table2_groups_protocol_runs(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    for seed, mae in ((0, 0.80), (1, 0.84)):
        spec = {"pretrained": "bulk-moduli", "freeze": 1, "target": "band_gap", "n_train": 1000, "n_val": 1000,
                "n_test": 1000, "seed": seed, "data": None}  # fmt: skip
        run_id = store.create_run(spec, owner="t", status="running")
        store.finish(run_id, "done", test_mae=mae)
    small = store.create_run({**spec, "n_train": 40, "seed": 9}, owner="t", status="running")
    store.finish(small, "done", test_mae=0.1)
    cells = tables.table2_cells(store.list_runs())
    assert len(cells) == 1
    row = cells.iloc[0]
    assert (row["row"], row["freeze"], row["n"]) == ("bulk modulus", 1, 2)
    assert row["mean"] == pytest.approx(0.82) and row["std"] == pytest.approx(np.std([0.8, 0.84], ddof=1))
    merged = tables.table2_comparison(cells)
    hit = merged[(merged["row"] == "bulk modulus") & (merged["freeze"] == 1)].iloc[0]
    assert hit["study_mae"] == 0.776 and hit["difference"] == pytest.approx(0.82 - 0.776)
    assert len(merged) == 16  # 4 models x 3 depths, the scratch baseline, Table 3's matched-size row x 3


def test_shipped_sweep_results_fill_table2():
    runs = tables.shipped_runs()
    assert not runs.empty, "docs/results/*/runs.csv ship with the project"
    cells = tables.table2_cells(runs)
    assert {"scratch", "formation energy", "bulk modulus", "shear modulus"} <= set(cells["row"])
    assert (cells["n"] == 5).all()  # five seeds per cell, no more


def test_table2_reads_only_its_own_protocol():
    """Runs of other shipped sweeps (another split, the 100-epoch budget, reruns) never enter a cell."""
    import pandas as pd

    results = tables.shipped_results_dir()
    shipped = set(tables.shipped_runs()["run_id"])
    for other in ("budget", "multisplit", "rescored_3_splits", "shift", "table2_clamped"):
        path = results / other / "runs.csv"
        if path.is_file():
            foreign = set(pd.read_csv(path)["run_id"]) - set(pd.read_csv(results / "table2" / "runs.csv")["run_id"])
            foreign -= set(pd.read_csv(results / "table3" / "runs.csv")["run_id"])
            assert not foreign & shipped, f"runs of docs/results/{other} entered Table 2"
    # each cell is the mean its own sweep reported
    cells = tables.table2_cells(tables.shipped_runs()).set_index(["pretrained", "freeze"])
    for name in tables.TABLE2_RESULTS:
        summary = pd.read_csv(results / name / "summary.csv")
        for row in summary.itertuples():
            cell = cells.loc[(row.pretrained, row.freeze)]
            assert cell["n"] == row.n and cell["mean"] == pytest.approx(row.mean_mae, abs=1e-9)
    # a frame mixing protocols keeps split 0 of the study's sizes only
    mixed = pd.DataFrame(
        [
            {"run_id": "a", "pretrained": "none", "freeze": 0, "target": "band_gap", "n_train": 1000, "n_val": 1000,
             "n_test": 1000, "split_seed": 0, "test_mae": 0.5},
            {"run_id": "b", "pretrained": "none", "freeze": 0, "target": "band_gap", "n_train": 1000, "n_val": 1000,
             "n_test": 1000, "split_seed": 2, "test_mae": 0.9},
            {"run_id": "c", "pretrained": "none", "freeze": 0, "target": "band_gap", "n_train": 500, "n_val": 1000,
             "n_test": 1000, "split_seed": 0, "test_mae": 0.9},
        ]
    )  # fmt: skip
    assert tables.table2_cells(mixed)[["mean", "n"]].values.tolist() == [[0.5, 1]]


def test_table2_leaves_out_stored_runs_of_other_protocols(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    base = {"pretrained": "bulk-moduli", "freeze": 1, "target": "band_gap", "n_train": 1000, "n_val": 1000,
            "n_test": 1000, "seed": 0, "split_seed": 0, "data": None, "hyperparams": {"epochs": 30}}  # fmt: skip
    variants = {
        "protocol": {},
        "budget": {"hyperparams": {"epochs": 100}},
        "patience": {"hyperparams": {"epochs": 30, "patience": 5}},
        "split 1": {"split_seed": 1},
        "warm start": {"warm_start": True},
        "own data": {"data": "/somewhere/data.zip"},
    }
    for k, change in enumerate(variants.values()):
        run_id = store.create_run({**base, "seed": k, **change}, owner="t", status="running")
        store.finish(run_id, "done", test_mae=0.5 + k)
    cells = tables.table2_cells(store.list_runs())
    assert cells[["mean", "n"]].values.tolist() == [[0.5, 1]]


def test_search_and_workers(monkeypatch):
    from cgcnn.data.datasets import load_default_dataset

    found = tables.search_crystals(load_default_dataset(), "NaCl")
    assert "mp-22862" in found["id"].tolist() and (found["formula"].str.lower().str.contains("nacl")).all()
    monkeypatch.setenv(classroom.WORKERS_ENV, "3")
    assert classroom.worker_count() == 3
    monkeypatch.setenv(classroom.WORKERS_ENV, "many")
    with pytest.raises(CGCNNError):
        classroom.worker_count()


def test_freeze_choices_and_model_kind_come_from_checkpoint_headers():
    from cgcnn.training.finetune import FinetuneSpec

    assert launch.freeze_choices(["none"]) == [0]
    assert launch.freeze_choices(["none", "band-gap", "no-such-model"]) == [0, 1, 2, 3, 4]
    assert FinetuneSpec(pretrained="own-attention").to_dict()["model_kind"] == "attention"
    assert FinetuneSpec(pretrained="band-gap").to_dict()["model_kind"] == "gated"
    assert FinetuneSpec().is_scratch and FinetuneSpec().to_dict()["pretrained"] == "none"
    assert FinetuneSpec(pretrained="no-such-model").to_dict()["model_kind"] is None
    with pytest.raises(CGCNNError, match="band-gap has 4 convolutions"):
        FinetuneSpec(pretrained="band-gap", freeze=5, n_train=40, n_val=20, n_test=20).validate()


def _record(run_id, owner, n_train, epochs, created, status="done"):
    from cgcnn.runs.store import RunRecord

    return RunRecord(id=run_id, created_at=created, status=status, owner=owner, owner_key=owner, pretrained="none",
                     freeze=0,
                     target="band_gap", n_train=n_train, n_val=20, n_test=20, split_seed=0, seed=0,
                     spec={"hyperparams": {"epochs": epochs}})  # fmt: skip


def test_compare_opens_on_my_latest_protocol_only():
    records = [
        _record("a", "alice", 40, 3, 1.0),
        _record("b", "bob", 40, 3, 2.0),
        _record("c", "alice", 150, 30, 3.0),
        _record("d", "alice", 40, 3, 4.0),
        _record("e", "alice", 40, 3, 5.0, status="running"),
    ]
    assert tables.default_comparison(records, "alice") == ["d", "a"]
    assert tables.default_comparison(records, "") == ["d", "b", "a"]
    assert tables.default_comparison(records, "carol") == ["d", "b", "a"]
    label = tables.run_label(records[2])
    assert "150/20/20" in label and "30 ep" in label and "alice" in label and "k0" in label


def test_training_speed_ignores_tiny_runs_and_set_up_time(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    assert store.speed() == estimates.Speed(estimates.FALLBACK_SECONDS_PER_CRYSTAL_EPOCH, 0.0, measured=False)
    base = {"pretrained": "band-gap", "freeze": 1, "target": "band_gap", "n_test": 20, "data": None}
    demo = store.create_run({**base, "n_train": 40, "n_val": 20, "hyperparams": {"epochs": 3}}, status="running")
    for epoch in (1, 2, 3):  # 60 crystals in 4 s an epoch: mostly fixed costs
        store.add_epoch(demo, epoch, 1.0, 1.0, 1.0, 1.0, 4.0)
    store.finish(demo, "done", test_mae=1.0, seconds=12.0)
    assert not store.speed().measured
    real = store.create_run({**base, "n_train": 1000, "n_val": 1000, "hyperparams": {"epochs": 30}}, status="running")
    store.update(real, setup_seconds=5.0)
    for epoch, seconds in enumerate([2.0, 2.0, 9.0], 1):  # one slow epoch (a busy machine) does not set the speed
        store.add_epoch(real, epoch, 1.0, 1.0, 1.0, 1.0, seconds)
    speed = store.speed()
    assert speed.measured and speed.seconds_per_crystal_epoch == pytest.approx(2.0 / 2000)
    assert speed.setup_seconds == pytest.approx(5.0)
    assert speed.run_seconds(2000, 30) == pytest.approx(65.0)  # the set-up once, then 30 epochs


def test_training_speed_does_not_learn_a_busy_stretch():
    """Load only slows epochs down: after most recent epochs ran 3x slower (a class's pages, another program), the
    preview still reads the machine's own speed, not the load (issue 24: "about 2 min" for a 150-crystal run)."""
    quiet, busy = [(2.0, 2000)] * 4, [(6.0, 2000)] * 6
    speed = estimates.speed_from(busy + quiet)
    assert speed.seconds_per_crystal_epoch == pytest.approx(2.0 / 2000)
    # ... while one freak fast epoch cannot set it either
    assert estimates.speed_from([(0.1, 2000)] + quiet * 2).seconds_per_crystal_epoch == pytest.approx(2.0 / 2000)


def test_one_speed_model_feeds_preview_queue_and_progress(tmp_path, monkeypatch):
    """The launch preview, a queued run's ETA and a running run's time left agree (one model, one unit)."""
    from cgcnn.training.finetune import FinetuneSpec

    monkeypatch.setenv(classroom.WORKERS_ENV, "0")
    store = RunStore(tmp_path / "runs.sqlite")
    base = {"pretrained": "band-gap", "freeze": 1, "target": "band_gap", "n_train": 1000, "n_val": 1000}
    done = store.create_run({**base, "n_test": 20, "hyperparams": {"epochs": 2}}, status="running")
    for epoch in (1, 2):
        store.add_epoch(done, epoch, 1.0, 1.0, 1.0, 1.0, 3.0)
    store.finish(done, "done", test_mae=1.0)
    spec = FinetuneSpec(pretrained="band-gap", freeze=1, n_train=1000, n_val=1000, n_test=30, hyperparams={"epochs": 4})
    preview = launch.preview(store, [spec])
    assert preview.training_seconds == pytest.approx(12.0)  # 4 epochs x 3 s
    record = store.launch(spec.to_dict(), "ann")
    assert store.queue_eta(record.id) == (pytest.approx(12.0, abs=0.5), 0)
    store.claim_next()
    store.add_epoch(record.id, 1, 1.0, 1.0, 1.0, 1.0, 3.0)
    assert store.queue_eta(record.id)[0] == pytest.approx(9.0, abs=0.5)
    fraction, text = tables.run_progress(store.get(record.id), store.epochs(record.id))
    assert fraction == pytest.approx(0.25) and text == "epoch 1/4, about 9 s left"


def test_durations_read_as_people_say_them():
    words = ["42 s", "3 min 5 s", "30 min", "1 h 30 min"]
    assert [estimates.format_duration(s) for s in (42, 185, 1800, 5400)] == words


def test_serve_sets_the_server_address_so_start_up_asks_no_outside_service():
    """A headless server on every interface asked checkip.amazonaws.com for its IP ("Did not auto detect
    external IP" offline); ``browser.serverAddress`` stops that (issue 24)."""
    import serve

    given = ["--browser.serverAddress", "class.local"]
    assert serve.offline_options(given) == given
    assert serve.offline_options(["--server.address", "127.0.0.1"])[-2:] == ["--browser.serverAddress", "127.0.0.1"]
    assert serve.offline_options(["--server.address=10.0.0.5"])[-1] == "10.0.0.5"
    lan = serve.offline_options(["--server.address", "0.0.0.0", "--server.headless", "true"])
    assert lan[-2] == "--browser.serverAddress" and lan[-1] not in ("0.0.0.0", "")
    assert serve.offline_options([])[-2] == "--browser.serverAddress"
