"""AL2 on any PyTorch network (paper Eq. 1): the progressive penalty on the trunk's output.

Split the network into a trunk, whose output `a` is the representation, and the head that reads
it; name the trunk by the module whose output that is (e.g. "avgpool" of torchvision's
resnet18, the encoder of a ViT). A forward hook on it keeps `a` in training mode, and

    reg = al2.AL2(model, trunk="avgpool")            # the authors' schedule by default
    for epoch in range(epochs):
        for x, y in loader:
            loss = criterion(model(x), y) + reg.penalty()   # L_c + w_e * mean(a**2)
            optimizer.zero_grad(); loss.backward(); optimizer.step()
        reg.step()                                        # w_e of the next epoch

Rules, as a PyTorch user expects them:
- penalty() covers every training-mode forward pass since the last call: mean(a**2) over all
  their samples and features, as if they were one batch (several forward passes per step, e.g.
  gradient accumulation without a step in between, are one L_r). It then forgets them.
- Eval mode (the trunk module's .training is False) and forward passes without autograd
  (torch.no_grad) are not kept: validation leaves the penalty alone. penalty() with nothing kept
  is an error, since it would mean the model was not in training mode.
- L_r is computed in float32 (float64 for float64 outputs), also under autocast.
- torch.compile: attach AL2 to the model before compiling it (the hook is traced with the
  model); penalty() runs outside the compiled graph.
- DDP: attach AL2 to the model inside DistributedDataParallel (or pass the DDP model: its
  `.module` is searched). The penalty is per process, like the loss: each process penalises its
  own batch, and DDP's gradient average makes the step the one of the global batch.
- `with al2.AL2(...) as reg:` removes the hook at the end; reg.remove() does the same.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .loss import activation_l2, al2_term
from .schedule import AL2Schedule


def find_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule `name` (a qualified name of model.named_modules()), looking through the
    wrappers of DDP / DataParallel (.module) and torch.compile (._orig_mod). ValueError naming
    it when there is none."""
    candidates, m = [], model
    while isinstance(m, nn.Module) and all(m is not c for c in candidates):
        candidates.append(m)
        inner = getattr(m, "module", None)
        m = inner if isinstance(inner, nn.Module) else getattr(m, "_orig_mod", None)
    for c in candidates:
        found = dict(c.named_modules()).get(name)
        if found is not None and name:
            return found
    top = ", ".join(n for n, _ in candidates[-1].named_children()) or "none"
    raise ValueError(f"{type(model).__name__} has no module named {name!r} (its top-level "
                     f"modules: {top})")


def as_module(model: nn.Module, trunk: str | nn.Module) -> tuple[nn.Module, str]:
    """(the trunk module, its name for messages)."""
    if isinstance(trunk, nn.Module):
        return trunk, type(trunk).__name__
    if isinstance(trunk, str):
        return find_module(model, trunk), trunk
    raise ValueError(f"trunk must be a module or a module's name, not {type(trunk).__name__}")


class TrunkCapture:
    """A forward hook that keeps the trunk's outputs: those in training mode with autograd on
    (keep="train", what the penalty needs), or every one (keep="all", for trunk_outputs)."""

    def __init__(self, module: nn.Module, name: str, keep: str = "train"):
        self.module, self.name, self.keep = module, name, keep
        self.outputs: list[torch.Tensor] = []
        self.handle = module.register_forward_hook(self.hook)

    def hook(self, module, inputs, output):
        if not isinstance(output, torch.Tensor):
            raise ValueError(f"the trunk {self.name!r} returned a {type(output).__name__}, not a "
                             f"tensor; name the module whose output is the representation the "
                             f"head reads (e.g. its last layer)")
        if self.keep == "all" or (module.training and torch.is_grad_enabled()):
            self.outputs.append(output)

    def take(self) -> list[torch.Tensor]:
        outputs, self.outputs = self.outputs, []
        return outputs

    def remove(self) -> None:
        self.handle.remove()
        self.outputs = []


class AL2:
    """The progressive activation loss of one model (module docstring). trunk: the module, or
    its qualified name, whose output the head reads; schedule: the weight w_e (default: the
    authors' get_map_weights rule, start 0.01, threshold 5, factors 1.1 and 1.01)."""

    def __init__(self, model: nn.Module, trunk: str | nn.Module,
                 schedule: AL2Schedule | None = None):
        module, name = as_module(model, trunk)
        self.schedule = schedule if schedule is not None else AL2Schedule()
        self.capture = TrunkCapture(module, name)
        self.last_loss_r: torch.Tensor | None = None   # L_r of the last penalty(), detached

    @property
    def weight(self) -> float:
        """w_e of the current epoch."""
        return self.schedule.value

    def penalty(self) -> torch.Tensor:
        """w_e * L_r over the training-mode forward passes since the last call (Eq. 1's second
        term), a float32 scalar with its graph."""
        outputs = self.capture.take()
        if not outputs:
            raise RuntimeError(f"AL2.penalty(): no training-mode forward pass of the trunk "
                               f"{self.capture.name!r} since the last call (model.train(), then "
                               f"model(x), then penalty())")
        loss_r = activation_l2(outputs)
        self.last_loss_r = loss_r.detach()
        return al2_term(loss_r, self.weight)

    def step(self) -> float:
        """End of an epoch: advance the schedule; returns the next epoch's weight."""
        return self.schedule.step()

    def state_dict(self) -> dict:
        return {"schedule": self.schedule.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.schedule.load_state_dict(state["schedule"])

    def remove(self) -> None:
        """Detach the hook; the model is as it was."""
        self.capture.remove()

    def __enter__(self) -> "AL2":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


@torch.no_grad()
def trunk_outputs(model: nn.Module, trunk: str | nn.Module, inputs, batch_size: int = 256):
    """The trunk's outputs on `inputs` (a tensor, batched here, or an iterable of input
    batches) in eval mode -> one tensor (n, *shape). The model's mode is restored after."""
    module, name = as_module(model, trunk)
    capture = TrunkCapture(module, name, keep="all")
    was_training = model.training
    model.eval()
    try:
        batches = inputs.split(batch_size) if isinstance(inputs, torch.Tensor) else inputs
        for x in batches:
            model(x)
        return torch.cat(capture.take())
    finally:
        capture.remove()
        model.train(was_training)
