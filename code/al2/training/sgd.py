"""The optimiser of a stack (the default): torch.optim.SGD, with each run's own weight decay.

A stacked parameter holds every run's weights along its first dimension (R runs, or the B runs
with batch norm), and only the WD runs decay theirs, so the decay cannot be SGD's one
weight_decay per tensor: it is added to each run's rows of the gradient first,
d = grad + wd_r * p, then torch.optim.SGD (momentum, dampening 0, no Nesterov) steps:
buf = momentum * buf + d; p -= lr * buf, the authors' rule for each run.
speed.flat_sgd.FlatSGD is the same rule on one flat buffer: equal bit for bit at the authors'
momentum 0.5, within float32 rounding at others (it forms d + m * buf in one fused multiply-add,
torch rounds m * buf first; tests/test_training.py).
"""
from __future__ import annotations

import torch


class RunSGD:
    def __init__(self, params: list[torch.nn.Parameter], lr: float, momentum: float,
                 weight_decay: list[torch.Tensor]):
        """weight_decay: per parameter, the decay of each row of its leading dimension."""
        self.params = list(params)
        self.decay = [rows.to(p.dtype).view(-1, *([1] * (p.dim() - 1))).expand_as(p)
                      for p, rows in zip(self.params, weight_decay, strict=True)]
        self.optimizer = torch.optim.SGD(self.params, lr=lr, momentum=momentum)
        for p in self.params:  # the buffers exist from the start: a resume fills them
            self.optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p)

    @torch.no_grad()
    def step(self) -> None:
        for p, decay in zip(self.params, self.decay):
            if p.grad is None:
                raise RuntimeError("a stacked parameter got no gradient")
            p.grad.addcmul_(decay, p)                                        # grad + wd_r p
        self.optimizer.step()

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def momentum_views(self) -> list[torch.Tensor]:
        """The momentum of each parameter, shaped as the parameter."""
        return [self.optimizer.state[p]["momentum_buffer"] for p in self.params]

    def state_tensors(self) -> list[torch.Tensor]:
        """Every tensor a step writes: the weights and their momentum."""
        return [*self.params, *self.momentum_views()]
