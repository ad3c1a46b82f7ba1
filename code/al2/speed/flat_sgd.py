"""The optimiser on one flat buffer: training.sgd.RunSGD's rule (torch.optim.SGD with each run's
weight decay) in fewer kernels; equal to it bit for bit at momentum 0.5. Not the default: on 2
CPU cores code/bench/bench_train.py measures it 0.995x torch.optim.SGD's speed (the bar is 1.10).
On CUDA, where its few kernels were meant to help, it is a candidate of the step probe
(code/bench/probe_step.py), which the GPU job runs: `--optimizer flat` when the probe finds it
faster; it has not been measured there yet. Installed from outside (variants.install_flat_sgd)."""
from __future__ import annotations

import torch


class FlatSGD:
    """torch.optim.SGD's rule (dampening 0, no Nesterov) with a per-run weight decay, on one flat
    buffer holding every parameter:  d = grad + wd_r * p;  buf = momentum * buf + d;  p -= lr * buf.

    What it buys: the parameters are views into one flat tensor, so an update is one gather of
    the gradients (torch.cat) and three elementwise kernels over the flat buffer, instead of three
    per parameter tensor (30 for the stacked LeNet); the arithmetic per element is the same.
    A parameter's leading dimension is its runs (R, or B for the BN runs' parameters).
    """

    def __init__(self, params: list[torch.nn.Parameter], lr: float, momentum: float,
                 weight_decay: list[torch.Tensor]):
        """weight_decay: per parameter, the decay of each row of its leading dimension."""
        self.params, self.lr, self.momentum = list(params), lr, momentum
        ref = self.params[0]
        self.flat = torch.empty(sum(p.numel() for p in self.params), dtype=ref.dtype,
                                device=ref.device)
        decay, start = [], 0
        for p, rows in zip(self.params, weight_decay, strict=True):
            view = self.flat[start:start + p.numel()].view_as(p)
            view.copy_(p.detach())
            p.data = view                 # the parameter now lives in the flat buffer
            decay.append(rows.to(p.dtype).view(-1, *([1] * (p.dim() - 1))).expand_as(p)
                         .reshape(-1))
            start += p.numel()
        self.decay = torch.cat(decay)                                         # (numel,)
        self.momentum_buffer = torch.zeros_like(self.flat)

    @torch.no_grad()
    def step(self) -> None:
        grads = [p.grad for p in self.params]
        if any(g is None for g in grads):
            raise RuntimeError("a stacked parameter got no gradient")
        d = torch.cat([g.reshape(-1) for g in grads])                        # (numel,)
        d.addcmul_(self.decay, self.flat)                                    # grad + wd_r p
        torch.add(d, self.momentum_buffer, alpha=self.momentum, out=self.momentum_buffer)
        self.flat.add_(self.momentum_buffer, alpha=-self.lr)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def state_tensors(self) -> list[torch.Tensor]:
        """Every tensor a step writes: the weights (the flat buffer) and their momentum."""
        return [self.flat, self.momentum_buffer]

    def momentum_views(self) -> list[torch.Tensor]:
        """The momentum of each parameter, shaped as the parameter (views of the flat buffer)."""
        out, start = [], 0
        for p in self.params:
            out.append(self.momentum_buffer[start:start + p.numel()].view_as(p))
            start += p.numel()
        return out
