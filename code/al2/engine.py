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
from .model import FEATURES, StackedLeNet, lenet_from_seed

ORDER_STREAM, DROPOUT_STREAM = 0, 1


def epoch_generator(seed: int, epoch: int, stream: int, device: torch.device,
                    key: int = 0) -> torch.Generator:
    """A generator that depends only on (seed, epoch, stream, key): resuming at any epoch
    reproduces the batch order and dropout masks of an uninterrupted run without saving RNG
    states. key (< 2**32) tells runs apart (RunSpec.key); 0 for what the grid shares (the
    batch order)."""
    base = (seed * 1_000_003 + epoch) * 2 + stream   # key 0: the grid's streams, as before
    return torch.Generator(device=device).manual_seed(base ^ (key << 32))


def dropout_generators(runs: list[RunSpec], seed: int, epoch: int,
                       device: torch.device) -> list[torch.Generator]:
    """One mask stream per run with dropout, keyed by the run itself: its masks are the same
    in any grid, shard or stacking order that contains it."""
    return [epoch_generator(seed, epoch, DROPOUT_STREAM, device, r.key)
            for r in runs if r.dropout > 0]


def stacked_runs(runs: list[RunSpec], device: torch.device, conv2: str = "grouped",
                 conv1: str = "cudnn"):
    """The grid's StackedLeNet in training mode (each run initialised from its seed), its
    parameters, zeroed momentum buffers and the per-run weight decay (R,). conv2, conv1: how
    the convolutions are computed (StackedLeNet.CONV2, CONV1; the same function)."""
    model = StackedLeNet([lenet_from_seed(r.seed, r.batch_norm, r.dropout, r.grid.bn_init)
                          for r in runs], conv2=conv2, conv1=conv1)
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


def draw_dropout(model: StackedLeNet, batch: int, generators, out=None):
    """Uniforms (D, batch, 800) for the masks of the D dropout runs of one step, one draw from
    each run's own generator (dropout_generators); None without dropout. out: (D, B, 800)."""
    if not model.uses_dropout:
        return None
    dev = model.conv1_w.device
    if out is None:
        return torch.stack([torch.rand((batch, FEATURES), generator=g, device=dev)
                            for g in generators])
    for d, g in enumerate(generators):
        torch.rand((batch, FEATURES), generator=g, device=dev, out=out[d])
    return out


def train_step(model: StackedLeNet, params, buffers, x, y_noisy, y_clean, al2_weight, wd,
               lr: float, momentum: float, sums: torch.Tensor, dropout_u=None) -> None:
    """One minibatch for every run: Eq. 1, backward, SGD; adds the batch's per-run L_c, L_r,
    correct predictions against the noisy and the clean labels to `sums` (4, R), in place.
    x (b, 1, 28, 28); y_noisy, y_clean (b,); al2_weight, wd (R,) on the device; dropout_u
    (D, b, 800) from draw_dropout."""
    log_probs, features = model(x, dropout_u)                     # (R, b, 10), (b, R, 800)
    loss, loss_c, loss_r = al2_loss(log_probs, features, y_noisy, al2_weight)
    loss.backward()
    sgd_step(params, buffers, lr, momentum, wd)
    with torch.no_grad():
        pred = log_probs.argmax(-1)                                   # (R, b)
        sums += torch.stack([loss_c, loss_r, (pred == y_noisy).sum(1), (pred == y_clean).sum(1)])


def train_epoch(model, params, buffers, data: GridData, batch_size: int, lr: float,
                momentum: float, al2_weight, wd, order_gen: torch.Generator | None,
                dropout_gens: list | None, max_steps: int | None = None,
                perm: torch.Tensor | None = None, step: "StaticStep | None" = None):
    """One epoch over the training set, shuffled by `order_gen` (or in the order `perm`),
    the last partial batch kept as a DataLoader would. Returns the on-device per-run sums
    (4, R): L_c, L_r, correct vs noisy, correct vs clean; and the number of batches.
    dropout_gens: the dropout runs' generators (dropout_generators), None without dropout.
    With `step` (a StaticStep of the same model), full batches go through it (a CUDA graph's
    replay on the GPU) and the last partial batch runs eagerly on the same buffers."""
    n, dev = len(data.train_x), data.train_x.device
    model.train()
    if perm is None:
        perm = torch.randperm(n, device=dev, generator=order_gen)
    if step is not None:
        step.start_epoch(al2_weight)
        sums, al2_weight = step.sums, step.al2_weight
    else:
        sums = torch.zeros(4, model.runs, device=dev)
    batches = 0
    for s in range(0, n, batch_size):
        if max_steps is not None and batches >= max_steps:
            break
        idx = perm[s:s + batch_size]
        if step is not None and len(idx) == batch_size:
            step(idx, dropout_gens)
        else:
            train_step(model, params, buffers, data.train_x[idx], data.train_noisy[idx],
                       data.train_clean[idx], al2_weight, wd, lr, momentum, sums,
                       draw_dropout(model, len(idx), dropout_gens))
        batches += 1
    return (sums.clone() if step is not None else sums), batches


class StaticStep:
    """train_step on fixed-shape, fixed-address buffers: replayable as a CUDA graph.

    An eager step launches ~100 small kernels; for the paper grid (656,600 steps) their launch
    cost alone is minutes. Here the step reads its batch through static buffers (the batch's
    indices into the resident data set, and the dropout uniforms), and its AL2 weight and metric
    sums are static device tensors, so every kernel's shapes and addresses are the same at every
    step. On CUDA it is captured once (torch.cuda.graph) and replayed; with graph=False, or on
    the CPU, the same buffers run train_step eagerly, which is what the CPU tests exercise:
    everything but the capture. Full batches only; the last partial batch runs eagerly.
    """

    def __init__(self, model: StackedLeNet, params, buffers, data: GridData, batch_size: int,
                 lr: float, momentum: float, wd: torch.Tensor, graph: bool):
        dev = data.train_x.device
        self.model, self.params, self.buffers, self.data = model, params, buffers, data
        self.lr, self.momentum, self.wd = lr, momentum, wd
        self.idx = torch.zeros(batch_size, dtype=torch.long, device=dev)        # (B,)
        self.u = (torch.zeros(len(model.dropout_runs), batch_size, FEATURES,   # (D, B, 800)
                              device=dev) if model.uses_dropout else None)
        self.al2_weight = torch.zeros(model.runs, device=dev)                   # (R,)
        self.sums = torch.zeros(4, model.runs, device=dev)                      # (4, R)
        self.graph = self.capture() if graph else None

    def eager(self) -> None:
        """The step itself, reading the static buffers."""
        d = self.data
        train_step(self.model, self.params, self.buffers, d.train_x[self.idx],
                   d.train_noisy[self.idx], d.train_clean[self.idx], self.al2_weight, self.wd,
                   self.lr, self.momentum, self.sums, self.u)

    def start_epoch(self, al2_weight: torch.Tensor) -> None:
        """Zero the metric sums and set the epoch's AL2 weight (R,), in place."""
        self.sums.zero_()
        self.al2_weight.copy_(al2_weight)

    def __call__(self, idx: torch.Tensor, dropout_gens: list | None) -> None:
        """One step on the batch `idx` (B,): copy it in, draw the dropout uniforms into their
        buffer (the same draw as the eager path's), run or replay."""
        self.idx.copy_(idx)
        if self.u is not None:
            draw_dropout(self.model, len(idx), dropout_gens, out=self.u)
        if self.graph is not None:
            self.graph.replay()
        else:
            self.eager()

    def capture(self) -> "torch.cuda.CUDAGraph":
        """Warm up on a side stream (cuDNN/cuBLAS pick their algorithms, the allocator
        settles), restore the state the warm-up changed, then record one step."""
        self.model.train()  # the graph records training mode (BN batch statistics, dropout)
        saved = [t.detach().clone() for t in self.state()]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                self.eager()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.eager()
        # capture records kernels without running them; undo the warm-up's updates
        with torch.no_grad():
            for t, s in zip(self.state(), saved):
                t.copy_(s)
        return graph

    def state(self) -> list[torch.Tensor]:
        """Every tensor a step writes: weights, momentum, BN statistics, metric sums."""
        return [*self.params, *self.buffers, *self.model.buffers(), self.sums]
