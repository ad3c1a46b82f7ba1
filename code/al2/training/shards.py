"""Splitting a grid over processes (Slurm array tasks, GPUs of one machine, or jobs one after
another).

`--shard K/N` trains a deterministic, disjoint part of the grid's runs into the grid's folder
(its files per shard: folder.GridFolder); the N parts together are the whole grid. Every run's
result depends only on the run (its seed, the grid's shared labels and batch order, its own
dropout stream), so a run trained in a shard ends where it ends in the whole grid (up to
float32 rounding of a different stacking).

How the split is made: runs are grouped by baseline, so that the runs one analysis compares stay
in one process (Fig. 1's Bare instances, without and with AL2); groups go, largest first, to
the shard with the fewest runs so far (ties: the lower index). With more shards than groups the
runs are dealt out one by one instead (run i to shard i mod N).
"""
from __future__ import annotations

from .config import GridError, RunSpec


def shard_runs(runs: list[RunSpec], k: int, n: int) -> list[RunSpec]:
    """The runs of shard k of n (0 <= k < n), in the grid's order."""
    if n < 1 or not 0 <= k < n:
        raise GridError(f"--shard {k}/{n}: need 0 <= K < N and N >= 1")
    if n > len(runs):
        raise GridError(f"--shard {k}/{n}: the grid has only {len(runs)} runs")
    groups: dict[tuple, list[RunSpec]] = {}
    for r in runs:  # one group per (noise level, baseline)
        groups.setdefault((r.level, r.baseline), []).append(r)
    if n > len(groups):
        chosen = {r.name for i, r in enumerate(runs) if i % n == k}
    else:
        load, owner = [0] * n, {}
        for name, group in sorted(groups.items(), key=lambda g: (-len(g[1]), g[0])):
            target = min(range(n), key=lambda s: (load[s], s))
            owner[name], load[target] = target, load[target] + len(group)
        chosen = {r.name for r in runs if owner[(r.level, r.baseline)] == k}
    return [r for r in runs if r.name in chosen]
