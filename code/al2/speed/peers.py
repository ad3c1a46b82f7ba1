"""What an engineer would write instead of the stacked trainer, timed beside it by
code/bench/bench_train.py: the strongest peers, on the same data, steps and runs.

    tight_loop     one LeNet at a time on images already on the device (no DataLoader): a
                   random batch order, torch.optim.SGD, Eq. 1 through al2_loss
    vmap_ensemble  PyTorch's ensembling recipe: the runs of one architecture (Bare and WD; BN; DO)
                   stacked with torch.func.stack_module_state and trained as one functional call
                   vmapped over the runs; each run's weight decay added to its own gradients

Both train every run of the grid for the same number of samples as the stacked trainer, with the
same learning rate, momentum and per-run weight decay, and a fixed AL2 weight (0.01 on the AL2
runs) as the benchmark's stacked rows do. They are benchmarks, not trainers: no test pass, no
checkpoint, no resume.
"""
from __future__ import annotations

import copy
import time

import torch

from ..method.loss import al2_loss
from ..training.config import GridConfig
from ..training.device import synchronize
from ..training.model import lenet_from_seed

AL2_WEIGHT = 0.01   # the fixed weight every timed row uses on its AL2 runs


def _batches(samples: int, images: int, batch: int, device) -> list[torch.Tensor]:
    """Index batches of one random order, enough for `samples` samples."""
    order = torch.randperm(images, device=device)
    steps = -(-samples // batch)
    return [order[(s * batch) % images:(s * batch) % images + batch] for s in range(steps)]


def tight_loop(grid: GridConfig, x: torch.Tensor, y: torch.Tensor, samples: int,
               device) -> float:
    """Seconds to train each run of the grid alone for `samples` samples on resident tensors
    x (n, 1, 28, 28), y (n,)."""
    batches = _batches(samples, len(x), grid.batch_size, device)
    synchronize(device)
    start = time.perf_counter()
    for run in grid.runs():
        model, opt, w = alone(run, grid, device)
        for idx in batches:
            plain_step(model, opt, x[idx], y[idx], w)
    synchronize(device)
    return time.perf_counter() - start


def alone(run, grid: GridConfig, device):
    """One run as a per-run loop trains it: its LeNet, its torch.optim.SGD (its own weight
    decay) and its AL2 weight (R = 1)."""
    model = lenet_from_seed(run.seed, run.batch_norm, run.dropout).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=grid.lr, momentum=grid.momentum,
                          weight_decay=run.weight_decay)
    return model, opt, torch.tensor([AL2_WEIGHT if run.use_al2 else 0.0], device=device)


def plain_step(model, opt, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> None:
    """One SGD step of one model on Eq. 1."""
    log_probs, features = model(x)
    loss, _, _ = al2_loss(log_probs[None], features[:, None], y, w)   # R = 1
    opt.zero_grad()
    loss.backward()
    opt.step()


class Ensemble:
    """The runs of one architecture as stacked parameters and buffers, and one vmapped
    functional call over them."""

    def __init__(self, runs: list, grid: GridConfig, device):
        models = [lenet_from_seed(r.seed, r.batch_norm, r.dropout).to(device).train()
                  for r in runs]
        self.params, self.buffers = torch.func.stack_module_state(models)
        self.base = copy.deepcopy(models[0]).to("meta")
        self.decay = torch.tensor([r.weight_decay for r in runs], device=device)
        self.w = torch.tensor([AL2_WEIGHT if r.use_al2 else 0.0 for r in runs], device=device)
        self.opt = torch.optim.SGD(self.params.values(), lr=grid.lr, momentum=grid.momentum)

        def one(params, buffers, x):
            return torch.func.functional_call(self.base, (params, buffers), (x,))
        self.forward = torch.vmap(one, in_dims=(0, 0, None), randomness="different")

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        log_probs, features = self.forward(self.params, self.buffers, x)   # (R, N, ...)
        loss, _, _ = al2_loss(log_probs, features.transpose(0, 1), y, self.w)
        self.opt.zero_grad()
        loss.backward()
        with torch.no_grad():                   # each run's own weight decay, as SGD adds it
            for p in self.params.values():
                p.grad.add_(p * self.decay.view(-1, *[1] * (p.dim() - 1)))
        self.opt.step()


def vmap_ensemble(grid: GridConfig, x: torch.Tensor, y: torch.Tensor, samples: int,
                  device) -> float:
    """Seconds to train every run of the grid for `samples` samples, the runs of each
    architecture as one vmapped ensemble, every ensemble on the same batches."""
    kinds = {}
    for run in grid.runs():
        kinds.setdefault((run.batch_norm, run.dropout), []).append(run)
    ensembles = [Ensemble(runs, grid, device) for runs in kinds.values()]
    batches = _batches(samples, len(x), grid.batch_size, device)
    synchronize(device)
    start = time.perf_counter()
    for idx in batches:
        for ensemble in ensembles:
            ensemble.step(x[idx], y[idx])
    synchronize(device)
    return time.perf_counter() - start
