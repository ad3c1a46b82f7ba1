"""Benchmark: how long train.py takes to honour a stop signal, from the signal to its exit.

What a cluster allows: Slurm sends SIGTERM at a job's time limit and on preemption, then SIGKILL
after KillWait (30 s by default). In that time train.py finishes the step under way, writes the
grid's exact state (resume.pt: every run's weights, momentum, BN statistics, the position inside
the epoch, the history) and exits. This starts train.py as a user does (the paper preset by
default: its 14 runs, the state a paper-scale stop writes), waits until the first epoch is
trained, sends SIGTERM at a random moment of the second, and times the signal to the exit.

    python code/bench/bench_stop.py                       # the paper grid's 14 runs, 3 stops
"""
from __future__ import annotations

import argparse
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's al2 and svcca,
sys.path.insert(1, str(Path(__file__).resolve().parents[2]))  # not an installed checkout's

from al2.training.config import GridConfig
from al2.training.presets import PRESETS
from al2.training.folder import GridFolder
from al2.training.stopping import STOPPED_EXIT
from al2.paths import REPO_ROOT

TRAIN = REPO_ROOT / "code" / "train.py"


def one_stop(preset: str, subset: int, seed: int, folder: Path) -> dict:
    """Train 2 epochs of `preset` on `subset` images; SIGTERM at a random moment of epoch 2."""
    out = folder / f"stop-{seed}"
    command = [sys.executable, str(TRAIN), "--preset", preset,
               "--epochs", "2", "--subset", str(subset), "--test-subset", "1000",
               "--no-progress", "--device", "cpu", "--out", str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = GridFolder(out).metrics_file("bare_plain_s0")
    while proc.poll() is None and (not metrics.exists() or
                                   len(metrics.read_text().splitlines()) < 3):
        time.sleep(0.01)
    epoch_s = float(metrics.read_text().splitlines()[2].split(",")[8]) if metrics.exists() else 0
    time.sleep(random.Random(seed).uniform(0.1, 0.6) * epoch_s)
    sent = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate()
    exit_s = time.perf_counter() - sent
    if proc.returncode != STOPPED_EXIT:
        raise SystemExit(f"bench_stop.py: train.py ended with {proc.returncode}, not "
                         f"{STOPPED_EXIT}: {err.strip()[-300:]}")
    state = GridFolder(out).resume_file(None)
    return {"exit_s": exit_s, "state_mb": state.stat().st_size / 2 ** 20,
            "line": err.strip().splitlines()[-1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="paper")
    parser.add_argument("--subset", type=int, default=6400,
                        help="training images (a stop's cost does not depend on them)")
    parser.add_argument("--repeats", type=int, default=3, help="stops timed")
    args = parser.parse_args()
    if args.repeats < 1 or args.subset < 64:
        parser.error("need --repeats >= 1 and --subset >= 64")
    runs = len(GridConfig(**PRESETS[args.preset]).runs())
    with tempfile.TemporaryDirectory(prefix="al2-bench-stop-") as tmp:
        stops = [one_stop(args.preset, args.subset, seed, Path(tmp))
                 for seed in range(args.repeats)]
    times = [s["exit_s"] for s in stops]
    print(f"{args.preset} preset, {runs} runs, CPU: SIGTERM to exit in "
          f"{statistics.median(times):.2f} s median, {max(times):.2f} s at most "
          f"({args.repeats} stops); resume.pt {stops[0]['state_mb']:.1f} MiB")
    for s in stops:
        print(f"  {s['exit_s']:.2f} s: {s['line']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
