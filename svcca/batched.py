"""Many pairs at once: one Gram matrix of all representations, then small problems per pair.

For L representations of p neurons over n datapoints, the O(n) work is a single
(L p, n) x (n, L p) product (on the GPU when the inputs live there); every pair's statistics
then come from its blocks. Equal to the loop of single calls (tests/test_svcca.py).
"""
from __future__ import annotations

import itertools

import numpy as np
import torch

from .core import (Moments, as_acts, cca_from_moments, centred_gram, neuron_means,
                   truncated_mean_index)
from .measures import _cka_from_moments, _pwcca_from_moments, _svcca_from_moments

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
    sizes = [a.shape[0] for a in acts]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    means = [neuron_means(a, f"reps[{i}]") for i, a in enumerate(acts)]
    gram = centred_gram(torch.cat(acts), torch.cat(means))              # the one O(n) product
    diag = [((a - mu[:, None]) ** 2).sum(0) for a, mu in zip(acts, means)] \
        if "cka_debiased" in statistics else None
    n = acts[0].shape[1]
    out = {s: np.empty(len(pairs)) for s in statistics}
    for k, (i, j) in enumerate(pairs):
        bi, bj = slice(starts[i], starts[i + 1]), slice(starts[j], starts[j + 1])
        m = Moments(means[i], means[j], gram[bi, bi], gram[bi, bj], gram[bj, bj], n)
        if {"mean_cca", "mean_cca_all"} & set(statistics):
            s = cca_from_moments(m, epsilon).s
            if "mean_cca" in out:
                out["mean_cca"][k] = float(s[:truncated_mean_index(s, threshold)].mean())
            if "mean_cca_all" in out:
                out["mean_cca_all"][k] = float(s.mean())
        if {"svcca", "svcca_truncated"} & set(statistics):
            sv = _svcca_from_moments(m, keep_dims, variance, epsilon, threshold)
            if "svcca" in out:
                out["svcca"][k] = sv["svcca"]
            if "svcca_truncated" in out:
                out["svcca_truncated"][k] = sv["mean"][0]
        if "pwcca" in out:
            out["pwcca"][k] = _pwcca_from_moments(m, epsilon, "morcos")[0]
        if "pwcca_reference" in out:
            out["pwcca_reference"][k] = _pwcca_from_moments(m, epsilon, "reference")[0]
        if "cka" in out:
            out["cka"][k] = _cka_from_moments(m)
        if "cka_debiased" in out:
            out["cka_debiased"][k] = _cka_from_moments(m, diag=(diag[i], diag[j]))
    return out
