"""Benchmark: the portable CPU mode's cost (al2/training/portable.py), default vs portable.

Trains a short quick grid and evaluates it, once with the fastest kernels (--no-portable) and
once with the portable mode's (--portable), alternating for --rounds rounds so that a machine's
drift from minute to minute falls on both; prints each wall time and the ratio per round. Each
grid goes into its own temporary folder; nothing is kept.

    python code/bench/bench_portable.py                   # quick, 5 epochs, 2 rounds
    python code/bench/bench_portable.py --epochs 35       # the whole quick grid
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's al2 and svcca,
sys.path.insert(1, str(Path(__file__).resolve().parents[2]))  # not an installed checkout's

from al2.paths import REPO_ROOT

MODES = ("--no-portable", "--portable")


def timed(command: list[str]) -> float:
    """Run a script of code/ to its end; its wall time (s), or exit with its error."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *command], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench_portable.py: {command[0]} ended with {done.returncode}: "
                         f"{done.stderr.strip()[-300:]}")
    return time.perf_counter() - started


def one_mode(mode: str, epochs: int, folder: Path) -> tuple[float, float]:
    """(train s, evaluate s) of the quick grid at `epochs` in `mode`."""
    runs = folder / "runs"
    train = timed([str(REPO_ROOT / "code" / "train.py"), "--preset", "quick", mode, "--epochs",
                   str(epochs), "--out", str(runs), "--no-progress", "--device", "cpu"])
    evaluate = timed([str(REPO_ROOT / "code" / "evaluate.py"), "--runs", str(runs), "--out",
                      str(folder / "eval"), "--device", "cpu"])
    return train, evaluate


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.rounds < 1:
        parser.error("need --epochs >= 1 and --rounds >= 1")
    print(f"quick preset, {args.epochs} epochs; wall times in s, process starts included")
    with tempfile.TemporaryDirectory(prefix="al2-bench-portable-") as tmp:
        for k in range(args.rounds):
            times = {m: one_mode(m, args.epochs, Path(tmp) / f"{k}{m}") for m in MODES}
            (fast_t, fast_e), (port_t, port_e) = times[MODES[0]], times[MODES[1]]
            both = (port_t + port_e) / (fast_t + fast_e)
            print(f"  round {k + 1}: train {fast_t:.1f} default, {port_t:.1f} portable "
                  f"({port_t / fast_t:.2f}x); evaluate {fast_e:.1f} default, {port_e:.1f} "
                  f"portable ({port_e / fast_e:.2f}x); both {both:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
