"""The trainer of a grid's stacked runs: weights, momentum, the step (eager or a replayed CUDA
graph), one epoch, the test pass.

All runs live in one StackedLeNet (model.py); every run sees the same minibatch. The data set
sits on the device, normalised once; a batch is an index slice of an on-device permutation; the
metric sums stay on the device until the epoch ends (no host sync inside an epoch).

    code/train.py -> training.train_grid -> Trainer.train_epoch -> Trainer.step -> al2_loss (Eq. 1)
"""
from __future__ import annotations

import sys

import torch

from .config import GridConfig, RunSpec
from .data import GridData
from .inference import evaluate_stacked
from .loss import al2_loss
from .model import FEATURES, StackedLeNet, lenet_from_seed

ORDER_STREAM, DROPOUT_STREAM = 0, 1


def epoch_generator(seed: int, epoch: int, stream: int, device: torch.device,
                    key: int = 0) -> torch.Generator:
    """A generator that depends only on (seed, epoch, stream, key): resuming at any epoch
    reproduces the batch order and dropout masks of an uninterrupted run without saving RNG
    states. key (< 2**32) tells runs apart (RunSpec.key); 0 for what the grid shares (the
    batch order)."""
    base = (seed * 1_000_003 + epoch) * 2 + stream   # key 0: the grid's streams
    return torch.Generator(device=device).manual_seed(base ^ (key << 32))


def dropout_generators(runs: list[RunSpec], seed: int, epoch: int,
                       device: torch.device) -> list[torch.Generator]:
    """One mask stream per run with dropout, keyed by the run itself: its masks are the same
    in any grid, shard or stacking order that contains it."""
    return [epoch_generator(seed, epoch, DROPOUT_STREAM, device, r.key)
            for r in runs if r.dropout > 0]


def draw_dropout(model: StackedLeNet, batch: int, generators, out=None):
    """Uniforms (D, batch, 800) for the masks of the D dropout runs of one step, one draw from
    each run's own generator (dropout_generators); None without dropout. out: (D, B, 800)."""
    if not model.uses_dropout:
        return None
    dev, dtype = model.conv1_w.device, model.conv1_w.dtype  # the same draw as into `out`
    if out is None:
        return torch.stack([torch.rand((batch, FEATURES), generator=g, device=dev, dtype=dtype)
                            for g in generators])
    for d, g in enumerate(generators):
        torch.rand((batch, FEATURES), generator=g, device=dev, out=out[d])
    return out


class MetricSums:
    """Per-run sums over an epoch's batches, on the device: L_c and L_r (batch means, summed),
    correct predictions against the noisy and the clean labels. One (4, R) buffer, so that a step
    adds to all of them with one kernel and the epoch reads them back with one sync."""

    NAMES = ("loss_c", "loss_r", "correct_noisy", "correct_clean")

    def __init__(self, runs: int, device: torch.device):
        self.buffer = torch.zeros(len(self.NAMES), runs, device=device)   # (4, R)

    def add(self, loss_c, loss_r, correct_noisy, correct_clean) -> None:
        """Each argument (R,); in place."""
        self.buffer += torch.stack([loss_c, loss_r, correct_noisy, correct_clean])

    def zero(self) -> None:
        self.buffer.zero_()

    def read(self) -> dict[str, list[float]]:
        """name -> per-run sums, copied to the host (the epoch's one sync)."""
        return dict(zip(self.NAMES, self.buffer.tolist()))


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
        for p in self.params:
            p.grad = None

    def momentum_views(self) -> list[torch.Tensor]:
        """The momentum of each parameter, shaped as the parameter (views of the flat buffer)."""
        out, start = [], 0
        for p in self.params:
            out.append(self.momentum_buffer[start:start + p.numel()].view_as(p))
            start += p.numel()
        return out


class Trainer:
    """The stacked runs of a grid and everything that trains them.

    runs: the grid's runs (or a shard's, or one noise level's), each initialised from its seed;
    data: their data on the device; trunk: how the trunk is computed (StackedLeNet.TRUNKS, the
    same function); cuda_graph: on CUDA, capture the step once and replay it (StaticStep).
    """

    def __init__(self, grid: GridConfig, runs: list[RunSpec], data: GridData,
                 trunk: str = "grouped", cuda_graph: bool = False):
        self.grid, self.runs, self.data = grid, runs, data
        self.device = data.train_x.device
        self.model = StackedLeNet([lenet_from_seed(r.seed, r.batch_norm, r.dropout,
                                                   r.grid.bn_init) for r in runs], trunk=trunk)
        self.model = self.model.to(device=self.device, dtype=data.train_x.dtype).train()
        wd = torch.tensor([r.weight_decay for r in runs], device=self.device)       # (R,)
        bn_wd = wd[self.model.bn_runs]          # the BN parameters' rows are the BN runs (B,)
        named = list(self.model.named_parameters())
        self.sgd = FlatSGD([p for _, p in named], grid.lr, grid.momentum,
                           [bn_wd if name.startswith("bn_") else wd for name, _ in named])
        self.sums = MetricSums(len(runs), self.device)
        self.static, self.graph_error = None, None
        if cuda_graph and graph_capture_possible(self.device):
            self.static = self.captured_step()

    def captured_step(self) -> "StaticStep | None":
        """The step captured as a CUDA graph, or None when the capture fails: then the step runs
        eagerly (the same function, slower), said in one line on stderr and kept in graph_error,
        so that a failed capture never costs the training."""
        try:
            return StaticStep(self, graph=True)
        except RuntimeError as e:
            self.graph_error = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:160]}"
            print(f"al2: the CUDA graph capture failed ({self.graph_error}); the step runs "
                  f"eagerly", file=sys.stderr)
            return None

    @property
    def uses_graph(self) -> bool:
        return self.static is not None

    def step(self, x, y_noisy, y_clean, al2_weight, dropout_u=None) -> None:
        """One minibatch for every run: Eq. 1, backward, SGD; adds the batch's per-run metrics
        to self.sums. x (b, 1, 28, 28); y_noisy, y_clean (b,); al2_weight (R,) on the device;
        dropout_u (D, b, 800) from draw_dropout."""
        log_probs, features = self.model(x, dropout_u)                # (R, b, 10), (b, R, 800)
        loss, loss_c, loss_r = al2_loss(log_probs, features, y_noisy, al2_weight)
        loss.backward()
        self.sgd.step()
        with torch.no_grad():
            pred = log_probs.argmax(-1)                                   # (R, b)
            self.sums.add(loss_c, loss_r, (pred == y_noisy).sum(1), (pred == y_clean).sum(1))

    def train_epoch(self, epoch_index: int, al2_weight: torch.Tensor,
                    max_steps: int | None = None, perm: torch.Tensor | None = None) -> dict:
        """Training epoch `epoch_index` (zero-based, as get_map_weights counts) with the AL2
        weight al2_weight (R,): shuffled by the grid's order stream (or in the order `perm`), the
        last partial batch kept as a DataLoader would. Full batches go through the captured graph
        when there is one, the last partial batch eagerly on the same buffers. Returns the sums
        (MetricSums.read), "batches" and "samples"."""
        g, d, dev = self.grid, self.data, self.device
        n = len(d.train_x)
        self.model.train()
        if perm is None:
            perm = torch.randperm(n, device=dev, generator=epoch_generator(
                g.order_seed, epoch_index, ORDER_STREAM, dev))
        dropout_gens = dropout_generators(self.runs, g.dropout_seed, epoch_index, dev)
        self.sums.zero()
        weight = al2_weight.to(dev)
        if self.static is not None:
            self.static.al2_weight.copy_(weight)
            weight = self.static.al2_weight
        batches = samples = 0
        for s in range(0, n, g.batch_size):
            if max_steps is not None and batches >= max_steps:
                break
            idx = perm[s:s + g.batch_size]
            if self.static is not None and len(idx) == g.batch_size:
                self.static(idx, dropout_gens)
            else:
                self.step(d.train_x[idx], d.train_noisy[idx], d.train_clean[idx], weight,
                          draw_dropout(self.model, len(idx), dropout_gens))
            batches, samples = batches + 1, samples + len(idx)
        return {**self.sums.read(), "batches": batches, "samples": samples}

    def test(self, x=None, y=None):
        """Test accuracy % (R,) and mean NLL (R,) of every run (eval mode, one batched pass over
        the data's test set, or x, y)."""
        return evaluate_stacked(self.model, self.data.test_x if x is None else x,
                                self.data.test_y if y is None else y)

    def state_dict(self) -> dict:
        """Weights and momentum: what a resume restores."""
        return {"model": self.model.state_dict(),
                "momentum": [b.detach().cpu().clone() for b in self.sgd.momentum_views()]}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"], strict=True)
        views = self.sgd.momentum_views()
        if len(views) != len(state["momentum"]):
            raise ValueError("the momentum holds another number of parameters")
        for buf, saved in zip(views, state["momentum"]):
            buf.copy_(saved)


def graph_capture_possible(device: torch.device) -> bool:
    """Whether the step can be captured as a CUDA graph on `device` (CUDA only)."""
    return device.type == "cuda"


class StaticStep:
    """Trainer.step on fixed-shape, fixed-address buffers: replayable as a CUDA graph.

    An eager step launches ~100 small kernels; for the paper grid (656,600 steps) their launch
    cost alone is minutes. Here the step reads its batch through static buffers (the batch's
    indices into the resident data set, and the dropout uniforms), and its AL2 weight and metric
    sums are static device tensors, so every kernel's shapes and addresses are the same at every
    step. On CUDA it is captured once (torch.cuda.graph) and replayed; with graph=False, or on
    the CPU, the same buffers run the step eagerly, which is what the CPU tests exercise:
    everything but the capture. Full batches only; the last partial batch runs eagerly.
    """

    def __init__(self, trainer: Trainer, graph: bool):
        self.trainer = trainer
        model, dev, batch = trainer.model, trainer.device, trainer.grid.batch_size
        self.idx = torch.zeros(batch, dtype=torch.long, device=dev)              # (B,)
        self.u = (torch.zeros(len(model.dropout_runs), batch, FEATURES, device=dev,
                              dtype=trainer.data.train_x.dtype)                  # (D, B, 800)
                  if model.uses_dropout else None)
        self.al2_weight = torch.zeros(model.runs, device=dev)                    # (R,)
        self.graph = self.capture() if graph else None

    def eager(self) -> None:
        """The step itself, reading the static buffers."""
        d = self.trainer.data
        self.trainer.step(d.train_x[self.idx], d.train_noisy[self.idx], d.train_clean[self.idx],
                          self.al2_weight, self.u)

    def __call__(self, idx: torch.Tensor, dropout_gens: list | None) -> None:
        """One step on the batch `idx` (B,): copy it in, draw the dropout uniforms into their
        buffer (the same draw as the eager path's), run or replay."""
        self.idx.copy_(idx)
        if self.u is not None:
            draw_dropout(self.trainer.model, len(idx), dropout_gens, out=self.u)
        if self.graph is not None:
            self.graph.replay()
        else:
            self.eager()

    def capture(self) -> "torch.cuda.CUDAGraph":
        """Warm up on a side stream (cuDNN/cuBLAS pick their algorithms, the allocator
        settles, the trunk's own streams are made), restore the state the warm-up changed, then
        record one step."""
        self.trainer.model.train()  # the graph records training mode (BN statistics, dropout)
        saved = [t.detach().clone() for t in self.state()]
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    self.eager()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.eager()
        finally:
            # capture records kernels without running them; undo the warm-up's updates (also
            # when the capture failed: the eager step then starts from the same state)
            with torch.no_grad():
                for t, s in zip(self.state(), saved):
                    t.copy_(s)
            for p in self.trainer.model.parameters():
                p.grad = None
        return graph

    def state(self) -> list[torch.Tensor]:
        """Every tensor a step writes: weights and momentum (flat), BN statistics, metric sums."""
        t = self.trainer
        return [t.sgd.flat, t.sgd.momentum_buffer, *t.model.buffers(), t.sums.buffer]
