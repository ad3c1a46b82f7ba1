"""Shared machinery: input checks, Gram matrices, and CCA from covariance blocks.

Every statistic in this package is a function of second moments. For activations X (p, n) and
Y (q, n) we form one Gram matrix of the stacked, centred activations, G = Z Z^T with Z = [Xc; Yc]
(the only pass over the n datapoints), and solve small (p+q)-sized eigenproblems from its blocks.
All arithmetic is float64; tensors stay on their device (CPU or GPU).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def as_acts(acts, name: str = "acts") -> torch.Tensor:
    """numpy array or tensor (neurons, datapoints) -> float64 tensor on its own device."""
    t = acts if isinstance(acts, torch.Tensor) else torch.as_tensor(np.asarray(acts))
    if t.dim() != 2:
        raise ValueError(f"{name} must be 2-D (neurons, datapoints), got shape {tuple(t.shape)}")
    t = t.detach().to(torch.float64)
    if t.shape[0] > t.shape[1]:
        raise ValueError(f"{name} has fewer datapoints ({t.shape[1]}) than neurons "
                         f"({t.shape[0]}); inputs are (neurons, datapoints)")
    return t


def neuron_means(t: torch.Tensor, name: str) -> torch.Tensor:
    """Mean of each neuron (row). Also the finiteness check: a NaN or inf anywhere in a row makes
    its mean non-finite, so no separate pass over the data is needed."""
    mean = t.mean(1)
    if not torch.isfinite(mean).all():
        raise ValueError(f"{name} holds non-finite values (NaN or inf)")
    return mean


def as_pair(acts1, acts2):
    x, y = as_acts(acts1, "acts1"), as_acts(acts2, "acts2")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"acts1 and acts2 have different datapoint counts "
                         f"({x.shape[1]} vs {y.shape[1]})")
    if x.device != y.device:
        y = y.to(x.device)
    return x, y


@dataclass
class Moments:
    """Second moments of a pair: means (p,), (q,) and the centred Gram blocks, i.e.
    Gxx = Xc Xc^T, Gxy = Xc Yc^T, Gyy = Yc Yc^T (unnormalised), with n datapoints."""
    mean_x: torch.Tensor
    mean_y: torch.Tensor
    gxx: torch.Tensor
    gxy: torch.Tensor
    gyy: torch.Tensor
    n: int


def raw_products(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b.T of uncentred activations. On the CPU numpy's matmul runs it (for a is b it uses
    the symmetric rank-k BLAS routine, half the work): measured ~1.5x torch's float64 matmul
    here (code/bench/bench_svcca.py)."""
    if a.device.type == "cpu":
        an = a.numpy()
        return torch.from_numpy(an @ (an if b is a else b.numpy()).T)
    return a @ b.T


# Centring by subtraction (X Y^T - n mx my^T) loses about eps * mean^2 / variance of relative
# accuracy; beyond this ratio the centred activations are formed explicitly instead.
MAX_MEAN_TO_VARIANCE = 1e6


def moments(x: torch.Tensor, y: torch.Tensor) -> Moments:
    """The centred Gram blocks of a pair: the only O(n) work (three matrix products).
    Xc Yc^T = X Y^T - n mx my^T, so no centred copy of the activations is made, unless a
    neuron's mean dwarfs its spread (constant non-zero neurons, large offsets): then the
    blocks are recomputed from explicitly centred activations, exactly as np.cov would."""
    n = x.shape[1]
    mx, my = neuron_means(x, "acts1"), neuron_means(y, "acts2")
    gxx = raw_products(x, x) - n * torch.outer(mx, mx)
    gxy = raw_products(x, y) - n * torch.outer(mx, my)
    gyy = raw_products(y, y) - n * torch.outer(my, my)
    if needs_centring(torch.cat([mx, my]), torch.cat([gxx.diagonal(), gyy.diagonal()]), n):
        xc, yc = x - mx[:, None], y - my[:, None]
        gxx, gxy, gyy = xc @ xc.T, xc @ yc.T, yc @ yc.T
    return Moments(mx, my, gxx, gxy, gyy, n)


def needs_centring(means: torch.Tensor, centred_sums: torch.Tensor, n: int) -> bool:
    """Whether subtracting n m m^T lost too much: some neuron's mean^2 exceeds
    MAX_MEAN_TO_VARIANCE times its variance (an exactly zero mean, e.g. a dead ReLU, is exact)."""
    exact = (means == 0) | (n * means ** 2 <= MAX_MEAN_TO_VARIANCE * centred_sums)
    return not bool(exact.all())


def centred_gram(z: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """Zc Zc^T of the rows of z (stacked representations) minus their means, as in moments."""
    n = z.shape[1]
    g = raw_products(z, z) - n * torch.outer(means, means)
    if needs_centring(means, g.diagonal(), n):
        zc = z - means[:, None]
        g = zc @ zc.T
    return g


def inv_sqrt_psd(a: torch.Tensor) -> torch.Tensor:
    """Pseudo-inverse square root of a symmetric PSD matrix by eigendecomposition (the
    reference's pinv followed by an eigh square root, in one step)."""
    w, v = torch.linalg.eigh(a)
    cutoff = w.abs().max() * a.shape[0] * torch.finfo(a.dtype).eps
    inv = torch.where(w > cutoff, w.clamp_min(cutoff).rsqrt(), torch.zeros_like(w))
    return (v * inv) @ v.T


@dataclass
class CCAResult:
    """CCA of a pair. u (kx, kx), s (min(kx, ky),), vh (ky, ky): SVD of
    invsqrt_xx @ Sxy @ invsqrt_yy over the kept neurons x_idxs, y_idxs (boolean masks)."""
    u: torch.Tensor
    s: torch.Tensor
    vh: torch.Tensor
    invsqrt_xx: torch.Tensor
    invsqrt_yy: torch.Tensor
    x_idxs: torch.Tensor
    y_idxs: torch.Tensor


@dataclass
class Side:
    """What one representation brings to the CCA of every pair it is in: its covariance's
    largest absolute entry (`scale`, the reference rescales by it), the neurons kept (`keep`)
    and the pseudo-inverse square root of their rescaled covariance (`inv_sqrt`). Computed once
    per representation, it serves all of its pairs (svcca.pairwise)."""
    scale: torch.Tensor
    keep: torch.Tensor
    inv_sqrt: torch.Tensor


def cca_side(g: torch.Tensor, n: int, epsilon: float = 0.0) -> Side:
    """One side of the reference's CCA from its centred Gram block g (p, p) over n datapoints:
    the covariance rescaled by its largest entry, neurons with (rescaled) variance below
    epsilon dropped (exactly constant ones too), epsilon added to the diagonal."""
    cov = g / (n - 1)
    scale = cov.abs().max()
    if scale == 0:
        raise ValueError("every neuron of one side is constant: no correlation is defined")
    cov = cov / scale
    # The reference keeps diag >= epsilon; a constant neuron (variance exactly 0) is dropped
    # here even at epsilon 0, which equals removing it (the reference would keep it and pinv
    # would give it a zero coefficient).
    keep = (cov.diagonal() > 0) & (cov.diagonal() >= epsilon)
    cov = cov[keep][:, keep] + epsilon * torch.eye(int(keep.sum()), dtype=cov.dtype,
                                                   device=cov.device)
    return Side(scale, keep, inv_sqrt_psd(cov))


def cca_matrix(gxy: torch.Tensor, n: int, x: Side, y: Side) -> torch.Tensor:
    """Sxx^-1/2 Sxy Syy^-1/2 of the kept neurons, Sxy the cross-covariance rescaled by
    sqrt(scale_x scale_y): its singular values are the canonical correlations."""
    sxy = gxy / (n - 1) / torch.sqrt(x.scale * y.scale)
    return x.inv_sqrt @ sxy[x.keep][:, y.keep] @ y.inv_sqrt


def cca_from_sides(arr: torch.Tensor, x: Side, y: Side, numpy_svd: bool = False) -> CCAResult:
    """The CCA result from cca_matrix's `arr`. numpy_svd computes the SVD with LAPACK via numpy,
    so that singular-vector signs match the public code (the reference PWCCA depends on
    them)."""
    if numpy_svd:
        u, s, vh = (torch.as_tensor(a, device=arr.device)
                    for a in np.linalg.svd(arr.cpu().numpy()))
    else:
        u, s, vh = torch.linalg.svd(arr)
    return CCAResult(u, s.abs().clamp_max(1.0), vh, x.inv_sqrt, y.inv_sqrt, x.keep, y.keep)


def cca_from_moments(m: Moments, epsilon: float = 0.0, numpy_svd: bool = False) -> CCAResult:
    """The reference's CCA (google/svcca's cca_core, as Raghu et al. 2017 and Morcos et al.
    2018 describe it): covariances rescaled by their largest entries, neurons
    with (rescaled) variance below epsilon dropped (exactly constant ones too), epsilon added to
    the diagonals, then the SVD of Sxx^-1/2 Sxy Syy^-1/2 (cca_side, cca_matrix,
    cca_from_sides)."""
    x, y = cca_side(m.gxx, m.n, epsilon), cca_side(m.gyy, m.n, epsilon)
    return cca_from_sides(cca_matrix(m.gxy, m.n, x, y), x, y, numpy_svd)


def truncated_mean_index(coefs: torch.Tensor, threshold: float) -> int:
    """Smallest i with sum(coefs[:i]) >= threshold * sum(coefs) (at least 1, at most all)."""
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    csum = torch.cat([coefs.new_zeros(1), coefs.cumsum(0)])    # csum[i] = sum(coefs[:i])
    hits = torch.nonzero(csum / coefs.sum() >= threshold).flatten()
    i = int(hits[0]) if len(hits) else len(coefs)
    return min(max(i, 1), len(coefs))
