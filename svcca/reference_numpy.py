"""A straightforward numpy implementation of the public reference algorithm (google/svcca's
cca_core and pwcca, as Raghu et al. 2017 and Morcos et al. 2018 describe it), step by step
(np.cov, pinv, eigh, svd, QR). It is the baseline of code/bench/bench_svcca.py
and an independent check in the tests; the package's own functions are the fast path.
Written here from the description, not copied; the Y-branch slip of the public PWCCA is fixed."""
from __future__ import annotations

import numpy as np


def _sqrtm_psd(a):
    w, v = np.linalg.eigh(a)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def cca(acts1, acts2, epsilon=0.0, threshold=0.98):
    x, y = np.asarray(acts1, np.float64), np.asarray(acts2, np.float64)
    p = x.shape[0]
    cov = np.cov(np.vstack([x, y]))
    sxx, sxy, syy = cov[:p, :p], cov[:p, p:], cov[p:, p:]
    xmax, ymax = np.max(np.abs(sxx)), np.max(np.abs(syy))
    sxx, syy, sxy = sxx / xmax, syy / ymax, sxy / np.sqrt(xmax * ymax)
    xi = (np.diag(sxx) > 0) & (np.diag(sxx) >= epsilon)  # constant neurons dropped (see core.py)
    yi = (np.diag(syy) > 0) & (np.diag(syy) >= epsilon)
    sxx = sxx[np.ix_(xi, xi)] + epsilon * np.eye(xi.sum())
    syy = syy[np.ix_(yi, yi)] + epsilon * np.eye(yi.sum())
    sxy = sxy[np.ix_(xi, yi)]
    ix, iy = _sqrtm_psd(np.linalg.pinv(sxx)), _sqrtm_psd(np.linalg.pinv(syy))
    u, s, vh = np.linalg.svd(ix @ sxy @ iy)
    s = np.abs(s)
    i = next((i for i in range(len(s)) if np.sum(s[:i]) / np.sum(s) >= threshold), len(s))
    return {"cca_coef1": s, "mean": float(np.mean(s[:max(i, 1)])), "coef_x": u.T, "coef_y": vh,
            "x_idxs": xi, "y_idxs": yi, "x": x, "y": y}


def svcca(acts1, acts2, keep_dims=10):
    def reduce(a):
        a = a - a.mean(1, keepdims=True)
        _, s, vt = np.linalg.svd(a, full_matrices=False)
        return s[:keep_dims, None] * vt[:keep_dims]
    return float(np.mean(cca(reduce(np.asarray(acts1, np.float64)),
                             reduce(np.asarray(acts2, np.float64)))["cca_coef1"]))


def pwcca(acts1, acts2, epsilon=0.0):
    r = cca(acts1, acts2, epsilon)
    if r["x_idxs"].sum() <= r["y_idxs"].sum():
        acts, idx, coef = r["x"], r["x_idxs"], r["coef_x"]
    else:
        acts, idx, coef = r["y"], r["y_idxs"], r["coef_y"]
    kept = acts[idx]
    means = kept.mean(1, keepdims=True)
    dirns = coef @ (kept - means) + means
    q, _ = np.linalg.qr(dirns.T)
    weights = np.sum(np.abs(q.T @ kept.T), axis=1)
    weights = weights / weights.sum()
    return float(np.sum(weights * r["cca_coef1"])), weights, r["cca_coef1"]
