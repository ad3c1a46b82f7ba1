"""Installing the speed variants on a plain trainer, from outside.

training.stack.Trainer builds the plain step only: eager, the model's grouped convolutions,
torch.optim.SGD. A flag of train.py (or the GPU job's probe, code/bench/probe_step.py) asks for
a variant; `Variants` is what train.py hands to train_grid (TrainOptions.speed), and it installs
the variants on each new Trainer:

  trunk       another kernel for the stacked trunk (trunks.py): the model's `variant`
  optimizer   "flat": the same SGD rule on one buffer (flat_sgd.py): the trainer's `sgd`
  cuda_graph  on CUDA, full batches replayed as a captured graph (graph.py): the trainer's
              `fast_step`; a capture that fails leaves the eager step, said in one line

Each equals the plain path (tests/test_training.py); none is installed unless asked for.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

from .flat_sgd import FlatSGD
from .graph import StaticStep, graph_capture_possible
from .trunks import VARIANTS as TRUNK_VARIANTS

TRUNKS = ("grouped", *TRUNK_VARIANTS)       # "grouped": the model's own convolutions
OPTIMIZERS = ("torch", "flat")              # "torch": the plain torch.optim.SGD


def install_trunk(trainer, trunk: str) -> None:
    """The stacked trunk computed by `trunk` (TRUNKS), the same function."""
    if trunk not in TRUNKS:
        raise ValueError(f"trunk must be one of {', '.join(TRUNKS)}, got {trunk!r}")
    model = trainer.model
    model.variant = None if trunk == "grouped" else TRUNK_VARIANTS[trunk](model)


def install_flat_sgd(trainer) -> None:
    """The trainer's optimiser on one flat buffer (FlatSGD), from the state it has now."""
    params = list(trainer.model.parameters())
    momentum = [m.detach().clone() for m in trainer.sgd.momentum_views()]
    trainer.sgd = FlatSGD(params, trainer.grid.lr, trainer.grid.momentum, trainer.decay)
    for view, saved in zip(trainer.sgd.momentum_views(), momentum):
        view.copy_(saved)


def install_graph(trainer) -> str | None:
    """Full batches replayed as a captured CUDA graph (StaticStep); None when it is installed,
    else why not (the step stays eager: the same function, slower)."""
    try:
        trainer.fast_step = StaticStep(trainer, graph=True)
        return None
    except RuntimeError as e:
        error = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:160]}"
        print(f"al2: the CUDA graph capture failed ({error}); the step runs eagerly",
              file=sys.stderr)
        return error


@dataclass(frozen=True)
class Variants:
    """The variants train.py's flags ask for; calling it on a Trainer installs them and returns
    what config.json's environment records: {"trunk", "optimizer", "cuda_graph"} and, when a
    capture failed, "cuda_graph_error". The graph is captured last, over the other variants."""
    trunk: str = "grouped"
    optimizer: str = "torch"
    cuda_graph: bool = True          # on CUDA; no effect on the CPU

    def __call__(self, trainer) -> dict:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got "
                             f"{self.optimizer!r}")
        install_trunk(trainer, self.trunk)
        if self.optimizer == "flat":
            install_flat_sgd(trainer)
        env = {"trunk": self.trunk, "optimizer": self.optimizer, "cuda_graph": False}
        if self.cuda_graph and graph_capture_possible(trainer.device):
            error = install_graph(trainer)
            env["cuda_graph"] = error is None
            if error:
                env["cuda_graph_error"] = error
        return env
