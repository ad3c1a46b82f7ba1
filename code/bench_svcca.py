"""Benchmark: svcca's Gram-matrix path vs a straightforward numpy reference implementation.

One pair of shape (50, 160000), the authors' setting (10,000 test images x 16 spatial
positions of 50 channels), ReLU-like data with shared structure. Times mean CCA, SVCCA (10 dims)
and PWCCA (both variants) each way and checks the values agree.

    python code/bench_svcca.py
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import svcca
from svcca import reference_numpy as ref


def activations(neurons: int, points: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(8, points))
    x = np.maximum(rng.normal(size=(neurons, 8)) @ z + rng.normal(size=(neurons, points)), 0)
    y = np.maximum(rng.normal(size=(neurons, 8)) @ z + rng.normal(size=(neurons, points)), 0)
    return x, y


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--neurons", type=int, default=50)
    parser.add_argument("--points", type=int, default=160000)
    args = parser.parse_args()
    if args.points < args.neurons or args.neurons < 10:
        parser.error("need --neurons >= 10 and --points >= --neurons")
    x, y = activations(args.neurons, args.points)

    def reference():
        r = ref.cca(x, y)
        return r["cca_coef1"], r["mean"], ref.svcca(x, y, 10), ref.pwcca(x, y)[0]

    def ours():
        r = svcca.pairwise([x, y], statistics=("mean_cca", "svcca", "pwcca", "pwcca_reference"))
        return (svcca.get_cca_similarity(x, y)["cca_coef1"], r["mean_cca"][0], r["svcca"][0],
                r["pwcca_reference"][0], r["pwcca"][0])

    ours()  # warm-up
    (c_ref, m_ref, s_ref, p_ref), t_ref = timed(reference)
    (c, m, s, p_ref_ours, p_morcos), t_ours = timed(ours)
    _, t_one = timed(lambda: svcca.pairwise([x, y], statistics=("mean_cca", "svcca", "pwcca",
                                                                "pwcca_reference")))
    print(f"pair ({args.neurons}, {args.points}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"numpy reference (mean CCA + SVCCA + reference PWCCA): {t_ref:6.2f} s")
    print(f"svcca, one Gram matrix (the same + Morcos PWCCA):     {t_one:6.2f} s")
    print(f"speed-up: {t_ref / t_one:.1f}x")
    print(f"max |coef diff| {np.max(np.abs(c - c_ref)):.1e}; mean CCA {m:.6f} vs {m_ref:.6f}; "
          f"SVCCA {s:.6f} vs {s_ref:.6f}; PWCCA (reference) {p_ref_ours:.8f} vs {p_ref:.8f}; "
          f"PWCCA (Morcos) {p_morcos:.6f}")


if __name__ == "__main__":
    main()
