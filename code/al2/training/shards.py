"""Splitting a grid over processes (Slurm array tasks, GPUs of one machine, or jobs one after
another): which runs a shard trains (shard_runs) and the folder's split into parts (Split).

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

from ..files import read_json, save_json
from ..paths import shown
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


def shard_label(shard: tuple[int, int] | None) -> str:
    return "whole" if shard is None else f"shard-{shard[0]}-of-{shard[1]}"


class Split:
    """A grid folder's split into parts: the whole grid, or N shards for one N (split.json), and
    which parts have finished (their completion marks). The files are the folder's
    (folder.GridFolder names them)."""

    def __init__(self, folder):
        self.folder = folder

    def check(self, shard: tuple[int, int] | None, write: bool = False) -> None:
        """A folder holds one split of its grid: the whole grid, or N shards for one N. Reads
        split.json (GridError on another N); write=True records this split if none is."""
        n, path = 1 if shard is None else shard[1], self.folder.split_file
        if path.exists():
            held = self.count()
            if held != n:
                raise GridError(f"{shown(self.folder.root)} holds this grid split into {held} "
                                f"shard(s), not {n}; use --shard K/{held} or another --out")
        elif write:
            save_json({"shards": n}, path)

    def count(self) -> int:
        """N of the folder's split.json; GridError when the file is damaged."""
        path = self.folder.split_file
        n = read_json(path, "split file", "delete it if no shard has trained yet, else restore "
                      "it (it records N of --shard K/N)").get("shards")
        if not isinstance(n, int) or n < 1:
            raise GridError(f"split file {shown(path)} is damaged (no shard count)")
        return n

    def mark_done(self, shard: tuple[int, int] | None, runs: list[RunSpec],
                  epochs: int) -> None:
        """This part of the grid is complete."""
        save_json({"runs": [r.name for r in runs], "epochs": epochs},
                  self.folder.done_file(shard))

    def unfinished(self) -> list[str]:
        """Labels of the parts of the folder's split (split.json: N) without their completion
        mark, or with the mark of fewer epochs than the grid's (a grid extended since)."""
        if not self.folder.split_file.exists():
            return []
        n, epochs = self.count(), self.folder.saved_grid()["epochs"]
        marks = {label: self.folder.done_file(label) for label in
                 (["whole"] if n == 1 else [shard_label((k, n)) for k in range(n)])}
        return [label for label, mark in marks.items() if not mark.exists() or read_json(
            mark, "completion mark", "delete it and resume that part").get("epochs", 0) < epochs]

    def finished(self) -> bool:
        """Every part of the grid's split has finished."""
        return self.folder.split_file.exists() and not self.unfinished()
