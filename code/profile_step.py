"""Where a training step's time goes: the kernels of the eager step, by device time.

Profiles --steps eager steps of a grid of --runs runs (the same kernels a CUDA graph replays,
without the launch gaps) with torch.profiler and prints the top --top operators by their own
device time, with their share of the total. On the CPU it profiles CPU time instead.

    python code/profile_step.py --device cuda --runs 14 --conv2 grouped
"""
from __future__ import annotations

import argparse
import sys

from torch.profiler import ProfilerActivity, profile

from al2.config import GridError
from al2.device import select_device, set_tf32
from al2.model import StackedLeNet

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from bench_train import grid_epochs, grid_of, sync  # noqa: E402  (code/bench_train.py)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    parser.add_argument("--runs", type=int, default=14, help="grid size: 1, 14 or 8k")
    parser.add_argument("--steps", type=int, default=50, help="profiled steps (default: 50)")
    parser.add_argument("--conv2", choices=StackedLeNet.CONV2, default="grouped")
    parser.add_argument("--conv1", choices=StackedLeNet.CONV1, default="cudnn")
    parser.add_argument("--tf32", action="store_true", help="TF32 instead of strict fp32")
    parser.add_argument("--top", type=int, default=15, help="operators listed (default: 15)")
    args = parser.parse_args()
    if args.steps < 1 or args.top < 1:
        parser.error("--steps and --top must be >= 1")
    try:
        device = select_device(args.device)
        grid = grid_of(args.runs)
    except (GridError, ValueError) as e:
        parser.error(str(e))
    set_tf32(args.tf32)
    epoch_fn, model, _ = grid_epochs(grid, 64 * args.steps, device, test_images=100,
                                     conv2=args.conv2, conv1=args.conv1)

    def epoch(i):
        epoch_fn(i)
        sync(device)

    epoch(0)  # warm-up: algorithm choice, allocator
    cuda = device.type == "cuda"
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) \
            as prof:
        epoch(1)
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, key, 0) > 0]
    total = sum(getattr(e, key) for e in events)
    events.sort(key=lambda e: getattr(e, key), reverse=True)
    print(f"{model.runs} runs, {args.steps} eager steps, conv2 {args.conv2}, conv1 "
          f"{args.conv1}, "
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
