"""The CGCNN model family: an embedding, a stack of interchangeable convolutions, pooling and a dense head.

Module and parameter names follow the original code (``embedding``, ``convs.K.fc_full``, ``convs.K.bn1``,
``convs.K.bn2``, ``conv_to_fc``, ``fcs``, ``fc_out``) so the original checkpoints load with ``strict=True``
and no key map.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from cgcnn.data.graph import GraphBatch
from cgcnn.nn.layers import CONV_LAYERS


@dataclass
class ModelConfig:
    """Architecture of a :class:`CrystalGraphConvNet` (saved in every checkpoint).

    Attributes:
        orig_atom_fea_len: element feature length (92 for the original table).
        nbr_fea_len: Gaussian edge features (41 for the original graph parameters).
        atom_fea_len: hidden atom feature length ``C``.
        n_conv: number of convolutions.
        h_fea_len: hidden length after pooling.
        n_h: number of dense layers after pooling.
        targets: names of the outputs (one per regression target).
        classification: two-class log-probabilities instead of regression (the original classifier).
        conv: convolution kind, a key of ``CONV_LAYERS``.
        conv_options: extra keyword arguments of the convolution layer.
    """

    orig_atom_fea_len: int = 92
    nbr_fea_len: int = 41
    atom_fea_len: int = 64
    n_conv: int = 3
    h_fea_len: int = 128
    n_h: int = 1
    targets: list[str] = field(default_factory=lambda: ["target"])
    classification: bool = False
    conv: str = "gated"
    conv_options: dict = field(default_factory=dict)

    @classmethod
    def original_checkpoints(cls, **changes) -> ModelConfig:
        """The architecture of Xie & Grossman's released checkpoints (64 atom features, 4 convolutions, 32 hidden).

        This project's scratch baselines and pretrained models use it, so that every model in a comparison
        has the same size; ``changes`` override fields (e.g. ``targets``).
        """
        return cls(**{"atom_fea_len": 64, "n_conv": 4, "h_fea_len": 32, "n_h": 1, **changes})

    @property
    def n_out(self) -> int:
        """Width of the output layer."""
        return 2 if self.classification else len(self.targets)

    def to_dict(self) -> dict:
        """Plain dict (JSON and ``weights_only`` safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error, so a typo cannot pass silently."""
        return cls(**data)


class CrystalGraphConvNet(nn.Module):
    """Embedding → ``n_conv`` convolutions → mean pooling over atoms → ``n_h`` dense layers → output.

    The order of operations after pooling follows the original code (softplus, ``conv_to_fc``, softplus,
    then ``fcs``, then ``fc_out``), and the classifier applies dropout and log-softmax as it does.

    Shapes:
        - input: a :class:`~cgcnn.data.graph.GraphBatch` of ``B`` crystals.
        - output: ``(B, n_out)``: normalised regression targets, or log-probabilities of (negative, positive).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        conv_cls = CONV_LAYERS[config.conv]
        self.embedding = nn.Linear(config.orig_atom_fea_len, config.atom_fea_len)
        self.convs = nn.ModuleList(
            conv_cls(config.atom_fea_len, config.nbr_fea_len, **config.conv_options) for _ in range(config.n_conv)
        )
        self.conv_to_fc = nn.Linear(config.atom_fea_len, config.h_fea_len)
        self.fcs = nn.ModuleList(nn.Linear(config.h_fea_len, config.h_fea_len) for _ in range(config.n_h - 1))
        self.fc_out = nn.Linear(config.h_fea_len, config.n_out)
        self.dropout = nn.Dropout() if config.classification else nn.Identity()

    def layer_names(self) -> list[str]:
        """Names of the layers with weights, input to output (what a transfer freezes, keeps or re-initialises).

        ``embedding``, ``convs.0`` … ``convs.{n_conv-1}``, ``conv_to_fc``, ``fcs.0`` … ``fcs.{n_h-2}``, ``fc_out``.
        """
        convs = [f"convs.{i}" for i in range(len(self.convs))]
        return ["embedding", *convs, "conv_to_fc", *(f"fcs.{i}" for i in range(len(self.fcs))), "fc_out"]

    def frozen_modules(self) -> list[nn.Module]:
        """The layers whose weights are all frozen (``requires_grad=False``, see ``transfer.freeze_layers``)."""
        modules = [self.get_submodule(name) for name in self.layer_names()]
        return [m for m in modules if not any(p.requires_grad for p in m.parameters())]

    def train(self, mode: bool = True) -> CrystalGraphConvNet:
        """Switch modes, but keep frozen layers in eval mode: their batch-norm statistics must not drift."""
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()
        return self

    def atom_features(self, batch: GraphBatch, up_to: int | None = None) -> torch.Tensor:
        """Atom features after the embedding and the first ``up_to`` convolutions (all by default)."""
        atom_fea = self.embedding(batch.node_features)
        for conv in self.convs[:up_to]:
            atom_fea = conv(atom_fea, batch)
        return atom_fea

    @torch.no_grad()
    def edge_weights(self, batch: GraphBatch) -> list[torch.Tensor]:
        """How much each edge counts in each convolution, for the structure viewer: one ``(E, H)`` per layer.

        Attention layers give their softmax coefficients (``H`` heads; zero on fill-in edges). The gated layer
        has no single weight per edge, so it gives its filter gate ``sigmoid(...)`` averaged over the ``C``
        channels, ``(E, 1)`` in (0, 1) (fill-in edges included: the gated layer does use them). Call it in eval
        mode, as for predictions: in training mode the batch norms would use this batch's statistics.
        """
        weights = []
        atom_fea = self.embedding(batch.node_features)
        for conv in self.convs:
            atom_fea, layer_weights = conv(atom_fea, batch, return_edge_weights=True)
            weights.append(layer_weights)
        return weights

    def forward(self, batch: GraphBatch) -> torch.Tensor:
        """Predict every crystal of the batch (normalised units; see the class docstring)."""
        return self.head(mean_pool(self.atom_features(batch), batch))

    def forward_from(self, atom_fea: torch.Tensor, batch: GraphBatch, start: int) -> torch.Tensor:
        """Finish the forward pass from the atom features after convolution ``start`` (``start`` = 0: embedded).

        With frozen layers their output never changes, so the trainer computes it once per crystal and trains
        from here; the result equals :meth:`forward`.
        """
        for conv in self.convs[start:]:
            atom_fea = conv(atom_fea, batch)
        return self.head(mean_pool(atom_fea, batch))

    def head(self, crys_fea: torch.Tensor) -> torch.Tensor:
        """The dense layers after pooling: ``(B, C)`` crystal features → ``(B, n_out)``."""
        crys_fea = F.softplus(self.conv_to_fc(F.softplus(crys_fea)))
        crys_fea = self.dropout(crys_fea)
        for fc in self.fcs:
            crys_fea = F.softplus(fc(crys_fea))
        out = self.fc_out(crys_fea)
        return F.log_softmax(out, dim=1) if self.config.classification else out


def mean_pool(atom_fea: torch.Tensor, batch: GraphBatch) -> torch.Tensor:
    """Average the atom features of each crystal: ``(N, C)`` → ``(B, C)``."""
    sums = atom_fea.new_zeros(batch.n_crystals, atom_fea.shape[1]).index_add_(0, batch.crystal_index, atom_fea)
    counts = torch.bincount(batch.crystal_index, minlength=batch.n_crystals).clamp_min(1)
    return sums / counts.unsqueeze(1).to(atom_fea.dtype)
