"""What each run of a stack does, in one place: the per-run facts of config.RunSpec turned into
what the model, the loss and the optimiser read (stack.Trainer builds it once).

  input groups  runs that read the same images in a step: one group per replicate (its own
                batch order), and for mixup runs one more per replicate (that replicate's batch,
                mixed). A grid of one replicate without mixup has a single group: every run
                reads the same batch, as in the paper's paired grid.
  label sets    the corrupted labels of each group: the grid's, or with
                corruption_per_replicate each replicate's own
  fits          each run's data term: cross-entropy (Eq. 1's L_c) or a remedy's loss
  per run       AL2 on/off and its weight per epoch (al2_weights), weight decay
  model         batch norm, dropout and input group of each run (model.ModelPlan), which the
                stacked model reads
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..method.schedule import get_map_weights
from .config import RunSpec
from .model import ModelPlan


@dataclass(frozen=True)
class InputGroup:
    replicate: int
    mixup: bool = False


def label_seeds(runs: list[RunSpec]) -> list[int]:
    """The corruption seeds of a stack's label sets, in the order of first use."""
    return list(dict.fromkeys(r.corruption_seed for r in runs))


class StackPlan:
    def __init__(self, runs: list[RunSpec]):
        self.runs = runs
        self.groups = list(dict.fromkeys(InputGroup(r.replicate, r.mixup) for r in runs))
        self.group_of_run = [self.groups.index(InputGroup(r.replicate, r.mixup)) for r in runs]
        if any(b < a for a, b in zip(self.group_of_run, self.group_of_run[1:])):
            raise ValueError("a stack's runs must come group by group (GridConfig.runs' order)")
        self.replicates = list(dict.fromkeys(r.replicate for r in runs))   # one order each
        self.replicate_keys = [next(r.replicate_key for r in runs if r.replicate == k)
                           for k in self.replicates]
        self.order_of_group = [self.replicates.index(g.replicate) for g in self.groups]
        self.label_seeds = label_seeds(runs)
        seed_of = {r.replicate: r.corruption_seed for r in runs}
        self.labels_of_group = [self.label_seeds.index(seed_of[g.replicate]) for g in self.groups]
        self.labels_of_run = [self.labels_of_group[g] for g in self.group_of_run]
        self.fits = [r.fit for r in runs]
        self.use_al2 = [r.use_al2 for r in runs]
        self.weight_decay = [r.weight_decay for r in runs]
        self.remedy_params = runs[0].grid.remedy_params()
        self.model = ModelPlan(tuple(r.batch_norm for r in runs), tuple(r.dropout for r in runs),
                               None if self.shared_input else tuple(self.group_of_run))

    @property
    def shared_input(self) -> bool:
        """Every run reads the same batch (one group): the model takes it as (b, 1, 28, 28)."""
        return len(self.groups) == 1 and not self.groups[0].mixup

    @property
    def faithful(self) -> bool:
        """Every run minimises Eq. 1 with cross-entropy: the paper's loss path
        (Trainer.data_term: L_c alone)."""
        return all(f == "ce" for f in self.fits)

    @property
    def mixup(self) -> bool:
        return any(g.mixup for g in self.groups)

    def al2_weights(self, grid, device) -> torch.Tensor:
        """(epochs, R): w_e = get_map_weights(...)[e] for AL2 runs in training epoch e + 1
        (zero-based e, as the authors index it), 0 for runs without AL2."""
        w = torch.tensor(get_map_weights(grid.epochs, grid.map_start, grid.map_threshold,
                                         grid.map_fac1, grid.map_fac2), dtype=torch.float32)
        return (w[:, None] * torch.tensor([float(a) for a in self.use_al2])).to(device)
