"""The training step replayed as a CUDA graph (on the CPU the same buffers run it eagerly):
variants.install_graph makes it the trainer's `fast_step`."""
from __future__ import annotations

import torch


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

    def __init__(self, trainer, graph: bool):
        self.trainer = trainer
        model, dev, batch = trainer.model, trainer.device, trainer.grid.batch_size
        orders = len(trainer.plan.replicate_keys)
        self.idx = torch.zeros(orders, batch, dtype=torch.long, device=dev)      # (K, B)
        features = model.fc1_w.shape[1]                                          # 800
        self.u = (torch.zeros(len(model.dropout_runs), batch, features, device=dev,
                              dtype=trainer.data.train_x.dtype)                  # (D, B, 800)
                  if model.uses_dropout else None)
        self.mix = (torch.full((orders,), 0.5, device=dev, dtype=trainer.data.train_x.dtype),
                    torch.arange(batch, device=dev).repeat(orders, 1)) \
            if trainer.plan.mixup else None                                     # (K,), (K, B)
        self.al2_weight = torch.zeros(model.runs, device=dev)                    # (R,)
        self.weight_of_epoch = None             # the tensor al2_weight was last copied from
        self.graph = self.capture() if graph else None

    def eager(self) -> None:
        """The step itself, reading the static buffers."""
        self.trainer.step(self.idx, self.al2_weight, self.u, self.mix)

    def __call__(self, idx: torch.Tensor, al2_weight: torch.Tensor, dropout_gens: list,
                 mix=None) -> None:
        """One step on the batch `idx` (K, B) (Trainer.take_step's full batches): copy it in,
        the AL2 weight (R,) when it is a new tensor (once an epoch), draw the dropout uniforms
        into their buffer (the same draw as the eager path's), copy mixup's draws in, run or
        replay."""
        self.idx.copy_(idx)
        if al2_weight is not self.weight_of_epoch:
            self.al2_weight.copy_(al2_weight)
            self.weight_of_epoch = al2_weight
        if self.u is not None:
            self.trainer.draw_dropout(idx.shape[1], dropout_gens, out=self.u)
        if self.mix is not None:
            self.mix[0].copy_(mix[0])
            self.mix[1].copy_(mix[1])
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
        """Every tensor a step writes: weights and momentum, BN statistics, metric sums."""
        t = self.trainer
        return [*t.sgd.state_tensors(), *t.model.buffers(), t.sums.buffer]
