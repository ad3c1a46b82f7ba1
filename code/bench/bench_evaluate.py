"""How long evaluate.py takes on a folder of trained runs, analysis by analysis, and whether its
outputs equal a reference evaluation's byte for byte (e.g. the committed results folder made
from the same runs on the same machine, or one written before a change).

    python code/bench/bench_evaluate.py --runs results/runs/replicates-quick \
        --reference results/replicates-quick
    python code/bench/bench_evaluate.py --runs results/runs/remedies-quick --profile 25

Evaluates into a temporary folder (the reference is only read), with evaluate.py's defaults for
a grid of that length, on the CPU; prints the seconds per analysis and the total, then each
written file that differs from the reference's. Exit 1 when a file differs.
"""
from __future__ import annotations

import argparse
import cProfile
import platform
import pstats
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's al2 and svcca,
sys.path.insert(1, str(Path(__file__).resolve().parents[2]))  # not an installed checkout's

from al2.analyses.evaluation import evaluate_runs
from al2.paths import resolve, shown
from al2.analyses.runs import discover_runs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--runs", type=Path, required=True, help="folder of trained runs")
    p.add_argument("--reference", type=Path, default=None,
                   help="an evaluation of the same runs to compare with, byte for byte")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also print the N functions with the most cumulative time")
    args = p.parse_args(argv)
    runs = discover_runs(resolve(args.runs))
    if min(r.epochs for r in runs) >= 100:
        p.error("a grid of 100+ epochs recomputes similarity on 10,000 images: time it with "
                "evaluate.py itself")
    profiler = cProfile.Profile() if args.profile else None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if profiler:
            profiler.enable()
        result = evaluate_runs(runs, resolve(args.runs), out)
        if profiler:
            profiler.disable()
        print(f"{len(runs)} runs of {shown(resolve(args.runs))}; {platform.machine()}, "
              f"{torch.get_num_threads()} threads, torch {torch.__version__}")
        for name, seconds in result.timings.items():
            print(f"  {name:18s} {seconds:7.1f} s")
        print(f"  {'total':18s} {result.seconds:7.1f} s")
        differ = []
        if args.reference:
            reference = resolve(args.reference)
            for name in result.written:
                theirs = reference / name
                if not theirs.exists() or theirs.read_bytes() != (out / name).read_bytes():
                    differ.append(name)
            same = len(result.written) - len(differ)
            print(f"{same} of {len(result.written)} written files equal "
                  f"{shown(reference)}'s byte for byte" + (f"; differ: {', '.join(differ)}"
                                                          if differ else ""))
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.profile)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
