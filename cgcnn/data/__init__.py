"""Crystals to graphs: element features, CIF reading, datasets and splits, graphs and their cache."""

from __future__ import annotations

from cgcnn._facade import lazy_exports

_EXPORTS = {
    "CrystalDataset": "cgcnn.data.datasets",
    "load_default_dataset": "cgcnn.data.datasets",
    "TARGET_UNITS": "cgcnn.data.datasets",
    "DatasetError": "cgcnn.data.datasets",
    "Split": "cgcnn.data.splits",
    "make_split": "cgcnn.data.splits",
    "protocol_split": "cgcnn.data.splits",
    "canonical_order": "cgcnn.data.splits",
    "pretraining_ids": "cgcnn.data.splits",
    "read_cgcnn_folder": "cgcnn.data.folders",
    "read_zip": "cgcnn.data.folders",
    "export_cgcnn_folder": "cgcnn.data.folders",
    "CrystalGraph": "cgcnn.data.graph",
    "GraphParams": "cgcnn.data.graph",
    "BuildOptions": "cgcnn.data.graph",
    "GraphBatch": "cgcnn.data.graph",
    "GraphSet": "cgcnn.data.graph",
    "structure_to_graph": "cgcnn.data.graph",
    "collate": "cgcnn.data.graph",
    "get_graphs": "cgcnn.data.graph_cache",
    "ElementTable": "cgcnn.data.elements",
    "original_table": "cgcnn.data.elements",
    "read_structure": "cgcnn.data.crystal_io",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
