"""The AL2 loss, paper Eq. 1:  L = L_c + w_e * L_r,  L_r = mean(a**2).

L_c is the cross-entropy (NLL of the head's log-softmax) on the training labels, possibly
corrupted; a is the trunk's output, the representation the head reads; w_e is the progressive
weight of epoch e (schedule.get_map_weights; 0 for runs without AL2).

Everything of Eq. 1 is here, and every path computes it through these functions: the trainer's
step (`eq1` of each stacked run's data term, L_c or beyond the paper a remedy's loss, and its
`activation_loss`, once per minibatch for all runs), `al2_loss` (the same for cross-entropy, in
one call: the speed peers, a user's loop) and AL2 on any network (regularizer.AL2.penalty:
`al2_term` of `activation_l2`).
"""
from __future__ import annotations

import torch


def nll(log_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-log p(target) per sample: (..., N, C), (..., N) or (N,) -> (..., N)."""
    return -log_probs.gather(-1, targets.expand(log_probs.shape[:-1]).unsqueeze(-1)).squeeze(-1)


def cross_entropy(log_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """L_c: the mean NLL of the target class, (..., N, C) -> (...,): one per run when stacked."""
    return nll(log_probs, targets).mean(-1)


def activation_loss(features: torch.Tensor, dims=None) -> torch.Tensor:
    """L_r = mean(a**2) over the batch and all 800 features. `dims` (e.g. (0, 2) for stacked
    features (N, R, 800)) keeps the other dimensions: one L_r per run."""
    return features.pow(2).mean() if dims is None else features.pow(2).mean(dim=dims)


def activation_l2(outputs: list[torch.Tensor]) -> torch.Tensor:
    """L_r (activation_loss) over every element of several outputs together (a trunk called
    more than once between two penalties), in float32 at least (half-precision outputs are
    upcast, float64 stays): AL2 on any network (regularizer.py)."""
    with torch.autocast(outputs[0].device.type, enabled=False):
        a = [o.to(torch.promote_types(o.dtype, torch.float32)) for o in outputs]
        return activation_loss(a[0] if len(a) == 1 else torch.cat([o.flatten() for o in a]))


def al2_term(loss_r: torch.Tensor, al2_weight) -> torch.Tensor:
    """Eq. 1's second term, w_e * L_r."""
    return al2_weight * loss_r


def eq1(loss_fit: torch.Tensor, loss_r: torch.Tensor, al2_weight) -> torch.Tensor:
    """Eq. 1: L = L_c + w_e * L_r, with L_c the cross-entropy on the (noisy) labels, or beyond
    the paper a remedy's data term in its place."""
    return loss_fit + al2_term(loss_r, al2_weight)


def al2_loss(log_probs: torch.Tensor, features: torch.Tensor, targets: torch.Tensor,
             al2_weight: torch.Tensor):
    """Eq. 1 for R stacked runs -> (L summed over runs, L_c (R,), L_r (R,)).

    log_probs (R, N, 10), features (N, R, 800), targets (N,), al2_weight (R,): w_e per run.
    The total is a sum over runs, not a mean, so that each run's gradient is its own Eq. 1.
    A single model is R = 1: al2_loss(log_probs[None], features[:, None], y, w[None]).
    """
    loss_c = cross_entropy(log_probs, targets)                            # (R,)
    loss_r = activation_loss(features, dims=(0, 2))                       # (R,)
    return eq1(loss_c, loss_r, al2_weight).sum(), loss_c, loss_r
