"""Many pairs at once: one Gram matrix of all representations, then small problems per pair.

For L representations of p neurons over n datapoints, the O(n) work is one Gram product
(L p, n) x (n, L p) (on the GPU when the inputs live there), or one per group of
representations that the pairs link (blocks no pair needs are never formed); every pair's
statistics then come from its blocks. What depends on one representation alone (its CCA side:
rescaled covariance, kept neurons, inverse square root; its top SVD directions) is computed
once and serves all of its pairs, with the same arithmetic as a single call; a pair's CCA
serves mean CCA and PWCCA. Equal to the loop of single calls (tests/test_svcca.py).
"""
from __future__ import annotations

import contextlib
import itertools

import numpy as np
import torch

from .core import (Moments, as_acts, cca_from_sides, cca_matrix, cca_side, centred_gram,
                   neuron_means, truncated_mean_index)
from .measures import _cka_from_moments, pwcca_from_cca, svd_top

STATISTICS = ("mean_cca", "mean_cca_all", "svcca", "svcca_truncated", "pwcca", "pwcca_reference",
              "cka", "cka_debiased")


def pairwise(reps, statistics=("pwcca",), pairs=None, keep_dims: int | None = 10,
             variance: float = 0.99, epsilon: float = 0.0, threshold: float = 0.98) -> dict:
    """Statistics for pairs of representations.

    reps: a list of (neurons, datapoints) arrays or tensors with the same datapoints.
    pairs: (i, j) index pairs (default: all i < j); acts1 = reps[i], acts2 = reps[j].
    Returns {statistic: np.ndarray of len(pairs)}. Statistics: "mean_cca" (the reference's
    truncated mean), "mean_cca_all" (plain mean), "svcca" (keep_dims or variance; the plain mean
    of its coefficients), "svcca_truncated" (the same coefficients' truncated mean, as the
    AL2 authors report SVCCA), "pwcca" (Morcos), "pwcca_reference", "cka", "cka_debiased".
    """
    unknown = [s for s in statistics if s not in STATISTICS]
    if unknown:
        raise ValueError(f"unknown statistic(s) {unknown}; choose from {STATISTICS}")
    acts = [as_acts(r, f"reps[{i}]") for i, r in enumerate(reps)]
    if len({a.shape[1] for a in acts}) > 1:
        raise ValueError("all representations must have the same number of datapoints")
    device = acts[0].device
    acts = [a.to(device) for a in acts]
    pairs = list(itertools.combinations(range(len(acts)), 2)) if pairs is None else list(pairs)
    grams = Grams(acts, pairs, epsilon, keep_dims, variance, "cka_debiased" in statistics)
    out = {s: np.empty(len(pairs)) for s in statistics}
    with one_torch_thread(device):  # the small problems, pair by pair
        for k, (i, j) in enumerate(pairs):
            for name, value in grams.statistics(i, j, set(statistics), threshold).items():
                out[name][k] = value
    return out


class Grams:
    """The centred Gram blocks of representations that pairs link (one product per group,
    linked_groups) and what one representation contributes to every pair it is in (its CCA
    side, its top SVD directions), each computed once."""

    def __init__(self, acts: list, pairs: list, epsilon: float, keep_dims, variance: float,
                 debiased: bool = False):
        self.n, self.epsilon, self.keep_dims, self.variance = (acts[0].shape[1], epsilon,
                                                               keep_dims, variance)
        self.means = [neuron_means(a, f"reps[{i}]") for i, a in enumerate(acts)]
        self.grams = {}              # representation -> (its group's Gram matrix, its rows)
        for group in linked_groups(len(acts), pairs):
            gram = centred_gram(torch.cat([acts[i] for i in group]),      # the O(n) products
                                torch.cat([self.means[i] for i in group]))
            start = 0
            for i in group:
                self.grams[i] = gram, slice(start, start + len(acts[i]))
                start += len(acts[i])
        # the linear kernels' diagonals (squared norms of the centred datapoints), for CKA
        self.diag = [((a - mu[:, None]) ** 2).sum(0) for a, mu in zip(acts, self.means)] \
            if debiased else None
        self.sides, self.tops = {}, {}

    def block(self, i: int, j: int) -> torch.Tensor:
        """Xi Xj^T of the centred representations i and j."""
        gram, rows = self.grams[i]
        return gram[rows, self.grams[j][1]]

    def side(self, i: int):
        if i not in self.sides:
            self.sides[i] = cca_side(self.block(i, i), self.n, self.epsilon)
        return self.sides[i]

    def top(self, i: int):
        """Representation i's top SVD directions and the CCA side of their Gram block."""
        if i not in self.tops:
            u, _ = svd_top(self.block(i, i), self.keep_dims, self.variance)
            self.tops[i] = u, cca_side(u.T @ self.block(i, i) @ u, self.n, self.epsilon)
        return self.tops[i]

    def statistics(self, i: int, j: int, wanted: set, threshold: float) -> dict:
        """The wanted statistics (STATISTICS) of the pair (i, j). One CCA serves mean CCA and
        PWCCA; the reference PWCCA takes its SVD from numpy (see compute_pwcca)."""
        m = Moments(self.means[i], self.means[j], self.block(i, i), self.block(i, j),
                    self.block(j, j), self.n)
        out = {}
        if {"mean_cca", "mean_cca_all", "pwcca", "pwcca_reference"} & wanted:
            arr = cca_matrix(m.gxy, self.n, self.side(i), self.side(j))
        if {"mean_cca", "mean_cca_all", "pwcca"} & wanted:
            res = cca_from_sides(arr, self.side(i), self.side(j))
            out["mean_cca"] = float(res.s[:truncated_mean_index(res.s, threshold)].mean())
            out["mean_cca_all"] = float(res.s.mean())
            if "pwcca" in wanted:
                out["pwcca"] = pwcca_from_cca(res, m, "morcos")[0]
        if "pwcca_reference" in wanted:
            res = cca_from_sides(arr, self.side(i), self.side(j), numpy_svd=True)
            out["pwcca_reference"] = pwcca_from_cca(res, m, "reference")[0]
        if {"svcca", "svcca_truncated"} & wanted:
            (ui, si), (uj, sj) = self.top(i), self.top(j)
            s = cca_from_sides(cca_matrix(ui.T @ m.gxy @ uj, self.n, si, sj), si, sj).s
            out["svcca"] = float(s.mean())
            out["svcca_truncated"] = float(s[:truncated_mean_index(s, threshold)].mean())
        if "cka" in wanted:
            out["cka"] = _cka_from_moments(m)
        if "cka_debiased" in wanted:
            out["cka_debiased"] = _cka_from_moments(m, diag=(self.diag[i], self.diag[j]))
        return {k: v for k, v in out.items() if k in wanted}


def linked_groups(count: int, pairs) -> list[list[int]]:
    """The representations 0..count-1 that pairs link, directly or through others, as groups
    (ascending); a representation in no pair is in no group."""
    parent = list(range(count))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        parent[root(i)] = root(j)
    groups = {}
    for i in sorted({i for pair in pairs for i in pair}):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


@contextlib.contextmanager
def one_torch_thread(device: torch.device):
    """torch on one thread inside the block, on the CPU. What it buys: the per-pair problems are
    small (p x p) and alternate with numpy's LAPACK (the reference PWCCA's SVD), whose BLAS
    threads spin for a while after each call; torch's threads then fight them for the cores.
    Measured on 2 cores: ~30 ms per pair with both libraries on 2 threads, ~0.5 ms this way."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
