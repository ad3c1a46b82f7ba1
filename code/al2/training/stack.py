"""The trainer of a grid's stacked runs: weights, momentum, the step, one epoch, the test pass.

All runs live in one StackedLeNet (model.py). In the paper's grid every run sees the same
minibatch; replicates read their own batch order and mixup runs their replicate's batch mixed
(plan.py: the input groups). The data set sits on the device, normalised once; a batch is an
index slice of an on-device permutation; the metric sums stay on the device until the epoch
ends (no host sync inside an epoch).

    code/train.py -> training.grid.train_grid -> Trainer.train -> Trainer.step -> loss.eq1 (Eq. 1).
    The step here is the plain one: eager, the grouped convolutions, torch.optim.SGD. Speed
    variants (al2.speed: other trunk kernels, a flat optimiser, a CUDA graph) are installed on a
    Trainer from outside, when a flag or the GPU probe asks.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ..method import remedies
from ..method.loss import activation_loss, cross_entropy, eq1
from .config import GridConfig, RunSpec
from .data import GridData
from .inference import evaluate_stacked
from .model import FEATURES, StackedLeNet, lenet_from_seed
from .plan import StackPlan
from .rng import ORDER_STREAM, EpochDraws, dropout_generators, epoch_generator
from .sgd import RunSGD


class MetricSums:
    """Per-run sums over an epoch's batches, on the device: L_c and L_r (batch means, summed),
    correct predictions against the noisy and the clean labels, and the data term each run
    minimised (L_c, or a remedy's loss). One (5, R) buffer: a step adds to all of them with
    one kernel, the epoch reads them back with one sync."""

    NAMES = ("loss_c", "loss_r", "correct_noisy", "correct_clean", "loss_fit")

    def __init__(self, runs: int, device: torch.device):
        self.buffer = torch.zeros(len(self.NAMES), runs, device=device)   # (5, R)

    def add(self, loss_c, loss_r, correct_noisy, correct_clean, loss_fit) -> None:
        """Each argument (R,); in place."""
        self.buffer += torch.stack([loss_c, loss_r, correct_noisy, correct_clean, loss_fit])

    def zero(self) -> None:
        self.buffer.zero_()

    def read(self) -> dict[str, list[float]]:
        """name -> per-run sums, copied to the host (the epoch's one sync)."""
        return dict(zip(self.NAMES, self.buffer.tolist()))


class Batch(NamedTuple):
    """One step's inputs: images (b, 1, 28, 28) every run reads, or (G, b, 1, 28, 28) one batch
    per input group; labels (b,) shared or (R, b) per run. Mixup runs also have the labels of the
    images mixed in (R, b) and their weight lam (R,) (1 for the other runs)."""
    x: torch.Tensor
    y_noisy: torch.Tensor
    y_clean: torch.Tensor
    y_mixed: torch.Tensor | None = None
    lam: torch.Tensor | None = None


class Trainer:
    """The stacked runs of a grid and everything that trains them.

    runs: the grid's runs (or a shard's, or one noise level's), each initialised from its seed;
    data: their data on the device. The optimiser is torch.optim.SGD with each run's weight
    decay (sgd.RunSGD); `fast_step`, a faster step for full batches, is None unless a speed
    variant installs one (al2.speed.variants: a CUDA graph replay).
    """

    def __init__(self, grid: GridConfig, runs: list[RunSpec], data: GridData):
        self.grid, self.runs, self.data = grid, runs, data
        self.device = dev = data.train_x.device
        self.sums = MetricSums(len(runs), dev)
        self.plan = p = StackPlan(runs)
        if data.label_seeds != p.label_seeds:
            raise ValueError(f"the data holds the labels of corruption seeds {data.label_seeds}, "
                             f"the runs need {p.label_seeds}")
        self.weights = p.al2_weights(grid, dev)                             # (epochs, R): w_e
        self.model = StackedLeNet([lenet_from_seed(r.init_seed, r.batch_norm, r.dropout,
                                                   r.grid.bn_init) for r in runs], p.model)
        self.model = self.model.to(device=dev, dtype=data.train_x.dtype).train()

        def index(values):
            return torch.tensor(values, dtype=torch.long, device=dev)

        # the plan as index tensors: each group's batch order and label set, each run's group
        self.group_order, self.group_labels, self.run_group = (
            index(v) for v in (p.order_of_group, p.labels_of_group, p.group_of_run))
        self.mixup_groups = [(g, p.order_of_group[g]) for g, grp in enumerate(p.groups)
                             if grp.mixup]
        self.run_mixup = torch.tensor([r.mixup for r in runs], device=dev)             # (R,)
        self.fit_rows = [(fit, index([r for r, f in enumerate(p.fits) if f == fit]))
                         for fit in dict.fromkeys(p.fits)]
        self.fit_inverse = torch.cat([rows for _, rows in self.fit_rows]).argsort()
        wd = torch.tensor(p.weight_decay, device=dev)                                  # (R,)
        bn_wd = wd[self.model.bn_runs]          # the BN parameters' rows are the BN runs (B,)
        named = list(self.model.named_parameters())
        # per parameter, the weight decay of each row of its leading (run) dimension
        self.decay = [bn_wd if name.startswith("bn_") else wd for name, _ in named]
        self.sgd = RunSGD([param for _, param in named], grid.lr, grid.momentum, self.decay)
        self.fast_step = None

    def batch(self, idx: torch.Tensor, mix=None) -> Batch:
        """The step's inputs from idx (K, b), the batch of each of the stack's K batch orders
        (one per replicate), and mix (lam (K,), perm (K, b)) for mixup runs."""
        d = self.data
        if self.plan.shared_input:  # the paper's paired grid: one batch for every run
            i = idx[0]
            return Batch(d.train_x[i], d.train_noisy[0][i], d.train_clean[i])
        rows = idx[self.group_order]                                          # (G, b)
        x = d.train_x[rows]                                                   # (G, b, 1, 28, 28)
        y = d.train_noisy[self.group_labels[:, None], rows]                   # (G, b)
        y_mixed, lam = y, None
        if mix is not None:
            lam_k, perm_k = mix
            y_mixed = y.clone()
            for g, k in self.mixup_groups:  # one lam and permutation per replicate and step
                x[g] = remedies.mix_inputs(x[g], lam_k[k], perm_k[k])
                y_mixed[g] = y[g][perm_k[k]]
            lam = torch.where(self.run_mixup, lam_k[self.group_order[self.run_group]], 1.0)
        runs = self.run_group
        return Batch(x, y[runs], d.train_clean[rows][runs], y_mixed[runs], lam)

    def draw_dropout(self, batch: int, generators, out=None):
        """Uniforms (D, batch, 800) for the masks of the D dropout runs of one step, one draw from
        each run's own generator (rng.dropout_generators); None without dropout. out: (D, B, 800),
        the same draw into a buffer (speed.graph.StaticStep)."""
        model = self.model
        if not model.uses_dropout:
            return None
        dev, dtype = model.conv1_w.device, model.conv1_w.dtype  # the same draw as into `out`
        if out is None:
            return torch.stack([torch.rand((batch, FEATURES), generator=g, device=dev,
                                           dtype=dtype) for g in generators])
        for d, g in enumerate(generators):
            torch.rand((batch, FEATURES), generator=g, device=dev, out=out[d])
        return out

    def step(self, idx, al2_weight, dropout_u=None, mix=None) -> None:
        """One minibatch for every run: Eq. 1 (or a remedy's data term + the same AL2 term),
        backward, SGD; adds the batch's per-run metrics to self.sums. idx (K, b): the batch of
        each batch order (Trainer.batch); al2_weight (R,) on the device; dropout_u (D, b, 800)
        from draw_dropout; mix: mixup's (lam (K,), perm (K, b)) when the stack has mixup runs."""
        batch = self.batch(idx, mix)
        self.sgd.zero_grad()
        log_probs, features = self.model(batch.x, dropout_u)          # (R, b, 10), (b, R, 800)
        loss_fit, loss_c = self.data_term(log_probs, batch)           # (R,): L_c, or a remedy's
        loss_r = activation_loss(features, dims=(0, 2))               # (R,)
        loss = eq1(loss_fit, loss_r, al2_weight).sum()                # Eq. 1, each run its own
        loss.backward()
        self.sgd.step()
        with torch.no_grad():
            pred = log_probs.argmax(-1)                                   # (R, b)
            self.sums.add(loss_c, loss_r, (pred == batch.y_noisy).sum(1),
                          (pred == batch.y_clean).sum(1), loss_fit)

    def data_term(self, log_probs, batch: Batch):
        """Eq. 1's first term per run -> (data term (R,), L_c (R,)): L_c, the cross-entropy on the
        noisy labels; beyond the paper, each run's own loss in its place (remedies.fit_loss), L_c
        then measured without gradient (for mixup runs, the mixed cross-entropy they minimise)."""
        if self.plan.faithful:
            loss_c = cross_entropy(log_probs, batch.y_noisy)
            return loss_c, loss_c

        def per_run(labels, rows):  # labels every run shares (b,) or each run's own (R, b)
            return labels if labels is None or labels.dim() == 1 else labels[rows]
        parts = [remedies.fit_loss(fit, log_probs[rows], per_run(batch.y_noisy, rows),
                                   self.plan.remedy_params, per_run(batch.y_mixed, rows),
                                   None if batch.lam is None else batch.lam[rows])
                 for fit, rows in self.fit_rows]
        loss_fit = torch.cat(parts)[self.fit_inverse]                        # (R,)
        with torch.no_grad():
            loss_c = torch.where(self.run_mixup, loss_fit,
                                 cross_entropy(log_probs, batch.y_noisy))
        return loss_fit, loss_c

    def orders(self, epoch_index: int) -> torch.Tensor:
        """The epoch's batch order of each of the stack's replicates (K, N), from its own
        stream (replicate 0: the grid's order stream)."""
        dev, n = self.device, len(self.data.train_x)
        return torch.stack([torch.randperm(n, device=dev, generator=epoch_generator(
            self.grid.order_seed, epoch_index, ORDER_STREAM, dev, replicate_key=key))
            for key in self.plan.replicate_keys])

    def draws(self, epoch_index: int, order: torch.Tensor | None = None) -> EpochDraws:
        """What epoch `epoch_index` draws (rng.EpochDraws): each replicate's batch order from its
        own stream, or `order` (N,) for every replicate (the benchmarks' fixed order), the
        dropout streams and mixup's draws."""
        g, dev, replicates = self.grid, self.device, len(self.plan.replicate_keys)
        orders = self.orders(epoch_index) if order is None else \
            order.to(dev).view(1, -1).expand(replicates, -1)                       # (K, N)
        mix = None
        if self.plan.mixup:  # one lam and permutation per replicate and step
            mix = remedies.mixup_draws(g.mixup_alpha, g.order_seed, epoch_index,
                                       self.plan.replicate_keys, len(self.data.train_x),
                                       g.batch_size, dev, self.data.train_x.dtype)
        return EpochDraws(orders, dropout_generators(self.runs, g.dropout_seed, epoch_index, dev),
                          mix, g.batch_size)

    def train(self, epoch: int, stop=None, position: dict | None = None) -> dict:
        """Epoch `epoch` of the grid (1 .. grid.epochs, as metrics.csv counts them) with the
        trainer's own AL2 weights: train_epoch of its zero-based index."""
        return self.train_epoch(epoch - 1, self.al2_weight(epoch), stop, position)

    def al2_weight(self, epoch: int) -> torch.Tensor:
        """w_e of epoch `epoch` (1 .. grid.epochs) for every run (R,); NaN at 0, untrained."""
        return self.weights[epoch - 1] if epoch else torch.full((len(self.runs),), math.nan)

    def train_epoch(self, epoch_index: int, al2_weight: torch.Tensor, stop=None,
                    position: dict | None = None) -> dict:
        """Training epoch `epoch_index` (zero-based, as get_map_weights counts) with the AL2
        weight al2_weight (R,). Returns the sums (MetricSums.read), "batches" and "samples".

        stop (stopping.StopOnSignal): checked before every step; once it asks, the epoch ends
        there and the result is {"partial": self.position(...)}, where it stopped. position:
        such a partial epoch of this epoch_index, continued from its next step."""
        self.model.train()
        draws = self.draws(epoch_index)
        self.sums.zero()
        done = self.continue_epoch(position, epoch_index, draws.dropout) if position else 0
        weight = al2_weight.to(self.device)
        for step, idx in draws.batches(done):
            if stop is not None and stop.check():
                return {"partial": self.position(epoch_index, step, draws.dropout)}
            self.take_step(idx, weight, draws, step)
            done = step + 1
        return {**self.sums.read(), "batches": done, "samples": draws.samples}

    def take_step(self, idx: torch.Tensor, al2_weight: torch.Tensor, draws: EpochDraws,
                  step: int) -> None:
        """Step `step` of an epoch on the batch idx (K, b): through fast_step for a full batch
        when a speed variant installed one, else the plain step with this step's dropout
        uniforms and mixup draws."""
        mix = draws.mix_of(step, idx.shape[1])
        if self.fast_step is not None and idx.shape[1] == self.grid.batch_size:
            self.fast_step(idx, al2_weight, draws.dropout, mix)
        else:
            self.step(idx, al2_weight, self.draw_dropout(idx.shape[1], draws.dropout), mix)

    def position(self, epoch_index: int, steps: int, dropout_gens: list) -> dict:
        """Where an epoch stopped, to continue it exactly: steps done, the metric sums so far
        (5, R) and each dropout stream's state (the batch order and mixup's draws are functions
        of the epoch and the step)."""
        return {"epoch_index": epoch_index, "steps": steps,
                "sums": self.sums.buffer.detach().cpu().clone(),
                "dropout_rng": [gen.get_state() for gen in dropout_gens]}

    def fits_position(self, position: dict) -> bool:
        """Whether a saved partial epoch (Trainer.position) is one of this stack's: its sums'
        shape and one dropout state per dropout run."""
        sums, rng = position.get("sums"), position.get("dropout_rng")
        return isinstance(sums, torch.Tensor) and tuple(sums.shape) == \
            tuple(self.sums.buffer.shape) and isinstance(rng, list) and \
            len(rng) == len(self.model.dropout_runs) and \
            all(isinstance(state, torch.Tensor) for state in rng)

    def continue_epoch(self, position: dict, epoch_index: int, dropout_gens: list) -> int:
        """Restore a partial epoch (position: its sums and dropout streams) and return its steps
        done. A position of another epoch or stack is a ValueError."""
        if position["epoch_index"] != epoch_index or not self.fits_position(position):
            raise ValueError("the partial epoch is not this stack's next epoch")
        self.sums.buffer.copy_(position["sums"])
        for gen, state in zip(dropout_gens, position["dropout_rng"]):
            gen.set_state(state)
        return position["steps"]

    def test(self, x=None, y=None):
        """Test accuracy % (R,) and mean NLL (R,) of every run (eval mode, one batched pass over
        the data's test set, or x, y)."""
        return evaluate_stacked(self.model, self.data.test_x if x is None else x,
                                self.data.test_y if y is None else y)

    def validate(self):
        """Accuracy % (R,) and mean NLL (R,) of every run on the held-out images against their
        corrupted labels (each run its label set's): what a user without clean labels sees.
        None without a validation set."""
        d = self.data
        if d.val_x is None:
            return None
        labels = d.val_noisy[0] if len(d.label_seeds) == 1 else \
            d.val_noisy[torch.tensor(self.plan.labels_of_run, device=self.device)]
        return evaluate_stacked(self.model, d.val_x, labels)

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
