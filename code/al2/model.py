"""The paper's smallNet (trunk + head) and the stacked form that trains many runs at once.

`LeNet` is the plain network, written to be read next to the paper (Sec. 4) and used as the
reference. `StackedLeNet` holds R independent copies and computes all of them in one pass:
the first convolution is shared input so it becomes one wider convolution, the second a grouped
convolution (one group per run), the head batched matrix products. Each run keeps its own
weights, batch-norm statistics, dropout rate and masks. tests/test_training.py proves that R runs
trained stacked end where R plain LeNets trained alone end.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

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
        self.head = nn.Sequential(nn.Linear(FEATURES, 500), nn.ReLU(), nn.Linear(500, 10),
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


class StackedLeNet(nn.Module):
    """R LeNets computed together. Parameters carry a leading run dimension R.

    All runs see the same input batch (a paired grid). Runs with batch_norm[r] False skip the
    normalisation; dropout[r] = 0 means no mask for run r. Exact rewrites used for speed:
    ReLU and max-pool commute (both monotone), so we pool first and apply ReLU to 4x fewer values.
    """

    # How the convolutions are computed; the same function, different kernels. Second
    # convolution: "grouped", one grouped convolution on channels-last input (~20% faster than
    # NCHW with oneDNN on the CPU, measured); "grouped-nchw", the same on NCHW input; "gemm",
    # im2col (F.unfold) and one batched matrix product, cuBLAS instead of cuDNN's grouped
    # kernels. First convolution: "cudnn", one convolution of 1 -> R*20 channels; "gemm", the
    # input's im2col (shared by all runs) times the (R*20, 25) weights. The GPU probe times them
    # (code/bench_train.py --conv2/--conv1) and train.py --conv2/--conv1 picks.
    CONV2 = ("grouped", "grouped-nchw", "gemm")
    CONV1 = ("cudnn", "gemm")

    def __init__(self, models: list[LeNet], conv2: str = "grouped", conv1: str = "cudnn"):
        super().__init__()
        if conv2 not in self.CONV2 or conv1 not in self.CONV1:
            raise ValueError(f"conv2 must be one of {', '.join(self.CONV2)} and conv1 one of "
                             f"{', '.join(self.CONV1)}, got {conv2!r}, {conv1!r}")
        R = len(models)
        self.runs, self.conv2, self.conv1 = R, conv2, conv1
        sd = [m.state_dict() for m in models]

        def stack(key, default=None):
            return nn.Parameter(torch.stack([s[key] if key in s else default() for s in sd]))

        self.conv1_w, self.conv1_b = stack("trunk.0.weight"), stack("trunk.0.bias")  # (R,20,1,5,5)
        self.conv2_w, self.conv2_b = stack("trunk.3.weight"), stack("trunk.3.bias")  # (R,50,20,5,5)
        # Runs without BN still get (unused) affine parameters so that every run has one layout.
        self.bn_w = stack("trunk.4.weight", lambda: torch.ones(50))                  # (R, 50)
        self.bn_b = stack("trunk.4.bias", lambda: torch.zeros(50))
        self.fc1_w, self.fc1_b = stack("head.0.weight"), stack("head.0.bias")        # (R,500,800)
        self.fc2_w, self.fc2_b = stack("head.2.weight"), stack("head.2.bias")        # (R,10,500)
        self.register_buffer("bn_mean", torch.stack(
            [s.get("trunk.4.running_mean", torch.zeros(50)) for s in sd]))
        self.register_buffer("bn_var", torch.stack(
            [s.get("trunk.4.running_var", torch.ones(50)) for s in sd]))
        self.register_buffer("bn_batches", torch.stack(
            [s.get("trunk.4.num_batches_tracked", torch.tensor(0)) for s in sd]))
        self.batch_norm = [m.batch_norm for m in models]
        self.dropout = [m.dropout for m in models]
        # (1, R*50, 1, 1): which channels belong to a BN run
        self.register_buffer("bn_channels", torch.tensor(self.batch_norm).repeat_interleave(50)
                             .view(1, R * 50, 1, 1))
        # the runs with dropout (D of them) and their keep probabilities (D, 1, 1)
        do_runs = [r for r, p in enumerate(self.dropout) if p > 0]
        self.register_buffer("dropout_runs", torch.tensor(do_runs, dtype=torch.long))
        self.register_buffer("keep_prob", 1.0 - torch.tensor(
            [self.dropout[r] for r in do_runs], dtype=torch.get_default_dtype()).view(-1, 1, 1))

    @property
    def uses_dropout(self) -> bool:
        return any(p > 0 for p in self.dropout)

    def trunk(self, x, dropout_u=None):
        """x (N, 1, 28, 28) -> features (N, R, 800), in each run's (C, H, W) order.
        dropout_u (D, N, 800): uniforms in [0, 1) for the masks of the D runs with dropout, in
        training mode; drawn by the caller, one stream per run (engine.draw_dropout), so that a
        run's masks do not depend on the other runs of its grid and a CUDA graph can read them
        from a buffer."""
        R, N = self.runs, x.shape[0]
        h = self.first_conv(x)                                               # (N, R*20, 24, 24)
        h = F.relu(F.max_pool2d(h, 2))                                       # (N, R*20, 12, 12)
        h = self.second_conv(h)                                              # (N, R*50, 8, 8)
        if any(self.batch_norm):
            normed = F.batch_norm(h, self.bn_mean.view(-1), self.bn_var.view(-1),
                                  self.bn_w.flatten(), self.bn_b.flatten(), self.training,
                                  BN_MOMENTUM, BN_EPS)
            if self.training:
                self.bn_batches += 1
            h = torch.where(self.bn_channels, normed, h)
        h = F.relu(F.max_pool2d(h, 2))                                       # (N, R*50, 4, 4)
        features = h.reshape(N, R, FEATURES)                                 # (N, R, 800)
        if self.training and self.uses_dropout:
            # inverted dropout on the D dropout runs, one mask per element; the others untouched
            scale = ((dropout_u < self.keep_prob) / self.keep_prob).transpose(0, 1)  # (N, D, 800)
            dropped = features.index_select(1, self.dropout_runs) * scale
            features = features.index_copy(1, self.dropout_runs, dropped)
        return features

    def first_conv(self, x):
        """(N, 1, 28, 28) -> (N, R*20, 24, 24): every run's 5x5 convolution, 1 -> 20 channels."""
        if self.conv1 == "gemm":
            cols = F.unfold(x, 5)                                    # (N, 25, 576 positions)
            out = torch.matmul(self.conv1_w.view(-1, 25), cols) + self.conv1_b.view(1, -1, 1)
            return out.view(x.shape[0], -1, 24, 24)
        return F.conv2d(x, self.conv1_w.flatten(0, 1), self.conv1_b.flatten())

    def second_conv(self, h):
        """(N, R*20, 12, 12) -> (N, R*50, 8, 8): each run's 5x5 convolution, 20 -> 50 channels."""
        R, N = self.runs, h.shape[0]
        if self.conv2 == "gemm":
            cols = F.unfold(h, 5).view(N, R, 500, 64)            # (c_in, kh, kw) x 8*8 positions
            cols = cols.permute(1, 0, 3, 2).reshape(R, N * 64, 500)
            out = torch.baddbmm(self.conv2_b.unsqueeze(1), cols,
                                self.conv2_w.flatten(2).transpose(1, 2))   # (R, N*64, 50)
            return out.view(R, N, 8, 8, 50).permute(1, 0, 4, 2, 3).reshape(N, R * 50, 8, 8)
        if self.conv2 == "grouped":
            h = h.contiguous(memory_format=torch.channels_last)
        return F.conv2d(h, self.conv2_w.flatten(0, 1), self.conv2_b.flatten(), groups=R)

    def head(self, features):
        """features (N, R, 800) -> log_probs (R, N, 10)."""
        f = features.transpose(0, 1)                                           # (R, N, 800)
        h = F.relu(torch.baddbmm(self.fc1_b.unsqueeze(1), f, self.fc1_w.transpose(1, 2)))
        out = torch.baddbmm(self.fc2_b.unsqueeze(1), h, self.fc2_w.transpose(1, 2))  # (R, N, 10)
        return F.log_softmax(out, dim=-1)

    def forward(self, x, dropout_u=None):
        features = self.trunk(x, dropout_u)
        return self.head(features), features

    def run_state_dict(self, r: int) -> dict:
        """Run r as a plain LeNet state_dict (keys exactly as LeNet(batch_norm, dropout) has)."""
        sd = {"trunk.0.weight": self.conv1_w[r], "trunk.0.bias": self.conv1_b[r],
              "trunk.3.weight": self.conv2_w[r], "trunk.3.bias": self.conv2_b[r]}
        if self.batch_norm[r]:
            sd.update({"trunk.4.weight": self.bn_w[r], "trunk.4.bias": self.bn_b[r],
                       "trunk.4.running_mean": self.bn_mean[r], "trunk.4.running_var": self.bn_var[r],
                       "trunk.4.num_batches_tracked": self.bn_batches[r]})
        sd.update({"head.0.weight": self.fc1_w[r], "head.0.bias": self.fc1_b[r],
                   "head.2.weight": self.fc2_w[r], "head.2.bias": self.fc2_b[r]})
        return {k: v.detach().cpu().clone() for k, v in sd.items()}

    def run_model(self, r: int) -> LeNet:
        model = LeNet(self.batch_norm[r], self.dropout[r])
        model.load_state_dict(self.run_state_dict(r), strict=True)
        return model
