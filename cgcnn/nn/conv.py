"""Graph convolutions: the registry of layer kinds, their shared helpers, and Xie & Grossman's gated layer.

Every convolution maps atom features ``(N, C)`` and a :class:`~cgcnn.data.graph.GraphBatch` to new atom
features ``(N, C)``; with ``return_edge_weights=True`` it also returns one weight per edge and head ``(E, H)``
(see each layer). Layers register themselves in :data:`CONV_LAYERS` with :func:`register_conv`, so a
:class:`~cgcnn.nn.model.ModelConfig` names its layer kind as a string that a checkpoint can store.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cgcnn.data.graph import GraphBatch

#: Convolution kinds by name (``ModelConfig.conv``): ``gated`` here, ``attention`` and ``attention-edge`` in
#: :mod:`cgcnn.nn.attention`.
CONV_LAYERS: dict[str, type[nn.Module]] = {}


def register_conv(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make a convolution available as ``ModelConfig(conv=name)``."""

    def register(cls: type[nn.Module]) -> type[nn.Module]:
        CONV_LAYERS[name] = cls
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


class GatedConv(nn.Module):
    r"""Xie & Grossman's gated graph convolution, exactly as the original implementation computes it.

    .. math::
        z_{(i,j)_k} = v_i \oplus v_j \oplus u_{(i,j)_k}, \qquad
        v_i \leftarrow g\Big(v_i + \mathrm{BN}_2\big(\textstyle\sum_{j,k}
            \sigma(\mathrm{BN}_1(z W_f + b_f)) \odot g(\mathrm{BN}_1(z W_s + b_s))\big)\Big)

    with :math:`\sigma` the sigmoid, :math:`g` the softplus, and :math:`W_f, W_s` the two halves of one dense
    layer ``fc_full`` (as in the original, the filter and core halves share a batch norm ``bn1``).

    The dense layer is applied in three parts, ``z W = v_i W_a + v_j W_b + u W_c``: the atom parts are computed
    once per atom and then gathered, instead of once per edge — the same numbers with about 3x fewer FLOPs.
    In eval mode ``bn1`` is an affine map and is folded into that dense layer.

    Args:
        atom_fea_len: ``C``, atom feature length.
        nbr_fea_len: ``G``, edge feature length.

    Shapes:
        - input: atom features ``(N, C)``, a :class:`~cgcnn.data.graph.GraphBatch` with ``E = N * M`` edges.
        - output: ``(N, C)``; with ``return_gates=True`` also the filter gate ``sigmoid(...)`` ``(E, C)``.
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

    def forward(
        self, atom_fea: torch.Tensor, batch: GraphBatch, return_gates: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Update every atom from its ``M`` neighbours (see the class docstring for the equation)."""
        n, c, m = atom_fea.shape[0], self.atom_fea_len, batch.max_neighbors
        weight, bias = self.fc_full.weight, self.fc_full.bias
        if not self.bn1.training and self.bn1.track_running_stats:
            # eval mode: bn1 is affine, so fold it into the dense layer and skip a pass over the edges
            scale = self.bn1.weight * torch.rsqrt(self.bn1.running_var + self.bn1.eps)
            weight = weight * scale.unsqueeze(1)
            bias = (bias - self.bn1.running_mean) * scale + self.bn1.bias
        w_self, w_nbr, w_edge = weight.split([c, c, self.nbr_fea_len], dim=1)
        self_part = torch.addmm(bias, atom_fea, w_self.T)  # (N, 2C); the bias rides on the smaller term
        nbr_part = atom_fea @ w_nbr.T  # (N, 2C)
        gated = batch.edge_features @ w_edge.T  # (E, 2C)
        gated = gated.add_(gather_rows(nbr_part, batch.edge_src))  # in place: fewer passes over E x 2C
        gated.view(n, m, 2 * c).add_(self_part.unsqueeze(1))
        if self.bn1.training or not self.bn1.track_running_stats:
            gated = self.bn1(gated)
        nbr_filter, nbr_core = gated.chunk(2, dim=1)
        gate = torch.sigmoid(nbr_filter)
        summed = (gate * F.softplus(nbr_core)).view(n, m, c).sum(dim=1)
        out = F.softplus(atom_fea + self.bn2(summed))
        return (out, gate) if return_gates else out


CONV_LAYERS["gated"] = GatedConv
