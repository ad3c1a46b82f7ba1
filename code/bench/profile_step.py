"""Where a training step's time goes: the kernels of the eager step, by device time.

Profiles --steps eager steps of a grid of --runs runs (the same kernels a CUDA graph replays,
without the launch gaps) with torch.profiler and prints the top --top operators by their own
device time, with their share of the total. On the CPU it profiles CPU time instead.

    python code/bench/profile_step.py --device cuda --runs 14 --trunk streams
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's al2 and svcca,
sys.path.insert(1, str(Path(__file__).resolve().parents[2]))  # not an installed checkout's

from al2.training.config import GridConfig
from al2.training.presets import grid_of_size
from al2.training.data import load_grid_data
from al2.training.device import (select_device, set_cudnn_benchmark, set_tf32,
                                 synchronize)
from al2.errors import UserError
from al2.speed.variants import TRUNKS, install_trunk
from al2.training.stack import Trainer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    parser.add_argument("--runs", type=int, default=14, help="grid size: 1, 14 or 8k")
    parser.add_argument("--steps", type=int, default=50, help="profiled steps (default: 50)")
    parser.add_argument("--trunk", choices=TRUNKS, default="grouped")
    parser.add_argument("--cudnn-benchmark", action="store_true")
    parser.add_argument("--tf32", action="store_true", help="TF32 instead of strict fp32")
    parser.add_argument("--top", type=int, default=15, help="operators listed (default: 15)")
    args = parser.parse_args()
    if args.steps < 1 or args.top < 1:
        parser.error("--steps and --top must be >= 1")
    try:
        device = select_device(args.device)
        grid = grid_of_size(args.runs)
    except (UserError, ValueError) as e:
        parser.error(str(e))
    set_tf32(args.tf32)
    set_cudnn_benchmark(args.cudnn_benchmark)
    data = load_grid_data(GridConfig(**{**asdict(grid), "subset": 64 * args.steps,
                                        "test_subset": 100}), device)
    trainer = Trainer(grid, grid.runs(), data)
    install_trunk(trainer, args.trunk)
    w = torch.full((len(grid.runs()),), 0.01, device=device)
    trainer.train_epoch(0, w)  # warm-up: algorithm choice, allocator
    synchronize(device)
    cuda = device.type == "cuda"
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) \
            as prof:
        trainer.train_epoch(1, w)
        synchronize(device)
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, key, 0) > 0]
    total = sum(getattr(e, key) for e in events)
    events.sort(key=lambda e: getattr(e, key), reverse=True)
    print(f"{trainer.model.runs} runs, {args.steps} eager steps, trunk {args.trunk}, "
          f"{'TF32' if args.tf32 else 'strict fp32'}, {device}: {total / 1e3 / args.steps:.3f} "
          f"ms of {'device' if cuda else 'CPU'} time per step in {len(events)} operators")
    print("| operator | calls per step | ms per step | share |\n|---|---|---|---|")
    for e in events[:args.top]:
        t = getattr(e, key)
        print(f"| {e.key[:70]} | {e.count / args.steps:.1f} | {t / 1e3 / args.steps:.4f} | "
              f"{100 * t / total:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
