"""Crystal Graph Convolutional Neural Networks: graphs, models, transfer learning.

The public facade is small: build graphs with :func:`cgcnn.graph.structure_to_graph`, load a model with
:func:`cgcnn.zoo.load_model`, predict with :meth:`cgcnn.predictor.Predictor.predict`. Everything else lives in
one module per concept (see README.md, "Architecture").
"""

from __future__ import annotations

__version__ = "0.1.0"
