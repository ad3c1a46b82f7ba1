"""Benchmark: svcca's Gram-matrix path vs a straightforward numpy reference implementation.

One pair of shape (50, 160000), the authors' setting (10,000 test images x 16 spatial
positions of 50 channels), ReLU-like data with shared structure. Times mean CCA, SVCCA (10 dims)
and PWCCA (both variants) each way and checks the values agree.

    python code/bench/bench_svcca.py
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's al2 and svcca,
sys.path.insert(1, str(Path(__file__).resolve().parents[2]))  # not an installed checkout's

import svcca
from svcca import reference_numpy as ref


def activations(neurons: int, points: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(8, points))
    x = np.maximum(rng.normal(size=(neurons, 8)) @ z + rng.normal(size=(neurons, points)), 0)
    y = np.maximum(rng.normal(size=(neurons, 8)) @ z + rng.normal(size=(neurons, points)), 0)
    return x, y


def timed(fn, repeats: int):
    """(value, fastest of `repeats` wall times)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return value, best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--neurons", type=int, default=50)
    parser.add_argument("--points", type=int, default=160000)
    parser.add_argument("--repeats", type=int, default=3, help="keep the fastest of N timings")
    args = parser.parse_args()
    if args.points < args.neurons or args.neurons < 10 or args.repeats < 1:
        parser.error("need --neurons >= 10, --points >= --neurons and --repeats >= 1")
    x, y = activations(args.neurons, args.points)
    eps = 1e-10  # the AL2 authors' setting

    def reference():
        r = ref.cca(x, y, eps)
        return r["cca_coef1"], r["mean"], ref.svcca(x, y, 10), ref.pwcca(x, y, eps)[0]

    singles = {
        "get_cca_similarity (mean CCA)": lambda: svcca.get_cca_similarity(x, y, eps),
        "compute_svcca (10 dims)": lambda: svcca.compute_svcca(x, y, keep_dims=10, epsilon=eps),
        "compute_pwcca (reference)": lambda: svcca.compute_pwcca(x, y, eps, variant="reference"),
        "compute_pwcca (Morcos)": lambda: svcca.compute_pwcca(x, y, eps),
        "linear_cka": lambda: svcca.linear_cka(x, y),
    }
    stats = ("mean_cca", "svcca", "pwcca", "pwcca_reference")
    for fn in singles.values():
        fn()  # warm-up
    (c_ref, m_ref, s_ref, p_ref), t_ref = timed(reference, args.repeats)
    results = {name: timed(fn, args.repeats) for name, fn in singles.items()}
    r, t_pair = timed(lambda: svcca.pairwise([x, y], statistics=stats, epsilon=eps),
                      args.repeats)
    print(f"pair ({args.neurons}, {args.points}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, fastest of {args.repeats}")
    print(f"numpy reference, mean CCA + SVCCA + reference PWCCA: {t_ref:6.3f} s")
    for name, (_, t) in results.items():
        print(f"  svcca.{name:31s} {t:6.3f} s   {t_ref / t:5.1f}x the reference")
    print(f"  svcca.pairwise, all four at once        {t_pair:6.3f} s   {t_ref / t_pair:5.1f}x")
    cca = results["get_cca_similarity (mean CCA)"][0]
    print(f"max |coef diff| {np.max(np.abs(cca['cca_coef1'] - c_ref)):.1e}; mean CCA "
          f"{cca['mean'][0]:.6f} vs {m_ref:.6f}; SVCCA {r['svcca'][0]:.6f} vs {s_ref:.6f}; "
          f"PWCCA (reference) {r['pwcca_reference'][0]:.8f} vs {p_ref:.8f}; "
          f"PWCCA (Morcos) {r['pwcca'][0]:.6f}")


if __name__ == "__main__":
    main()
