"""Benchmark: the shards of one grid on one machine, one after another and side by side.

Each process takes every core by default (torch's own thread count); two such processes on the
same cores fight over them. `--threads N` gives each its share. This trains the shards of a
short grid three ways and prints each process's wall time: one after another with every core,
side by side with every core each, side by side with cores / shards threads each. Each way
trains into its own temporary folder; nothing is kept.

    python code/bench/bench_threads.py                    # the quick preset, 3 epochs, 2 shards
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's al2 and svcca,
sys.path.insert(1, str(Path(__file__).resolve().parents[2]))  # not an installed checkout's

from al2.paths import REPO_ROOT
from al2.training.presets import PRESETS

TRAIN = REPO_ROOT / "code" / "train.py"


def start(preset: str, epochs: int, shard: str, out: Path, threads: int | None):
    """train.py for one shard, started now: (process, start time)."""
    command = [sys.executable, str(TRAIN), "--preset", preset, "--epochs", str(epochs),
               "--shard", shard, "--out", str(out), "--no-progress", "--device", "cpu",
               "--no-portable"]  # the portable mode holds 2 threads whatever --threads asks
    if threads is not None:
        command += ["--threads", str(threads)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True), time.perf_counter()


def finish(proc, started: float) -> float:
    """Wait for a shard; its wall time (s), or exit with its error."""
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"bench_threads.py: train.py ended with {proc.returncode}: "
                         f"{err.strip()[-300:]}")
    return time.perf_counter() - started


def way(side_by_side: bool, threads: int | None, args, folder: Path) -> list[float]:
    """Wall times (s) of the shards trained one after another or side by side."""
    shards = [f"{k}/{args.shards}" for k in range(args.shards)]
    if not side_by_side:
        return [finish(*start(args.preset, args.epochs, s, folder, threads)) for s in shards]
    procs = [start(args.preset, args.epochs, s, folder, threads) for s in shards]
    return [finish(*p) for p in procs]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--shards", type=int, default=2)
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.shards < 2:
        parser.error("need --epochs >= 1 and --shards >= 2")
    cores = os.cpu_count() or 1
    share = max(1, cores // args.shards)
    ways = [("one after another, every core", False, None),
            ("side by side, every core each", True, None),
            (f"side by side, --threads {share} each", True, share)]
    print(f"{args.preset} preset, {args.epochs} epochs, {args.shards} shards, {cores} cores")
    with tempfile.TemporaryDirectory(prefix="al2-bench-threads-") as tmp:
        for k, (name, side_by_side, threads) in enumerate(ways):
            times = way(side_by_side, threads, args, Path(tmp) / str(k))
            total = sum(times) if not side_by_side else max(times)
            print(f"  {name:<34} shards {', '.join(f'{t:.1f}' for t in times)} s; "
                  f"all done in {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
