"""Removing edges from a batch: what "without this edge" means for each convolution kind.

Two modes, because for attention they answer different questions:

- ``delete``: the edge is gone. An attention layer masks it before the softmax (as it masks fill-in edges), so
  the coefficients renormalise over the atom's remaining real neighbours; a gated layer drops its message.
  This is the counterfactual "the crystal graph without this edge", and what every ranking is scored under.
- ``zero``: the edge's message is multiplied by 0 *after* the softmax: the other coefficients are not
  renormalised (the occlusion this project used first). To first order its effect is attention × message, so
  it is correlated with attention by construction; keep it for comparison.

A gated layer has no softmax: each edge's message is summed on its own, so the two modes are the same model
(``tests/test_faithfulness.py`` checks it to 1e-6). Deleting every real edge of an atom leaves the attention
layer's update with no message (zeros, not NaN), exactly as for an atom whose edges are all fill-ins.

Both act through :class:`~cgcnn.data.graph.GraphBatch` fields every layer reads: ``edge_mask`` (the softmax's
set of neighbours) and ``edge_scale`` (a factor on each message after the softmax).
"""

from __future__ import annotations

import dataclasses

import torch

from cgcnn.data.graph import GraphBatch
from cgcnn.errors import CGCNNError

#: The modes of :func:`remove_edges`, default first.
REMOVAL_MODES = ("delete", "zero")


def remove_edges(batch: GraphBatch, mask: torch.Tensor, mode: str = "delete") -> GraphBatch:
    """A copy of ``batch`` in which the edges where ``mask`` is True are removed, in every convolution.

    Args:
        batch: the batch (its tensors are not modified).
        mask: ``(E,)`` bool, True for each edge to remove (batch-global edge order).
        mode: ``delete`` (the edge is gone; attention renormalises over the remaining real neighbours) or
            ``zero`` (its message × 0 after the softmax); see the module docstring.

    Raises:
        CGCNNError: an unknown mode, or a mask of the wrong shape.
    """
    if mode not in REMOVAL_MODES:
        raise CGCNNError(f"unknown edge removal mode {mode!r}: use one of {', '.join(REMOVAL_MODES)}")
    mask = torch.as_tensor(mask, dtype=torch.bool)
    if mask.shape != batch.edge_mask.shape:
        raise CGCNNError(f"the removal mask has shape {tuple(mask.shape)}, the batch {tuple(batch.edge_mask.shape)}")
    keep = (~mask).to(batch.edge_features.dtype)
    scale = keep if batch.edge_scale is None else batch.edge_scale * keep
    if mode == "zero":
        return dataclasses.replace(batch, edge_scale=scale)
    # delete: out of the softmax (attention) and its message dropped (gated, which ignores edge_mask)
    return dataclasses.replace(batch, edge_mask=batch.edge_mask & ~mask, edge_scale=scale)
