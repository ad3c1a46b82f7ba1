"""Splitting a grid over processes (Slurm array tasks, GPUs of one machine, or jobs one after
another).

`--shard K/N` trains a deterministic, disjoint part of the grid's runs into the grid's folder;
the N parts together are the whole grid. Every run's result depends only on the run (its seed,
the grid's shared labels and batch order, its own dropout stream), so a run trained in a shard
ends where it ends in the whole grid (up to float32 rounding of a different stacking).

How the split is made: runs are grouped by baseline, so that the runs one analysis compares stay
in one process (Fig. 1's Bare instances, without and with AL2); groups go, largest first, to
the shard with the fewest runs so far (ties: the lower index). With more shards than groups the
runs are dealt out one by one instead (run i to shard i mod N).
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .config import GridError, RunSpec
from .files import read_json, save_json
from .paths import shown


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


def resume_file(out: Path, shard: tuple[int, int] | None, level: float | None = None) -> Path:
    """The grid's resume.pt, or one per shard (shards never write each other's files) and per
    noise level of a sweep (each level trains as its own stack)."""
    name = "resume" if shard is None else f"resume-{shard_label(shard)}"
    return out / (name + ("" if level is None else f"-n{level:g}") + ".pt")


class FolderLock:
    """An exclusive lock file in a grid folder, held until release() or the process's end
    (the kernel drops it however the process ends). wait=False refuses a held lock with a
    one-line GridError: a second process on the same shard is refused, not raced."""

    def __init__(self, out: Path, name: str, wait: bool, busy: str = ""):
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / f".lock-{name}"
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(self.fd)
            raise GridError(f"{busy} in {shown(out)} is being trained by another process (lock "
                            f"{self.path.name}); wait for it or choose another --out") from None

    def release(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def lock_shard(out: Path, shard: tuple[int, int] | None) -> FolderLock:
    what = "the whole grid" if shard is None else f"shard {shard[0]}/{shard[1]}"
    return FolderLock(out, shard_label(shard), wait=False, busy=what)


def check_split(out: Path, shard: tuple[int, int] | None, write: bool = False) -> None:
    """A folder holds one split of its grid: the whole grid, or N shards for one N. Reads
    split.json (GridError on another N); write=True records this split if none is."""
    split_file = out / "split.json"
    n = 1 if shard is None else shard[1]
    if split_file.exists():
        held = split_count(out)
        if held != n:
            raise GridError(f"{shown(out)} holds this grid split into {held} shard(s), not {n}; "
                            f"use --shard K/{held} or another --out")
    elif write:
        save_json({"shards": n}, split_file)


def split_count(out: Path) -> int:
    """N of the folder's split.json; GridError when the file is damaged."""
    path = out / "split.json"
    n = read_json(path, "split file", "delete it if no shard has trained yet, else restore it "
                                      "(it records N of --shard K/N)").get("shards")
    if not isinstance(n, int) or n < 1:
        raise GridError(f"split file {shown(path)} is damaged (no shard count)")
    return n


def mark_done(out: Path, shard: tuple[int, int] | None, runs: list[RunSpec], epochs: int) -> None:
    """shards/<label>.json: this part of the grid is complete."""
    save_json({"runs": [r.name for r in runs], "epochs": epochs},
              out / "shards" / f"{shard_label(shard)}.json")


def unfinished_shards(out: Path) -> list[str]:
    """Shards of the folder's split without their completion file (split.json: N)."""
    if not (out / "split.json").exists():
        return []
    n = split_count(out)
    labels = ["whole"] if n == 1 else [shard_label((k, n)) for k in range(n)]
    return [label for label in labels if not (out / "shards" / f"{label}.json").exists()]
