"""The paper's analyses of trained representations: similarity (Sec. 5.1) and cumulative
ablation (Sec. 5.2)."""
from __future__ import annotations

import math

import numpy as np
import torch

import svcca

from .model import CHANNELS, FEATURES, POSITIONS, StackedLeNet

# Our column name -> svcca.pairwise's statistic. The first three are what the authors'
# evaluate.py reports (google/svcca, epsilon 1e-10): the truncated mean CCA (threshold 0.98),
# SVCCA on the top 10 SVD directions with the same truncated mean, and the public PWCCA code.
# The rest are the published formulas' variants and linear CKA, kept beside them.
AUTHORS_STATISTICS = {"mean_cca_authors": "mean_cca", "svcca_authors": "svcca_truncated",
                      "pwcca_authors": "pwcca_reference"}
EXTRA_STATISTICS = {"mean_cca_all": "mean_cca_all", "svcca_all": "svcca",
                    "pwcca_morcos": "pwcca", "cka": "cka"}
SIMILARITY_STATISTICS = {**AUTHORS_STATISTICS, **EXTRA_STATISTICS}
AUTHORS_EPSILON, AUTHORS_SVD_DIMS = 1e-10, 10


def spatial_points(features: torch.Tensor) -> torch.Tensor:
    """Trunk outputs (n, 800) -> (50 neurons, 16 n datapoints): each of the 4 x 4 spatial
    positions of each image is a datapoint, as in the authors' evaluation (Sec. 5.1)."""
    n = features.shape[0]
    # (n, 800) -> (n, 50, 16) -> (50, n, 16) -> (50, 16 n): datapoint index = 16 image + position
    return features.float().view(n, CHANNELS, POSITIONS).permute(1, 0, 2).reshape(
        CHANNELS, n * POSITIONS)


def random_floor(shape, seed: int, epoch: int, index: int, device=None) -> torch.Tensor:
    """Uniform [0, 1) activations of `shape` (float64), the authors' floor
    (np.random.uniform of the compared shape), drawn from (seed, epoch, index)."""
    gen = torch.Generator(device=device or "cpu").manual_seed((seed * 100_003 + epoch) * 1009
                                                             + index)
    return torch.rand(shape, generator=gen, dtype=torch.float64, device=device or "cpu")


def similarity_rows(reps: dict, pairs: list[tuple], epoch: int, seed: int = 0) -> list[dict]:
    """Statistics (SIMILARITY_STATISTICS) for named pairs of representations at one epoch.

    reps: name -> (neurons, datapoints) tensor. pairs: (kind, name_a, name_b), where name_b
    may be "random:<name_a>": uniform random activations of the same shape (the floor).
    """
    names = list(reps)
    tensors = [reps[k] for k in names]
    for kind, a, b in pairs:
        if b.startswith("random:") and b not in reps:
            names.append(b)
            tensors.append(random_floor(reps[a].shape, seed, epoch, len(names),
                                        reps[a].device))
    index = {k: i for i, k in enumerate(names)}
    # Dead representations (every neuron constant) have no CCA: record NaN for their pairs.
    alive = {k: bool((t.std(1) > 0).any()) for k, t in zip(names, tensors)}
    ok = [pair for pair in pairs if alive[pair[1]] and alive[pair[2]]]
    values = svcca.pairwise(tensors, statistics=tuple(SIMILARITY_STATISTICS.values()),
                            pairs=[(index[a], index[b]) for _, a, b in ok],
                            keep_dims=AUTHORS_SVD_DIMS, epsilon=AUTHORS_EPSILON) if ok else {}
    pos = {pair: i for i, pair in enumerate(ok)}
    rows = []
    for pair in pairs:
        kind, a, b = pair
        for stat, measure in SIMILARITY_STATISTICS.items():
            value = values[measure][pos[pair]] if pair in pos else math.nan
            rows.append({"epoch": epoch, "pair": kind, "run_a": a,
                         "run_b": "random" if b.startswith("random:") else b,
                         "statistic": stat, "value": float(value)})
    return rows


@torch.no_grad()
def ablation_masks(mode: str, fractions: torch.Tensor, draws: int, n: int,
                   generator: torch.Generator) -> torch.Tensor:
    """Keep-masks (F, draws, n or 1, 800) for each ablation fraction.

    element: each activation is zeroed independently with probability `fraction` (the authors'
    code); a fraction of 0 keeps everything and 1 zeroes everything, exactly.
    unit: round(fraction * 50) whole channels (4 x 4 positions each) are zeroed, chosen at random
    per draw and shared by all samples (Morcos et al. 2018).
    """
    F_ = len(fractions)
    if mode == "element":
        u = torch.rand(F_, draws, n, FEATURES, generator=generator, device=generator.device)
        return u >= fractions.view(F_, 1, 1, 1)
    if mode == "unit":
        ranks = torch.rand(F_, draws, CHANNELS, generator=generator,
                           device=generator.device).argsort(-1)             # random channel ranks
        k = torch.round(fractions * CHANNELS).long().view(F_, 1, 1)
        keep_channel = ranks >= k                                           # (F, draws, 50)
        return keep_channel.repeat_interleave(POSITIONS, dim=-1).unsqueeze(2)  # (F, draws, 1, 800)
    raise ValueError(f"unknown ablation mode {mode!r}; choose element or unit")


@torch.no_grad()
def ablation_accuracy(model: StackedLeNet, features: torch.Tensor, labels: dict, mode: str,
                      fractions, draws: int, seed: int, vectors: int = 100_000) -> dict:
    """Accuracy (%) of each run's head on ablated features, for every fraction, averaged over
    draws (paper Sec. 5.2).

    features (R, n, 800): the runs' trunk outputs; labels name -> (n,) targets; all on the
    model's device. Returns name -> (R, F) array. Vectorised over fractions, draws and runs:
    the stacked head runs on (F * draws * chunk, R, 800) at once, with the same masks for every
    run (a paired comparison), `vectors` bounding F * draws * chunk * R.
    """
    dev = features.device
    R, n, _ = features.shape
    fractions = torch.as_tensor(fractions, dtype=torch.float32, device=dev)
    F_ = len(fractions)
    gen = torch.Generator(device=dev).manual_seed(seed)
    model.eval()
    correct = {k: torch.zeros(R, F_, device=dev) for k in labels}
    masks = ablation_masks(mode, fractions, draws, 1, gen) if mode == "unit" else None
    chunk = max(1, vectors // (F_ * draws * R))
    for s in range(0, n, chunk):
        f = features[:, s:s + chunk]                                      # (R, c, 800)
        c = f.shape[1]
        m = masks if masks is not None else ablation_masks(mode, fractions, draws, c, gen)
        ablated = m.unsqueeze(2) * f                                      # (F, draws, R, c, 800)
        ablated = ablated.transpose(2, 3).flatten(0, 2)                   # (F*draws*c, R, 800)
        pred = model.head(ablated).argmax(-1).view(R, F_, draws, c)
        for k, y in labels.items():
            correct[k] += (pred == y[s:s + chunk]).float().sum((2, 3))
    return {k: (100.0 * v / (draws * n)).cpu().numpy() for k, v in correct.items()}


def ablation_fractions(step: float = 0.1) -> np.ndarray:
    return np.round(np.arange(0.0, 1.0 + 1e-9, step), 10)
