"""The paper's smallNet (trunk + head) and the stacked form that trains many runs at once.

`LeNet` is the plain network, written to be read next to the paper (Sec. 4) and used as the
reference. `StackedLeNet` holds R independent copies and computes all of them in one pass: the
head as batched matrix products, the trunk as one grouped convolution (other kernels for it:
al2.speed.trunks). Each run keeps its own weights, batch-norm statistics, dropout rate and
masks, as its ModelPlan says. tests/test_training.py proves that R runs trained stacked end
where R plain LeNets trained alone end, with every trunk.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import NUM_CLASSES

CHANNELS, POSITIONS = 50, 4 * 4  # the trunk's output: 50 channels on a 4 x 4 grid
FEATURES = CHANNELS * POSITIONS  # 800 features per image, in (C, H, W) order
BN_EPS, BN_MOMENTUM = 1e-5, 0.1
# Batch-norm weight (gamma) initialisation. The authors ran PyTorch 0.4 / 1.1, whose BatchNorm2d
# drew gamma ~ U(0, 1); PyTorch 1.2 changed it to ones (pytorch/pytorch#12259).
BN_INITS = ("uniform", "ones")


class LeNet(nn.Module):
    """smallNet for MNIST. forward(x) -> (log_probs (N, 10), features (N, 800)).

    x is a batch of normalised images (N, 1, 28, 28); features are the trunk's output, flattened
    in (C, H, W) order: the representation AL2 penalises and the head reads.

    bn_init: "uniform" (default, the authors' PyTorch: gamma ~ U(0, 1), drawn from the global RNG
    right after the convolutions, where their PyTorch drew it) or "ones" (PyTorch >= 1.2).
    """

    def __init__(self, batch_norm: bool = False, dropout: float = 0.0, bn_init: str = "uniform"):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        if bn_init not in BN_INITS:
            raise ValueError(f"bn_init must be one of {BN_INITS}, got {bn_init!r}")
        self.batch_norm, self.dropout = batch_norm, dropout
        layers = [nn.Conv2d(1, 20, 5, 1), nn.ReLU(), nn.MaxPool2d(2, 2),   # (N, 20, 12, 12)
                  nn.Conv2d(20, 50, 5, 1)]                                 # (N, 50, 8, 8)
        if batch_norm:  # BN baseline: after the second convolution
            bn = nn.BatchNorm2d(50, eps=BN_EPS, momentum=BN_MOMENTUM)
            if bn_init == "uniform":  # before the head is built: the authors' order of draws
                nn.init.uniform_(bn.weight, 0.0, 1.0)
            layers.append(bn)
        layers += [nn.ReLU(), nn.MaxPool2d(2, 2)]                          # (N, 50, 4, 4)
        if dropout > 0:  # DO baseline: at the end of the trunk, so AL2 sees dropped activations
            layers.append(nn.Dropout(dropout))
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(FEATURES, 500), nn.ReLU(), nn.Linear(500, NUM_CLASSES),
                                  nn.LogSoftmax(dim=1))

    def forward(self, x):
        features = self.trunk(x).flatten(1)  # (N, 50, 4, 4) -> (N, 800)
        return self.head(features), features


def lenet_from_seed(seed: int, batch_norm: bool = False, dropout: float = 0.0,
                    bn_init: str = "uniform") -> LeNet:
    """A LeNet with the default initialisation drawn from `seed`; global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LeNet(batch_norm, dropout, bn_init)


@dataclass(frozen=True)
class ModelPlan:
    """What the stacked model knows of each run: batch norm or not, its dropout rate, and the
    input group it reads (None: every run reads one batch). A grid's runs give it through
    plan.StackPlan.model; ModelPlan.of(models) reads it off plain LeNets (the analyses, tests)."""
    batch_norm: tuple[bool, ...]
    dropout: tuple[float, ...]
    group_of_run: tuple[int, ...] | None = None

    @classmethod
    def of(cls, models: list[LeNet]) -> "ModelPlan":
        return cls(tuple(m.batch_norm for m in models), tuple(m.dropout for m in models))

    @property
    def runs(self) -> int:
        return len(self.batch_norm)

    @property
    def bn_runs(self) -> list[int]:
        return [r for r, bn in enumerate(self.batch_norm) if bn]

    @property
    def dropout_runs(self) -> list[int]:
        return [r for r, p in enumerate(self.dropout) if p > 0]


class StackedLeNet(nn.Module):
    """R LeNets computed together. Parameters carry a leading run dimension R.

    models: the runs' LeNets, whose weights it stacks; plan: what each run is (ModelPlan; by
    default read off the models), which the models must agree with.
    Input: one batch (N, 1, 28, 28) that every run reads (a paired grid, and every test pass), or
    a batch per input group (G, N, 1, 28, 28) when the plan's group_of_run (the group of each
    run, runs in group order) says which runs read which (plan.py: replicates with their own
    batch order, mixup). BN parameters and statistics exist for the runs with batch norm only (B
    of them, in run order); dropout[r] = 0 means no mask for run r.

    The trunk is one grouped convolution over every run (`grouped_convolutions`); a speed
    variant may compute the same function with other kernels (`variant`, which
    al2.speed.variants.install_trunk sets from outside; None: the grouped convolutions).
    Exact rewrites used for speed: ReLU and max-pool commute (both monotone), so we pool first and
    apply ReLU to 4x fewer values; batch norm runs on the BN runs' channels alone.
    """

    def __init__(self, models: list[LeNet], plan: ModelPlan | None = None):
        super().__init__()
        plan = plan if plan is not None else ModelPlan.of(models)
        if ModelPlan.of(models) != ModelPlan(plan.batch_norm, plan.dropout):
            raise ValueError("the models' batch norm and dropout differ from the plan's")
        R = plan.runs
        self.plan, self.runs = plan, R
        self.group_of_run = list(plan.group_of_run) if plan.group_of_run is not None else [0] * R
        if len(self.group_of_run) != R or self.group_of_run != sorted(self.group_of_run):
            raise ValueError("groups: one input group per run, runs in group order")
        # the runs of each group, a slice of the stack: group g reads x[g]
        self.group_slices = [slice(self.group_of_run.index(g), R - self.group_of_run[::-1].index(g))
                             for g in dict.fromkeys(self.group_of_run)]
        sd = [m.state_dict() for m in models]
        bn_sd = [sd[r] for r in plan.bn_runs]

        def stack(key, dicts=sd, transpose=False):
            return torch.stack([s[key].T if transpose else s[key] for s in dicts])

        self.conv1_w = nn.Parameter(stack("trunk.0.weight"))                 # (R, 20, 1, 5, 5)
        self.conv1_b = nn.Parameter(stack("trunk.0.bias"))                   # (R, 20)
        self.conv2_w = nn.Parameter(stack("trunk.3.weight"))                 # (R, 50, 20, 5, 5)
        self.conv2_b = nn.Parameter(stack("trunk.3.bias"))                   # (R, 50)
        if bn_sd:
            self.bn_w = nn.Parameter(stack("trunk.4.weight", bn_sd))         # (B, 50)
            self.bn_b = nn.Parameter(stack("trunk.4.bias", bn_sd))
            self.register_buffer("bn_mean", stack("trunk.4.running_mean", bn_sd))
            self.register_buffer("bn_var", stack("trunk.4.running_var", bn_sd))
            self.register_buffer("bn_batches", stack("trunk.4.num_batches_tracked", bn_sd))
            # (B * 50,) the BN runs' channels among the R * 50 of the second convolution
            self.register_buffer("bn_channels", torch.cat(
                [torch.arange(r * CHANNELS, (r + 1) * CHANNELS) for r in plan.bn_runs]))
        # The head's weights are stored as the batched product reads them, (R, in, out): their
        # gradients come out in that layout, with no copy into nn.Linear's (out, in).
        self.fc1_w = nn.Parameter(stack("head.0.weight", transpose=True))    # (R, 800, 500)
        self.fc1_b = nn.Parameter(stack("head.0.bias"))                      # (R, 500)
        self.fc2_w = nn.Parameter(stack("head.2.weight", transpose=True))    # (R, 500, 10)
        self.fc2_b = nn.Parameter(stack("head.2.bias"))                      # (R, 10)
        # the runs with dropout (D of them) and their keep probabilities (D, 1, 1)
        do_runs = plan.dropout_runs
        self.register_buffer("dropout_runs", torch.tensor(do_runs, dtype=torch.long))
        self.register_buffer("keep_prob", 1.0 - torch.tensor(
            [plan.dropout[r] for r in do_runs], dtype=torch.get_default_dtype()).view(-1, 1, 1))
        self.variant = None     # other kernels for the trunk, set from outside (al2.speed)

    @property
    def uses_dropout(self) -> bool:
        return bool(self.plan.dropout_runs)

    @property
    def bn_runs(self) -> list[int]:
        return self.plan.bn_runs

    def trunk(self, x, dropout_u=None):
        """x (N, 1, 28, 28), or (G, N, 1, 28, 28) a batch per input group -> features
        (N, R, 800), in each run's (C, H, W) order.
        dropout_u (D, N, 800): uniforms in [0, 1) for the masks of the D runs with dropout, in
        training mode; drawn by the caller, one stream per run (stack.Trainer.draw_dropout), so
        that a run's masks do not depend on the other runs of its grid and a CUDA graph can read
        them from a buffer."""
        N = x.shape[-4]
        if x.dim() == 5 and x.shape[0] != len(self.group_slices):
            raise ValueError(f"{x.shape[0]} input groups for a stack of {len(self.group_slices)}")
        features = self.convolutions(x).reshape(N, self.runs, FEATURES)     # (N, R, 800)
        if self.training and self.uses_dropout:
            # inverted dropout on the D dropout runs, one mask per element; the others untouched
            scale = ((dropout_u < self.keep_prob) / self.keep_prob).transpose(0, 1)  # (N, D, 800)
            dropped = features.index_select(1, self.dropout_runs) * scale
            features = features.index_copy(1, self.dropout_runs, dropped)
        return features

    def convolutions(self, x):
        """The trunk before dropout -> (N, R*50, 4, 4): the grouped convolutions, or a speed
        variant's kernels for them."""
        return self.grouped_convolutions(x) if self.variant is None else self.variant(x)

    def grouped_convolutions(self, x, channels_last: bool = True):
        """Every run's trunk in one pass -> (N, R*50, 4, 4): the first convolution as one
        1 -> R*20 convolution (one per input group), the second as one grouped convolution
        (groups = R), on channels-last input (1.06x faster than NCHW at 8 and 14 runs on 2 CPU
        cores, code/bench/bench_train.py; the kernels every committed CPU number came from)."""
        R = self.runs
        h = F.relu(self.first_convolution(x))                                # (N, R*20, 12, 12)
        if channels_last:
            h = h.contiguous(memory_format=torch.channels_last)
        h = F.conv2d(h, self.conv2_w.flatten(0, 1), self.conv2_b.flatten(), groups=R)
        if self.bn_runs:                                                     # (N, R*50, 8, 8)
            h = self.batch_norm_bn_runs(h)
        return F.relu(F.max_pool2d(h, 2))                                    # (N, R*50, 4, 4)

    def first_convolution(self, x):
        """The first convolution and max-pool of every run -> (N, R*20, 12, 12). A batch all runs
        read (N, 1, 28, 28) is one 1 -> R*20 convolution; a batch per input group
        (G, N, 1, 28, 28) one convolution per group, of its runs' filters."""
        if x.dim() == 4:
            # (N, R*20, 24, 24)
            h = F.conv2d(x, self.conv1_w.flatten(0, 1), self.conv1_b.flatten())
            return F.max_pool2d(h, 2)
        return torch.cat([F.max_pool2d(F.conv2d(x[g], self.conv1_w[s].flatten(0, 1),
                                                self.conv1_b[s].flatten()), 2)
                          for g, s in enumerate(self.group_slices)], 1)

    def batch_norm_bn_runs(self, h):
        """Batch norm on the BN runs' channels of h (N, R*50, 8, 8) alone; the rest untouched.
        What it buys: statistics over B*50 channels instead of all R*50 (B = 1 of 14 runs in
        the paper grid) and no select over the whole tensor."""
        hb = h.index_select(1, self.bn_channels)                             # (N, B*50, 8, 8)
        normed = F.batch_norm(hb, self.bn_mean.view(-1), self.bn_var.view(-1),
                              self.bn_w.flatten(), self.bn_b.flatten(), self.training,
                              BN_MOMENTUM, BN_EPS)                           # stats in place
        if self.training:
            self.bn_batches += 1
        return h.index_copy(1, self.bn_channels, normed)

    def batch_norm_of(self, h, b: int):
        """Batch norm of the b-th BN run alone on its (N, 50, 8, 8); its running statistics are
        views of the stacked buffers, updated in place (bn_batches is the caller's)."""
        return F.batch_norm(h, self.bn_mean[b], self.bn_var[b], self.bn_w[b], self.bn_b[b],
                            self.training, BN_MOMENTUM, BN_EPS)

    def head(self, features):
        """features (N, R, 800) -> log_probs (R, N, 10)."""
        f = features.transpose(0, 1)                                         # (R, N, 800)
        h = F.relu(torch.baddbmm(self.fc1_b.unsqueeze(1), f, self.fc1_w))    # (R, N, 500)
        out = torch.baddbmm(self.fc2_b.unsqueeze(1), h, self.fc2_w)          # (R, N, 10)
        return F.log_softmax(out, dim=-1)

    def forward(self, x, dropout_u=None):
        features = self.trunk(x, dropout_u)
        return self.head(features), features

    def run_state_dict(self, r: int) -> dict:
        """Run r as a plain LeNet state_dict (keys exactly as LeNet(batch_norm, dropout) has)."""
        sd = {"trunk.0.weight": self.conv1_w[r], "trunk.0.bias": self.conv1_b[r],
              "trunk.3.weight": self.conv2_w[r], "trunk.3.bias": self.conv2_b[r]}
        if self.plan.batch_norm[r]:
            b = self.bn_runs.index(r)
            sd.update({"trunk.4.weight": self.bn_w[b], "trunk.4.bias": self.bn_b[b],
                       "trunk.4.running_mean": self.bn_mean[b],
                       "trunk.4.running_var": self.bn_var[b],
                       "trunk.4.num_batches_tracked": self.bn_batches[b]})
        sd.update({"head.0.weight": self.fc1_w[r].T, "head.0.bias": self.fc1_b[r],
                   "head.2.weight": self.fc2_w[r].T, "head.2.bias": self.fc2_b[r]})
        return {k: v.detach().cpu().clone(memory_format=torch.contiguous_format)
                for k, v in sd.items()}
