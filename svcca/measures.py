"""CCA, SVCCA, PWCCA (Raghu et al. 2017; Morcos et al. 2018) and linear CKA (Kornblith et al.
2019). Inputs are (neurons, datapoints) numpy arrays or torch tensors; results are float64."""
from __future__ import annotations

import numpy as np
import torch

from .core import CCAResult, Moments, as_pair, cca_from_moments, moments, truncated_mean_index


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _summary(res: CCAResult, threshold: float, means=None) -> dict:
    s = res.s
    i = truncated_mean_index(s, threshold)
    out = {
        "cca_coef1": _np(s), "cca_coef2": _np(s),
        "mean": (float(s[:i].mean()), float(s[:i].mean())),   # the reference's truncated mean
        "mean_all": float(s.mean()),                         # plain mean of all coefficients
        "sum": (float(s.sum()), float(s.sum())),
        "x_idxs": _np(res.x_idxs), "y_idxs": _np(res.y_idxs),
        "coef_x": _np(res.u.T), "coef_y": _np(res.vh),
        "invsqrt_xx": _np(res.invsqrt_xx), "invsqrt_yy": _np(res.invsqrt_yy),
    }
    if means is not None:
        out["neuron_means1"], out["neuron_means2"] = _np(means[0]), _np(means[1])
    return out


def get_cca_similarity(acts1, acts2, epsilon: float = 0.0, threshold: float = 0.98) -> dict:
    """CCA between two representations (neurons, datapoints), as the reference computes it.

    Returns a dict: "cca_coef1" (canonical correlations, descending, one per kept dimension;
    "cca_coef2" the same), "mean" (a pair: the mean of the first i coefficients, i the smallest
    index where their cumulative sum reaches `threshold` of the total), "mean_all" (the plain
    mean of all coefficients), "sum", "x_idxs"/"y_idxs" (kept neurons), "coef_x"/"coef_y"
    (singular vectors), "invsqrt_xx"/"invsqrt_yy", "neuron_means1"/"neuron_means2".
    """
    x, y = as_pair(acts1, acts2)
    m = moments(x, y)
    return _summary(cca_from_moments(m, epsilon), threshold, (m.mean_x, m.mean_y))


def svd_top(g: torch.Tensor, keep_dims, variance) -> tuple[torch.Tensor, int]:
    """The top singular directions of one centred side from its Gram block g = Xc Xc^T:
    (U_k (p, k), k), keep_dims of them or the fewest explaining `variance` of the squared
    singular values (inclusive)."""
    w, u = torch.linalg.eigh(g)                         # ascending; w = squared singular values
    w, u = w.flip(0).clamp_min(0), u.flip(1)
    if keep_dims is not None:
        k = min(int(keep_dims), len(w))
    else:
        frac = w.cumsum(0) / w.sum()
        k = int(torch.nonzero(frac >= variance - 1e-12).flatten()[0]) + 1
    return u[:, :k], k


def _svd_reduce(m: Moments, keep_dims, variance):
    """Top singular directions of each centred side, from the Gram blocks: for Xc = U S V^T the
    reduced activations U_k^T Xc have covariance diag(S_k^2) and cross-covariance
    U_k^T Gxy W_k. Returns the reduced Moments and the kept dimensions (kx, ky)."""
    ux, kx = svd_top(m.gxx, keep_dims, variance)
    uy, ky = svd_top(m.gyy, keep_dims, variance)
    reduced = Moments(m.mean_x.new_zeros(kx), m.mean_y.new_zeros(ky), ux.T @ m.gxx @ ux,
                      ux.T @ m.gxy @ uy, uy.T @ m.gyy @ uy, m.n)
    return reduced, (kx, ky)


def compute_svcca(acts1, acts2, keep_dims=None, variance: float = 0.99, epsilon: float = 0.0,
                  threshold: float = 0.98) -> dict:
    """SVCCA: centred SVD of each side, keep `keep_dims` directions (or the fewest explaining
    `variance` of the squared singular values), then CCA. The authors' evaluation used
    keep_dims=10. Returns get_cca_similarity's dict plus "svcca" (the mean of the coefficients)
    and "kept_dims" (kx, ky)."""
    if keep_dims is not None and keep_dims < 1:
        raise ValueError(f"keep_dims must be >= 1, got {keep_dims}")
    if not 0 < variance <= 1:
        raise ValueError(f"variance must lie in (0, 1], got {variance}")
    x, y = as_pair(acts1, acts2)
    return _svcca_from_moments(moments(x, y), keep_dims, variance, epsilon, threshold)


def _svcca_from_moments(m, keep_dims, variance, epsilon, threshold):
    reduced, kept = _svd_reduce(m, keep_dims, variance)
    out = _summary(cca_from_moments(reduced, epsilon), threshold)
    out["svcca"] = out["mean_all"]
    out["kept_dims"] = kept
    return out


PWCCA_VARIANTS = ("morcos", "reference")


def compute_pwcca(acts1, acts2, epsilon: float = 0.0, variant: str = "morcos"):
    """Projection-weighted CCA -> (pwcca, weights, coefs).

    variant="morcos" (default), the formula as published by Morcos et al. 2018: on the side with
    fewer kept neurons (acts1 on a tie), the canonical variates h_i, each normalised to unit
    length, weigh alpha_i = sum_j |<h_i, x_j>| over that side's centred neuron activation
    vectors x_j; alpha is normalised to sum 1 and PWCCA = sum_i alpha_i rho_i. Invariant to
    scaling, translation and signed permutations of neurons.

    variant="reference", the public code's numbers: its "directions" are the left singular
    vectors applied to the centred activations with the neuron means added back, orthonormalised
    by QR, and weighed against the uncentred activations. Adding the means back makes the result
    depend on the signs LAPACK gives the singular vectors (we compute that SVD with numpy to
    match). The public code's slip when acts2 is the smaller side (it reads acts1 there) is
    fixed: each side uses its own activations and means.
    """
    if variant not in PWCCA_VARIANTS:
        raise ValueError(f"variant must be one of {PWCCA_VARIANTS}, got {variant!r}")
    x, y = as_pair(acts1, acts2)
    return _pwcca_from_moments(moments(x, y), epsilon, variant)


def _pwcca_from_moments(m: Moments, epsilon: float, variant: str):
    return pwcca_from_cca(cca_from_moments(m, epsilon, numpy_svd=(variant == "reference")), m,
                          variant)


def pwcca_from_cca(res: CCAResult, m: Moments, variant: str):
    """PWCCA from a pair's CCA result (computed with numpy_svd for the reference variant) and
    its moments -> (pwcca, weights, coefs)."""
    if int(res.x_idxs.sum()) <= int(res.y_idxs.sum()):
        idx, g, mean, dirs, invsqrt = res.x_idxs, m.gxx, m.mean_x, res.u.T, res.invsqrt_xx
    else:  # the other side, with its own activations and means
        idx, g, mean, dirs, invsqrt = res.y_idxs, m.gyy, m.mean_y, res.vh, res.invsqrt_yy
    gk, mk = g[idx][:, idx], mean[idx]              # centred Gram and means of the kept neurons
    # dirs: (k, k) with k = len(res.s), since this side has the fewer kept neurons
    if variant == "morcos":
        a = dirs @ invsqrt                          # canonical weights: h_i = a_i Xc
        proj = a @ gk                               # <h_i, x_j> = (a Xc Xc^T)_ij
        norms = torch.sqrt(torch.einsum("ij,jk,ik->i", a, gk, a))  # ||h_i||
        weights = proj.abs().sum(1) / norms
    else:
        # D = dirs Xc + m 1^T (k, n), X the uncentred kept activations. From the Gram:
        # D D^T = dirs Gc dirs^T + n m m^T and D X^T = dirs Gc + n m m^T (Xc 1 = 0).
        # QR of D^T = Q R, with R^T R = D D^T, gives Q^T X^T = R^-T D X^T.
        nmm = m.n * torch.outer(mk, mk)
        r = torch.linalg.cholesky(dirs @ gk @ dirs.T + nmm, upper=True)
        qtx = torch.linalg.solve_triangular(r.T, dirs @ gk + nmm, upper=False)
        weights = qtx.abs().sum(1)
    weights = weights / weights.sum()
    return float((weights * res.s).sum()), _np(weights), _np(res.s)


def linear_cka(acts1, acts2, debiased: bool = False) -> float:
    """Linear CKA (Kornblith et al. 2019) in feature space:
    ||Yc Xc^T||_F^2 / (||Xc Xc^T||_F ||Yc Yc^T||_F). debiased=True uses the unbiased HSIC
    estimator (Song et al. 2012), whose value for independent representations is near 0."""
    x, y = as_pair(acts1, acts2)
    m = moments(x, y)
    diag = None
    if debiased:  # squared norms of the centred datapoints: the linear kernels' diagonals
        diag = (((x - m.mean_x[:, None]) ** 2).sum(0), ((y - m.mean_y[:, None]) ** 2).sum(0))
    return _cka_from_moments(m, diag)


def _cka_from_moments(m: Moments, diag=None) -> float:
    xy, xx, yy = (m.gxy ** 2).sum(), (m.gxx ** 2).sum(), (m.gyy ** 2).sum()
    if diag is not None:
        # Unbiased HSIC for linear kernels K = Xc^T Xc, L = Yc^T Yc of centred features, with
        # zeroed diagonals (dk, dl the kernels' diagonals):
        # HSIC ~ tr(KL) - n/(n-2) dk.dl + sum(dk) sum(dl) / ((n-1)(n-2)).
        n = m.n
        dk, dl = diag

        def hsic(t, a, b):
            return t - n / (n - 2) * (a @ b) + a.sum() * b.sum() / ((n - 1) * (n - 2))
        xy, xx, yy = hsic(xy, dk, dl), hsic(xx, dk, dk), hsic(yy, dl, dl)
    return float(xy / torch.sqrt(xx * yy))
