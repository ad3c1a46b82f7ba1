"""What practitioners use against noisy labels instead of AL2 (or beside it): label smoothing, two
noise-robust losses and mixup. Beyond the paper: the faithful path (Eq. 1 with cross-entropy,
loss.py) never calls this module; a grid trains these as baselines next to the paper's
(config.REMEDIES), each without and with AL2.

Every loss takes log-probabilities (..., N, C) (the head's log-softmax) and targets (..., N) and
returns the batch mean (...): one value per stacked run for (R, N, C), or one for (N, C). For a
training loop of one's own, beside al2.AL2:

    log_probs = torch.log_softmax(model(x), dim=1)
    loss = al2.remedies.gce_loss(log_probs, y) + reg.penalty()

Each value below is the one its paper gives (DEFAULTS names the source); a grid overrides them
with train.py's flags.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from .loss import cross_entropy, nll

# name -> (default, source). The grid's fields of the same names (config.GridConfig) take these.
DEFAULTS = {
    # Szegedy et al., "Rethinking the Inception architecture", CVPR 2016, Sec. 7: epsilon 0.1.
    "label_smoothing": (0.1, "Szegedy et al. 2016, Sec. 7 (epsilon = 0.1)"),
    # Zhang & Sabuncu, "Generalized cross entropy loss ... with noisy labels", NeurIPS 2018:
    # L_q with q = 0.7, the value of all their experiments.
    "gce_q": (0.7, "Zhang & Sabuncu 2018, Sec. 4 (q = 0.7)"),
    # Wang et al., "Symmetric cross entropy for robust learning with noisy labels", ICCV 2019:
    # MNIST alpha 0.01, beta 1.0; log 0 := A = -4 in the reverse cross-entropy. (Their public
    # code clips the one-hot labels at 1e-4 instead, A = ln 1e-4 = -9.2: --sce-log-clip.)
    "sce_alpha": (0.01, "Wang et al. 2019, Sec. 4.1, MNIST (alpha = 0.01)"),
    "sce_beta": (1.0, "Wang et al. 2019, Sec. 4.1, MNIST (beta = 1.0)"),
    "sce_log_clip": (-4.0, "Wang et al. 2019, Sec. 3.2 (log 0 := A = -4)"),
    # Zhang et al., "mixup: beyond empirical risk minimization", ICLR 2018, Sec. 3.4 (CIFAR-10
    # with corrupted labels, Table 2): mixup alone at alpha = 8.
    "mixup_alpha": (8.0, "Zhang et al. 2018, Sec. 3.4, Table 2 (alpha = 8)"),
}


def label_smoothing_loss(log_probs, targets, smoothing: float = DEFAULTS["label_smoothing"][0]):
    """Cross-entropy against (1 - eps) one-hot(y) + eps / C: (1 - eps)(-log p_y) + eps mean_k
    (-log p_k); torch.nn.functional.cross_entropy(..., label_smoothing=eps) per sample."""
    return ((1 - smoothing) * nll(log_probs, targets)
            - smoothing * log_probs.mean(-1)).mean(-1)


def gce_loss(log_probs, targets, q: float = DEFAULTS["gce_q"][0]):
    """Generalised cross-entropy L_q = (1 - p_y^q) / q: MAE at q = 1, CE as q -> 0."""
    return ((1 - torch.exp(-q * nll(log_probs, targets))) / q).mean(-1)


def sce_loss(log_probs, targets, alpha: float = DEFAULTS["sce_alpha"][0],
             beta: float = DEFAULTS["sce_beta"][0], log_clip: float = DEFAULTS["sce_log_clip"][0]):
    """Symmetric cross-entropy alpha CE + beta RCE. The reverse cross-entropy -sum_k p_k log
    q_k of the one-hot label q, with log 0 := A (log_clip), is -A (1 - p_y)."""
    p_y = torch.exp(-nll(log_probs, targets))
    return (alpha * nll(log_probs, targets) - beta * log_clip * (1 - p_y)).mean(-1)


def mixup_loss(log_probs, targets, targets_b, lam):
    """Cross-entropy against the mixed labels lam one-hot(y) + (1 - lam) one-hot(y_b):
    lam (-log p_y) + (1 - lam)(-log p_yb). lam: a number or (...,) per run."""
    lam = torch.as_tensor(lam, dtype=log_probs.dtype, device=log_probs.device)
    lam = lam.view(*lam.shape, 1) if lam.dim() else lam
    return (lam * nll(log_probs, targets) + (1 - lam) * nll(log_probs, targets_b)).mean(-1)


def mix_inputs(x: torch.Tensor, lam, perm: torch.Tensor) -> torch.Tensor:
    """mixup's images: lam x + (1 - lam) x[perm] (perm a permutation of the batch)."""
    return lam * x + (1 - lam) * x[perm]


@dataclass
class MixupDraws:
    """One epoch of mixup draws for K replicates: lam (K, S) ~ Beta(alpha, alpha) and perm
    (K, S, B), a permutation of each step's batch (the last, partial step permutes its first
    `last` positions; the rest of its row is the identity)."""
    lam: torch.Tensor
    perm: torch.Tensor

    def step(self, s: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(lam (K,), perm (K, size)) of step s."""
        return self.lam[:, s], self.perm[:, s, :size]


def mixup_draws(alpha: float, seed: int, epoch: int, keys: list[int], samples: int,
                batch_size: int, device=None, dtype=torch.float32) -> MixupDraws:
    """The epoch's draws for each replicate key: from numpy generators seeded by (seed, epoch,
    key), so that they are the same on every device and depend on nothing else. Drawn on the
    host once per epoch; no step waits for them."""
    steps = math.ceil(samples / batch_size)
    lam = np.empty((len(keys), steps))
    perm = np.tile(np.arange(batch_size), (len(keys), steps, 1))
    for k, key in enumerate(keys):
        rng = np.random.default_rng([seed, epoch, key, 0x6D6978])  # 0x6D6978: "mix"
        for s in range(steps):
            size = min(batch_size, samples - s * batch_size)
            lam[k, s] = rng.beta(alpha, alpha)
            perm[k, s, :size] = rng.permutation(size)
    return MixupDraws(torch.tensor(lam, dtype=dtype, device=device),
                      torch.tensor(perm, dtype=torch.long, device=device))


FITS = ("ce", "ls", "gce", "sce", "mixup")   # the data term of a run (config.RunSpec.fit)


def fit_loss(fit: str, log_probs, targets, params: dict, targets_b=None, lam=None):
    """The data term of a run of kind `fit` (FITS), its parameters from `params` (the grid's
    fields named in DEFAULTS); mixup also needs its second targets and lam."""
    if fit == "ce":  # L_c of Eq. 1 (loss.py), the data term the others replace
        return cross_entropy(log_probs, targets)
    if fit == "ls":
        return label_smoothing_loss(log_probs, targets, params["label_smoothing"])
    if fit == "gce":
        return gce_loss(log_probs, targets, params["gce_q"])
    if fit == "sce":
        return sce_loss(log_probs, targets, params["sce_alpha"], params["sce_beta"],
                        params["sce_log_clip"])
    if fit == "mixup":
        return mixup_loss(log_probs, targets, targets_b, lam)
    raise ValueError(f"unknown fit {fit!r}; choose from {FITS}")


def __getattr__(name: str):
    """cross_entropy_loss, this module's name for L_c before Eq. 1 had one home (loss.py): a
    user's older code still imports it, with a DeprecationWarning (goes in al2 0.3)."""
    if name == "cross_entropy_loss":
        warnings.warn("al2.method.remedies.cross_entropy_loss is deprecated (goes in al2 0.3): "
                      "use al2.method.loss.cross_entropy", DeprecationWarning, stacklevel=2)
        return cross_entropy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
