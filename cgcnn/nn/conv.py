"""Graph convolutions: the registry of layer kinds, their shared helpers, and Xie & Grossman's gated layer.

Every convolution maps atom features ``(N, C)`` and a :class:`~cgcnn.data.graph.GraphBatch` to new atom
features ``(N, C)``; with ``return_edge_weights=True`` it also returns one weight per edge and head ``(E, H)``
(see each layer), which is what :meth:`~cgcnn.nn.model.CrystalGraphConvNet.edge_weights` collects. The
message of every edge is built by :func:`edge_dense` (one dense layer applied in parts, batch norm folded in
eval mode). Layers register themselves with :func:`register_conv`, so a :class:`~cgcnn.nn.model.ModelConfig`
names its layer kind as a string that a checkpoint can store; read the kinds from
:data:`cgcnn.nn.layers.CONV_LAYERS`, which imports every layer module first.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cgcnn.data.graph import GraphBatch

#: Convolution kinds registered so far, by name. Only the modules imported so far have registered theirs: read
#: :data:`cgcnn.nn.layers.CONV_LAYERS` (the same table, filled with every built-in kind) instead.
REGISTERED_CONVS: dict[str, type[nn.Module]] = {}


def register_conv(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make a convolution available as ``ModelConfig(conv=name)``."""

    def register(cls: type[nn.Module]) -> type[nn.Module]:
        REGISTERED_CONVS[name] = cls
        return cls

    return register


class _GatherRows(torch.autograd.Function):
    """``x[index]`` with a deterministic backward.

    PyTorch's own backward of an index gather scatters with several threads in a varying order on the CPU, so
    the same seed gave slightly different models; ``index_add_`` sums in a fixed order and is faster here.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.n_rows = x.shape[0]
        return x.index_select(0, index)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (index,) = ctx.saved_tensors
        return grad.new_zeros(ctx.n_rows, grad.shape[1]).index_add_(0, index, grad), None


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows ``x[index]`` (deterministic gradients, see :class:`_GatherRows`)."""
    return _GatherRows.apply(x, index)


def edge_dense(atom_fea: torch.Tensor, batch: GraphBatch, dense: nn.Linear, bn: nn.BatchNorm1d) -> torch.Tensor:
    r"""``BN(z W + b)`` for every edge ``z = v_i ⊕ v_j ⊕ u``, without building ``z``: ``(E, out)``.

    The dense layer is applied in three parts, ``z W = v_i W_a + v_j W_b + u W_c``: the atom parts are computed
    once per atom and then gathered, instead of once per edge (about 3x fewer FLOPs for the same numbers). In
    eval mode the batch norm is an affine map, so it is folded into the dense layer and costs no pass over the
    edges. Every convolution here builds its messages with this.
    """
    n, m, c = atom_fea.shape[0], batch.max_neighbors, atom_fea.shape[1]
    weight, bias = dense.weight, dense.bias
    folded = not bn.training and bn.track_running_stats
    if folded:
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        weight = weight * scale.unsqueeze(1)
        bias = (bias - bn.running_mean) * scale + bn.bias
    w_self, w_nbr, w_edge = weight.split([c, c, weight.shape[1] - 2 * c], dim=1)
    self_part = torch.addmm(bias, atom_fea, w_self.T)  # (N, out); the bias rides on the smaller term
    nbr_part = atom_fea @ w_nbr.T  # (N, out)
    out = batch.edge_features @ w_edge.T  # (E, out)
    out = out.add_(gather_rows(nbr_part, batch.edge_src))  # in place: fewer passes over E x out
    out.view(n, m, -1).add_(self_part.unsqueeze(1))
    return out if folded else bn(out)


@register_conv("gated")
class GatedConv(nn.Module):
    r"""Xie & Grossman's gated graph convolution, exactly as the original implementation computes it.

    .. math::
        z_{(i,j)_k} = v_i \oplus v_j \oplus u_{(i,j)_k}, \qquad
        v_i \leftarrow g\Big(v_i + \mathrm{BN}_2\big(\textstyle\sum_{j,k}
            \sigma(\mathrm{BN}_1(z W_f + b_f)) \odot g(\mathrm{BN}_1(z W_s + b_s))\big)\Big)

    with :math:`\sigma` the sigmoid, :math:`g` the softplus, and :math:`W_f, W_s` the two halves of one dense
    layer ``fc_full`` (as in the original, the filter and core halves share a batch norm ``bn1``).

    The dense layer and ``bn1`` are applied per edge by :func:`edge_dense` (split, and folded in eval mode).

    Args:
        atom_fea_len: ``C``, atom feature length.
        nbr_fea_len: ``G``, edge feature length.

    Shapes:
        - input: atom features ``(N, C)``, a :class:`~cgcnn.data.graph.GraphBatch` with ``E = N * M`` edges.
        - output: ``(N, C)``; with ``return_edge_weights=True`` also the filter gate ``sigmoid(...)`` averaged
          over the ``C`` channels, ``(E, 1)`` in (0, 1): the layer has no single weight per edge, and this is
          how much of each edge's message passes on average (fill-in edges included: the layer uses them).
    """

    def __init__(self, atom_fea_len: int, nbr_fea_len: int) -> None:
        super().__init__()
        self.atom_fea_len = atom_fea_len
        self.nbr_fea_len = nbr_fea_len
        self.fc_full = nn.Linear(2 * atom_fea_len + nbr_fea_len, 2 * atom_fea_len)
        self.bn1 = nn.BatchNorm1d(2 * atom_fea_len)
        self.bn2 = nn.BatchNorm1d(atom_fea_len)

    def reset_parameters(self) -> None:
        """Re-initialise weights and batch-norm statistics (used when a transferred layer is reset)."""
        self.fc_full.reset_parameters()
        self.bn1.reset_parameters()
        self.bn2.reset_parameters()

    def extra_repr(self) -> str:
        """The layer's sizes and options, shown by ``print(model)``."""
        return f"atom_fea_len={self.atom_fea_len}, nbr_fea_len={self.nbr_fea_len}"

    def forward(
        self, atom_fea: torch.Tensor, batch: GraphBatch, return_edge_weights: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Update every atom from its ``M`` neighbours (see the class docstring for the equation)."""
        n, c, m = atom_fea.shape[0], self.atom_fea_len, batch.max_neighbors
        gated = edge_dense(atom_fea, batch, self.fc_full, self.bn1)  # (E, 2C)
        nbr_filter, nbr_core = gated.chunk(2, dim=1)
        gate = torch.sigmoid(nbr_filter)
        message = gate * F.softplus(nbr_core)  # (E, C)
        if batch.edge_scale is not None:  # attribution: scale (0: remove) each edge's message
            message = message * batch.edge_scale.unsqueeze(1)
        summed = message.view(n, m, c).sum(dim=1)
        out = F.softplus(atom_fea + self.bn2(summed))
        return (out, gate.mean(dim=1, keepdim=True)) if return_edge_weights else out
