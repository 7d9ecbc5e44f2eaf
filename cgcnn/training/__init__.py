"""Training: the train loop, transfer (freeze k layers), fine-tuning strategies, the study's protocol, pretraining."""

from __future__ import annotations

from cgcnn._facade import lazy_exports

_EXPORTS = {
    "TrainConfig": "cgcnn.training.train",
    "TrainResult": "cgcnn.training.train",
    "train_model": "cgcnn.training.train",
    "freeze_layers": "cgcnn.training.transfer",
    "prepare_transfer": "cgcnn.training.transfer",
    "FinetuneSpec": "cgcnn.training.finetune",
    "run_finetune": "cgcnn.training.finetune",
    "PretrainSpec": "cgcnn.training.pretrain",
    "pretrain": "cgcnn.training.pretrain",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
