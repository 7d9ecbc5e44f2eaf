r"""The study's attention convolutions: neighbours weighted by a softmax instead of a per-channel sigmoid gate.

Two layers, registered in :data:`cgcnn.nn.layers.CONV_LAYERS` (which imports this module):

- ``"attention"`` (:class:`AttentionConv`): the study's layer, whose score is
  :math:`\langle v_i, v_j\rangle \cdot \langle u_{(i,j)_k}, u_{(i,j)_k}\rangle`;
- ``"attention-edge"`` (:class:`EdgeAttentionConv`): the same update with a learned, distance-aware score.

Why the second one. The edge feature :math:`u` is a distance expanded on Gaussians of width :math:`\sigma`
spaced :math:`\sigma` apart (0.2 Å, 41 centres on 0..8 Å), so
:math:`\langle u, u\rangle = \sum_k e^{-2 (d - c_k)^2 / \sigma^2} \approx \sqrt{\pi / 2} \approx 1.2533` for
every distance between about 0.3 and 7.7 Å, with a ripple of about ±1.4 % (Poisson summation:
:math:`2 e^{-\pi^2 / 2}`); it only drops near the 8 Å cutoff. Real neighbours almost all lie in that range, so
the study's score is :math:`\approx 1.25 \langle v_i, v_j\rangle`: the attention barely depends on distance
(``tests/test_attention.py`` checks this on real crystals). ``attention-edge`` lets the score see the edge:
:math:`\langle v_i W_q, v_j W_k\rangle / \sqrt{d} + u\, w_e`.

Parameters per convolution at the default sizes (``C = 64`` atom features, ``G = 41`` edge features):

=================================  ==========  =================================================
layer                              parameters  what
=================================  ==========  =================================================
``gated``                              22,144  ``fc_full`` (2C+G → 2C), ``bn1`` (2C), ``bn2`` (C)
``attention``                          11,136  ``fc_core`` (2C+G → C), ``bn1`` (C), ``bn2`` (C)
``attention``, 4 heads                 60,608  ``fc_core`` (2C+G → 4C), ``bn1``, ``fc_heads`` (4C → C)
``attention-edge`` (key_dim 16)        13,225  ``attention`` + ``W_q``, ``W_k`` (C → 16), ``w_e`` (G → 1)
=================================  ==========  =================================================
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cgcnn.data.graph import GraphBatch
from cgcnn.errors import CGCNNError
from cgcnn.nn.conv import REGISTERED_CONVS, edge_dense, gather_rows, register_conv


@register_conv("attention")
class AttentionConv(nn.Module):
    r"""The study's attention convolution: neighbour messages weighted by a softmax over the neighbours.

    .. math::
        z_{(i,j)_k} = v_i \oplus v_j \oplus u_{(i,j)_k}, \qquad
        c_{(i,j)_k} = \operatorname*{softmax}_{(j,k) \in \mathcal{N}(i)}
            \big(\langle v_i, v_j\rangle \cdot \langle u_{(i,j)_k}, u_{(i,j)_k}\rangle\big),

        v_i \leftarrow g\Big(v_i + \mathrm{BN}_2\big(\textstyle\sum_{j,k}
            c_{(i,j)_k}\, g(\mathrm{BN}_1(z W_s + b_s))\big)\Big)

    with :math:`g` the softplus. The study writes :math:`v_i \leftarrow v_i + \sum c \odot g(z W_s + b_s)`;
    we keep the gated layer's two batch norms and its outer softplus around the residual, so that the two
    kinds are interchangeable in the same network, trainer and learning rates (and the features stay on the
    same scale that the gated layers feed each other). Without the sigmoid filter half ``W_f`` the layer has
    about half the gated layer's weights (see the module docstring).

    Fill-in edges (``edge_mask`` False: an atom with fewer than ``M`` neighbours inside the cutoff) are masked
    before the softmax, so their coefficient is exactly zero and the coefficients of each atom's real
    neighbours sum to one. ``bn1`` sees every edge, fill-ins included, as in the gated layer.

    Heads: with ``heads = H`` there are ``H`` cores :math:`W_s^h` (one dense layer ``C → H C``); head ``h``
    scores with channel slice ``h`` of :math:`v` (:math:`\langle v_i^h, v_j^h\rangle`, ``C / H`` channels
    each, the multi-head split of the features, so the heads attend differently without extra score
    weights), and a dense layer ``fc_heads`` combines the ``H`` messages into ``C`` channels (the study's
    ensemble of attention networks). ``H = 1`` is exactly the equation above, without ``fc_heads``.

    The dense layer and ``bn1`` are applied per edge by :func:`~cgcnn.nn.conv.edge_dense` (split, and folded in
    eval mode), as in the gated layer.

    Args:
        atom_fea_len: ``C``, atom feature length.
        nbr_fea_len: ``G``, edge feature length.
        heads: ``H``, attention heads (``C`` must be divisible by ``H``).
        scale_score: divide the score by ``sqrt(C / H)`` (not in the study; a softer softmax for wide layers).

    Shapes:
        - input: atom features ``(N, C)``, a :class:`~cgcnn.data.graph.GraphBatch` with ``E = N * M`` edges.
        - output: ``(N, C)``; with ``return_edge_weights=True`` also the coefficients ``(E, H)``.
    """

    #: head ``h`` scores with channel slice ``h``, so ``heads`` must divide ``C``
    _splits_channels = True

    def __init__(self, atom_fea_len: int, nbr_fea_len: int, heads: int = 1, scale_score: bool = False) -> None:
        super().__init__()
        if heads < 1:
            raise CGCNNError(f"attention heads must be 1 or more, got {heads}")
        if self._splits_channels and atom_fea_len % heads:
            raise CGCNNError(f"attention heads must divide the atom feature length {atom_fea_len}, got {heads}")
        self.atom_fea_len = atom_fea_len
        self.nbr_fea_len = nbr_fea_len
        self.heads = heads
        self.scale_score = scale_score
        self.fc_core = nn.Linear(2 * atom_fea_len + nbr_fea_len, heads * atom_fea_len)
        self.bn1 = nn.BatchNorm1d(heads * atom_fea_len)
        self.fc_heads = nn.Linear(heads * atom_fea_len, atom_fea_len) if heads > 1 else None
        self.bn2 = nn.BatchNorm1d(atom_fea_len)

    def reset_parameters(self) -> None:
        """Re-initialise weights and batch-norm statistics (used when a transferred layer is reset)."""
        self.fc_core.reset_parameters()
        self.bn1.reset_parameters()
        if self.fc_heads is not None:
            self.fc_heads.reset_parameters()
        self.bn2.reset_parameters()

    def scores(self, atom_fea: torch.Tensor, batch: GraphBatch) -> torch.Tensor:
        r"""Unnormalised scores ``(N, M, H)``: :math:`\langle v_i^h, v_j^h\rangle \langle u, u\rangle`."""
        n, m, c, h = atom_fea.shape[0], batch.max_neighbors, self.atom_fea_len, self.heads
        nbr = gather_rows(atom_fea, batch.edge_src).view(n, m, h, c // h)
        dot = (nbr * atom_fea.view(n, 1, h, c // h)).sum(dim=-1)  # (N, M, H)
        uu = batch.edge_features.pow(2).sum(dim=1).view(n, m, 1)
        score = dot * uu
        return score / math.sqrt(c // h) if self.scale_score else score

    def extra_repr(self) -> str:
        """The layer's sizes and options, shown by ``print(model)``."""
        return (
            f"atom_fea_len={self.atom_fea_len}, nbr_fea_len={self.nbr_fea_len}, heads={self.heads}, "
            f"scale_score={self.scale_score}"
        )

    def forward(
        self, atom_fea: torch.Tensor, batch: GraphBatch, return_edge_weights: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Update every atom from its real neighbours (see the class docstring for the equation)."""
        n, c, m, h = atom_fea.shape[0], self.atom_fea_len, batch.max_neighbors, self.heads
        mask = batch.edge_mask.view(n, m, 1)
        score = self.scores(atom_fea, batch).masked_fill(~mask, torch.finfo(atom_fea.dtype).min)
        # An atom whose edges are all fill-ins (never built by the featuriser) gets zeros, not NaN.
        coef = torch.softmax(score, dim=1).masked_fill(~mask, 0.0)  # (N, M, H)

        core = edge_dense(atom_fea, batch, self.fc_core, self.bn1)  # (E, HC)
        weight = coef if batch.edge_scale is None else coef * batch.edge_scale.view(n, m, 1)  # attribution
        messages = (F.softplus(core).view(n, m, h, c) * weight.unsqueeze(-1)).sum(dim=1)  # (N, H, C)
        summed = messages.reshape(n, h * c)
        if self.fc_heads is not None:
            summed = self.fc_heads(summed)
        out = F.softplus(atom_fea + self.bn2(summed))
        return (out, coef.reshape(n * m, h)) if return_edge_weights else out


@register_conv("attention-edge")
class EdgeAttentionConv(AttentionConv):
    r"""Attention whose score sees the edge: the study's update with a learned, distance-aware score.

    .. math::
        c^h_{(i,j)_k} = \operatorname*{softmax}_{(j,k) \in \mathcal{N}(i)}
            \Big(\frac{\langle v_i W_q^h, v_j W_k^h\rangle}{\sqrt{d}} + u_{(i,j)_k} w_e^h\Big)

    and the same update as :class:`AttentionConv`. The study's score multiplies by
    :math:`\langle u, u\rangle`, which is nearly the same number (≈1.2533) for every real neighbour (see the
    module docstring), so its attention cannot prefer a close neighbour over a far one of the same species;
    here the term :math:`u\, w_e` (a learned function of the distance, one per head) can, and the query/key
    projections let each head compare other aspects of the atoms than the raw feature overlap. Queries and
    keys are computed per atom and the keys gathered per edge. Every head uses all ``C`` channels, so ``heads``
    need not divide ``C``.

    Args:
        atom_fea_len: ``C``, atom feature length.
        nbr_fea_len: ``G``, edge feature length.
        heads: ``H``, attention heads.
        key_dim: ``d``, query/key length per head.

    Shapes:
        - input: atom features ``(N, C)``, a :class:`~cgcnn.data.graph.GraphBatch` with ``E = N * M`` edges.
        - output: ``(N, C)``; with ``return_edge_weights=True`` also the coefficients ``(E, H)``.
    """

    #: the score uses projections, not a channel split, so ``heads`` need not divide ``C``
    _splits_channels = False

    def __init__(self, atom_fea_len: int, nbr_fea_len: int, heads: int = 1, key_dim: int = 16) -> None:
        if key_dim < 1:
            raise CGCNNError(f"attention key_dim must be 1 or more, got {key_dim}")
        super().__init__(atom_fea_len, nbr_fea_len, heads=heads)
        self.key_dim = key_dim
        self.fc_query = nn.Linear(atom_fea_len, heads * key_dim, bias=False)
        self.fc_key = nn.Linear(atom_fea_len, heads * key_dim, bias=False)
        self.fc_edge_score = nn.Linear(nbr_fea_len, heads, bias=False)  # a bias would cancel in the softmax

    def extra_repr(self) -> str:
        """The layer's sizes and options, shown by ``print(model)``."""
        return (
            f"atom_fea_len={self.atom_fea_len}, nbr_fea_len={self.nbr_fea_len}, heads={self.heads}, "
            f"key_dim={self.key_dim}"
        )

    def reset_parameters(self) -> None:
        """Re-initialise weights and batch-norm statistics (used when a transferred layer is reset)."""
        super().reset_parameters()
        self.fc_query.reset_parameters()
        self.fc_key.reset_parameters()
        self.fc_edge_score.reset_parameters()

    def scores(self, atom_fea: torch.Tensor, batch: GraphBatch) -> torch.Tensor:
        r"""Unnormalised scores ``(N, M, H)``: :math:`\langle v_i W_q, v_j W_k\rangle / \sqrt{d} + u w_e`."""
        n, m, h, d = atom_fea.shape[0], batch.max_neighbors, self.heads, self.key_dim
        query = self.fc_query(atom_fea).view(n, 1, h, d)
        key = gather_rows(self.fc_key(atom_fea), batch.edge_src).view(n, m, h, d)
        edge = self.fc_edge_score(batch.edge_features).view(n, m, h)
        return (query * key).sum(dim=-1) / math.sqrt(d) + edge


def conv_parameter_counts(atom_fea_len: int = 64, nbr_fea_len: int = 41, heads: int = 1) -> dict[str, int]:
    """Parameters of one convolution of each kind (the table in the module docstring)."""
    counts = {}
    for name, cls in REGISTERED_CONVS.items():  # complete here: this module and conv are both loaded
        kwargs = {} if name == "gated" else {"heads": heads}
        counts[name] = sum(p.numel() for p in cls(atom_fea_len, nbr_fea_len, **kwargs).parameters())
    return counts
