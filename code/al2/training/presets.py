"""The presets: named replacements of GridConfig's defaults (the paper's Table 1 setting), and
the paper-setting grids of a given size the benchmarks and the GPU probe time."""
from __future__ import annotations

from .config import GridConfig

# Presets: named replacements of GridConfig's defaults (results/quick/README.md for quick).
# paper: Table 1 (GridConfig's defaults) plus Fig. 1's 4 independently initialised Bare
# instances. quick: a CPU-sized grid that still shows the paper's effect. The paper trains
# 700 x 938 steps at lr 0.001; quick trains 35 x 125 steps at lr 0.05 on the first 8,000 images.
# Its AL2 ramp (QUICK_RAMP) is compressed by SGD progress (lr x steps): the weight grows by 1.86
# per epoch and reaches its threshold at epoch index 14 (the paper's: 66), then by 1.068 per
# epoch for the remaining 21 epochs, ending at 221. The slow phase starts at 50 instead of 5:
# with 5, the bare AL2 run was memorising by epoch 30 in our trials (L_c 1.71, 15 points above
# plain). Fig. 1's comparison needs a seed pair of each type: Bare gets one extra instance
# (seed 1). quick keeps the fastest CPU kernels: --portable (training/portable.py) gives the
# same bits on any x86-64 CPU with AVX2 at about 1.6x the training time (bench_portable.py).
QUICK_RAMP = {"map_fac1": 1.86, "map_threshold": 50.0, "map_fac2": 1.068}
PRESETS = {
    "paper": {"extra_seeds": {"bare": [1, 2, 3]}},
    "quick": {"epochs": 35, "subset": 8000, "test_subset": 2000, "lr": 0.05, **QUICK_RAMP,
              "checkpoint_every": 5, "extra_seeds": {"bare": [1]}},
}
# The studies beyond the paper (results/<name>/README.md), at the quick scale; the same flags on
# top of the paper preset give them at paper scale. Fig. 1's instances are the replicates' Bare
# runs (no extra seeds), 1,000 held-out noisy images select the early-stopping epoch (images
# 8,000..8,999: the quick training set is unchanged).
PRESETS["replicates-quick"] = {**PRESETS["quick"], "extra_seeds": {}, "replicates": 5,
                               "validation": 1000}
# Bare without and with AL2 x 20 replicates, each replicate its own label corruption (and so
# its own noisy validation labels), initialisation and batch order: replicates independent in
# every random draw, for the early-stopping verdict (results/independent-quick/README.md).
PRESETS["independent-quick"] = {**PRESETS["replicates-quick"], "baselines": ["bare"],
                                "replicates": 20, "corruption_per_replicate": True}
# Remedies for label noise beside Bare, each without and with AL2, 5 replicates like
# replicates-quick (results/remedies-quick/README.md).
PRESETS["remedies-quick"] = {**PRESETS["replicates-quick"],
                             "baselines": ["bare", "ls", "gce", "sce", "mixup"]}


def grid_of_size(runs: int, replicates: int = 1) -> GridConfig:
    """A grid of the paper's setting with `runs` runs, for the benchmarks and the GPU probe:
    1 (Bare without AL2), 14 (the default paper grid: Table 1 plus Fig. 1's Bare instances) or a
    multiple of 8 (Table 1 x runs/8 seeds; with replicates, Table 1 x runs/8/replicates seeds x
    replicates: the same number of runs, each replicate reading its own batch order)."""
    paper = GridConfig(**PRESETS["paper"])
    if runs == 1 and replicates == 1:
        return GridConfig(baselines=["bare"], al2="off")
    if runs == len(paper.runs()) and replicates == 1:
        return paper
    if runs < 8 or runs % (8 * replicates):
        raise ValueError(f"a benchmark grid has 1, {len(paper.runs())} (the default paper grid) "
                         f"or a multiple of 8 x replicates runs (Table 1 x seeds x replicates), "
                         f"not {runs} with {replicates} replicate(s)")
    return GridConfig(seeds=list(range(runs // 8 // replicates)), replicates=replicates)
