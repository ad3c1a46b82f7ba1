"""The training step for all runs of a grid at once: forward, Eq. 1, backward, SGD.

All runs live in one StackedLeNet (model.py); every run sees the same minibatch. The data set
sits on the device, normalised once; a batch is an index slice of an on-device permutation;
the metric sums stay on the device until the epoch ends (no host sync inside an epoch).
"""
from __future__ import annotations

import torch

from .config import RunSpec
from .data import GridData
from .loss import al2_loss
from .model import StackedLeNet, lenet_from_seed

ORDER_STREAM, DROPOUT_STREAM = 0, 1


def epoch_generator(seed: int, epoch: int, stream: int, device: torch.device) -> torch.Generator:
    """A generator that depends only on (seed, epoch, stream): resuming at any epoch reproduces
    the batch order and dropout masks of an uninterrupted run without saving RNG states."""
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + epoch) * 2 + stream)


def stacked_runs(runs: list[RunSpec], device: torch.device):
    """The grid's StackedLeNet in training mode (each run initialised from its seed), its
    parameters, zeroed momentum buffers and the per-run weight decay (R,)."""
    model = StackedLeNet([lenet_from_seed(r.seed, r.batch_norm, r.dropout, r.grid.bn_init)
                          for r in runs])
    model = model.to(device).train()
    params = list(model.parameters())
    buffers = [torch.zeros_like(p) for p in params]
    wd = torch.tensor([r.weight_decay for r in runs], device=device)
    return model, params, buffers, wd


@torch.no_grad()
def sgd_step(params, buffers, lr: float, momentum: float, weight_decay: torch.Tensor) -> None:
    """torch.optim.SGD's rule (dampening 0, no Nesterov) with a per-run weight decay:
    d = grad + wd_r * p;  buf = momentum * buf + d;  p -= lr * buf.
    weight_decay is (R,) and broadcast over each parameter's leading run dimension."""
    for p, buf in zip(params, buffers):
        if p.grad is None:  # batch-norm parameters when no run of the grid uses BN
            continue
        d = p.grad.addcmul_(weight_decay.view(-1, *([1] * (p.dim() - 1))), p)  # grad + wd_r p
        torch.add(d, buf, alpha=momentum, out=buf)  # in place, one pass over the buffer
        p.add_(buf, alpha=-lr)
        p.grad = None


def train_step(model: StackedLeNet, params, buffers, x, y_noisy, y_clean, al2_weight, wd,
               lr: float, momentum: float, sums: torch.Tensor, dropout_gen=None) -> None:
    """One minibatch for every run: Eq. 1, backward, SGD; adds the batch's per-run L_c, L_r,
    correct predictions against the noisy and the clean labels to `sums` (4, R), in place.
    x (b, 1, 28, 28); y_noisy, y_clean (b,); al2_weight, wd (R,) on the device."""
    log_probs, features = model(x, dropout_gen)                   # (R, b, 10), (b, R, 800)
    loss, loss_c, loss_r = al2_loss(log_probs, features, y_noisy, al2_weight)
    loss.backward()
    sgd_step(params, buffers, lr, momentum, wd)
    with torch.no_grad():
        pred = log_probs.argmax(-1)                                   # (R, b)
        sums += torch.stack([loss_c, loss_r, (pred == y_noisy).sum(1), (pred == y_clean).sum(1)])


def train_epoch(model, params, buffers, data: GridData, batch_size: int, lr: float,
                momentum: float, al2_weight, wd, order_gen: torch.Generator | None,
                dropout_gen: torch.Generator | None, max_steps: int | None = None,
                perm: torch.Tensor | None = None):
    """One epoch over the training set, shuffled by `order_gen` (or in the order `perm`),
    the last partial batch kept as a DataLoader would. Returns the on-device per-run sums
    (4, R): L_c, L_r, correct vs noisy, correct vs clean; and the number of batches."""
    n, dev = len(data.train_x), data.train_x.device
    model.train()
    if perm is None:
        perm = torch.randperm(n, device=dev, generator=order_gen)
    sums = torch.zeros(4, model.runs, device=dev)
    batches = 0
    for s in range(0, n, batch_size):
        if max_steps is not None and batches >= max_steps:
            break
        idx = perm[s:s + batch_size]
        train_step(model, params, buffers, data.train_x[idx], data.train_noisy[idx],
                   data.train_clean[idx], al2_weight, wd, lr, momentum, sums, dropout_gen)
        batches += 1
    return sums, batches
