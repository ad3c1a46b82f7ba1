"""The AL2 loss (paper Eq. 1) and its progressive weight schedule."""
from __future__ import annotations

import torch
import torch.nn.functional as F

# The authors' defaults for get_map_weights.
MAP_START, MAP_THRESHOLD, MAP_FAC1, MAP_FAC2 = 0.01, 5.0, 1.1, 1.01


def get_map_weights(epochs: int, start: float = MAP_START, threshold: float = MAP_THRESHOLD,
                    fac1: float = MAP_FAC1, fac2: float = MAP_FAC2) -> list[float]:
    """The authors' progressive AL2 weight w_e for e = 0 .. epochs-1.

    w_0 = start; each epoch multiplies by fac1 while the weight is below `threshold`, by fac2
    after. With the defaults w first reaches the threshold at epoch 66 and w_699 is about 2.9e3.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    weights = [float(start)] if epochs else []
    for _ in range(1, epochs):
        w = weights[-1]
        weights.append(w * (fac1 if w < threshold else fac2))
    return weights


def activation_loss(features: torch.Tensor, dims=None) -> torch.Tensor:
    """L_r = mean(a**2): the AL2 penalty on the trunk's output activations (Eq. 1).
    `dims` keeps leading dimensions (e.g. one value per stacked run)."""
    return features.pow(2).mean() if dims is None else features.pow(2).mean(dim=dims)


def al2_loss(log_probs: torch.Tensor, features: torch.Tensor, targets: torch.Tensor,
             map_weight: float | torch.Tensor):
    """L = L_c + w_e * L_r for one model (Eq. 1); returns (L, L_c, L_r).
    log_probs (N, 10), features (N, 800), targets (N,)."""
    loss_c = F.nll_loss(log_probs, targets)
    loss_r = activation_loss(features)
    return loss_c + map_weight * loss_r, loss_c, loss_r
