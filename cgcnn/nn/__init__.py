"""Neural networks on crystal graphs: convolutions, the model, edge removal, checkpoints and the predictor."""

from __future__ import annotations

from cgcnn._facade import lazy_exports

_EXPORTS = {
    "CONV_LAYERS": "cgcnn.nn.layers",
    "GatedConv": "cgcnn.nn.conv",
    "register_conv": "cgcnn.nn.conv",
    "gather_rows": "cgcnn.nn.conv",
    "AttentionConv": "cgcnn.nn.attention",
    "EdgeAttentionConv": "cgcnn.nn.attention",
    "CrystalGraphConvNet": "cgcnn.nn.model",
    "ModelConfig": "cgcnn.nn.model",
    "Normalizer": "cgcnn.nn.normalizer",
    "ModelCard": "cgcnn.nn.cards",
    "load_checkpoint": "cgcnn.nn.checkpoint",
    "save_checkpoint": "cgcnn.nn.checkpoint",
    "Predictor": "cgcnn.nn.predictor",
    "remove_edges": "cgcnn.nn.removal",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
