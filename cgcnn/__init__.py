"""Crystal Graph Convolutional Neural Networks: graphs, models, transfer learning.

The package is layered; each layer imports only the ones above it in this list (``tests/test_structure.py``
checks it):

- :mod:`cgcnn.errors`, :mod:`cgcnn.settings`, :mod:`cgcnn.numerics`, :mod:`cgcnn.paths`, :mod:`cgcnn.names`,
  :mod:`cgcnn.storage`, ``cgcnn._facade``: errors a user can cause, the limits a server sets, the math-library
  settings that make runs reproducible (applied on import, before torch), the project's folders, the rule for
  names people choose, disk and database faults as one message, and the lazy imports of the package facades;
- :mod:`cgcnn.data`: elements, crystal files, datasets and splits, graphs and their cache;
- :mod:`cgcnn.nn`: convolutions, the model, checkpoints, the predictor;
- :mod:`cgcnn.build`: the tool that builds the default dataset (``data build-default``, the only code that
  downloads), outside the runtime packages;
- :mod:`cgcnn.testing`: invariance checks of a model (permutation, supercell, translation, rotation), for tests
  and for people who add a layer;
- :mod:`cgcnn.runs`: the run store and the job queue;
- :mod:`cgcnn.zoo`: models by name (original, own, saved runs);
- :mod:`cgcnn.training`, :mod:`cgcnn.analysis`: training and transfer; probes, explanations, figures;
- :mod:`cgcnn.experiments`: sweeps and the study's numbers;
- :mod:`cgcnn.lessons`: lesson files, a class's lesson sessions (answers, the dealt grid) and their export;
- :mod:`cgcnn.app`, :mod:`cgcnn.cli`: what the pages compute, and the command line.

The public facade is small: build a graph with :func:`structure_to_graph` (with the model's
``Predictor.graph_params``), load a model with :func:`load_model`, predict with
``Predictor.predict_structures`` (or ``python -m cgcnn predict``), fine-tune with :func:`run_finetune` and a
:class:`FinetuneSpec`. Names are imported on first use.
"""

from __future__ import annotations

from cgcnn._facade import lazy_exports
from cgcnn.numerics import pin_numerics

pin_numerics()  # before any module of the package imports torch (see cgcnn.numerics)

__version__ = "0.1.0"

_EXPORTS = {
    "CGCNNError": "cgcnn.errors",
    "CrystalGraph": "cgcnn.data.graph",
    "GraphParams": "cgcnn.data.graph",
    "structure_to_graph": "cgcnn.data.graph",
    "load_default_dataset": "cgcnn.data.datasets",
    "CrystalGraphConvNet": "cgcnn.nn.model",
    "ModelConfig": "cgcnn.nn.model",
    "Predictor": "cgcnn.nn.predictor",
    "RunStore": "cgcnn.runs.store",
    "load_model": "cgcnn.zoo",
    "list_cards": "cgcnn.zoo",
    "FinetuneSpec": "cgcnn.training.finetune",
    "run_finetune": "cgcnn.training.finetune",
    "freeze_layers": "cgcnn.training.transfer",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
