"""Inference for all stacked runs at once: test metrics and trunk outputs, in eval mode."""
from __future__ import annotations

import torch

from ..method import loss
from .model import StackedLeNet


def eval_chunk(device: torch.device) -> int:
    """Images per evaluation forward: small on the CPU, where big activations thrash the cache
    (measured: 64 is 2x faster than 1000 for 8 runs), large on a GPU."""
    return 64 if device.type == "cpu" else 2500


def trunk_chunk(device: torch.device, runs: int) -> int:
    """Images per trunk-only pass of the ablation and the probe: on the CPU about 640
    run-images a pass, so that a wide stack's activations stay in the cache (measured on 2
    cores: 16 images of 40 runs 1.5x faster than 64, the same bits: a convolution reads each
    image alone); as eval_chunk up to 10 runs, and on a GPU."""
    return eval_chunk(device) if device.type != "cpu" else max(16, min(64, 640 // runs))


@torch.no_grad()
def evaluate_stacked(model: StackedLeNet, x, y, chunk: int | None = None):
    """Metrics of all runs on images x (M, 1, 28, 28) every run reads, against labels y (M,) or
    (R, M) each run its own: (accuracy % (R,), mean NLL (R,)), eval mode, no host sync."""
    chunk = chunk or eval_chunk(x.device)
    was_training = model.training
    model.eval()
    correct = torch.zeros(model.runs, device=x.device)
    nll = torch.zeros(model.runs, device=x.device)
    for s in range(0, len(x), chunk):
        log_probs, _ = model(x[s:s + chunk])                           # (R, n, 10)
        yb = y[..., s:s + chunk]                                         # (n,) or (R, n)
        correct += (log_probs.argmax(-1) == yb).sum(1)
        nll += loss.nll(log_probs, yb).sum(-1)
    model.train(was_training)
    return 100.0 * correct / len(x), nll / len(x)


@torch.no_grad()
def trunk_features(model: StackedLeNet, x, chunk: int | None = None) -> torch.Tensor:
    """Trunk outputs (eval mode) of all runs: (R, n, 800)."""
    chunk = chunk or eval_chunk(x.device)
    was_training = model.training
    model.eval()
    out = torch.cat([model.trunk(x[s:s + chunk]) for s in range(0, len(x), chunk)])
    model.train(was_training)
    return out.transpose(0, 1)
