"""Device check: the trainer on a GPU agrees with the trainer on the CPU.

Trains the same grid (dropout off: its masks come from device-specific generators) for a few
hundred steps on both devices from the same initialisation and batches, then compares every
weight and the per-run training losses. Strict fp32 on the GPU (TF32 off) so that the tolerance
measures the path, not the number format.

    python code/check_device.py --device cuda --steps 300     # on a machine with a GPU
"""
from __future__ import annotations

import argparse
import sys

import torch

from al2.config import GridConfig, GridError
from al2.data import load_grid_data
from al2.device import select_device, set_tf32
from al2.engine import DROPOUT_STREAM, epoch_generator, stacked_runs, train_epoch


def train(grid: GridConfig, device: torch.device, steps: int):
    """(stacked state_dict on the CPU, per-run mean L_c) after `steps` steps of epoch 0."""
    runs = grid.runs()
    data = load_grid_data(grid, device)
    model, params, buffers, wd = stacked_runs(runs, device)
    w = torch.tensor([1.0 if r.use_al2 else 0.0 for r in runs], device=device)
    # the batch order is drawn on the CPU and moved, so both devices see the same batches
    perm = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(0))
    sums, batches = train_epoch(model, params, buffers, data, grid.batch_size, grid.lr,
                                grid.momentum, w, wd, None,
                                epoch_generator(0, 0, DROPOUT_STREAM, device),
                                max_steps=steps, perm=perm.to(device))
    return ({k: v.detach().cpu() for k, v in model.state_dict().items()},
            (sums[0] / batches).cpu())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    parser.add_argument("--steps", type=int, default=300, help="SGD steps (default: 300)")
    parser.add_argument("--atol", type=float, default=1e-3,
                        help="largest weight difference accepted (default: 1e-3)")
    args = parser.parse_args()
    try:
        device = select_device(args.device)
    except GridError as e:
        parser.error(str(e))
    set_tf32(False)
    grid = GridConfig(baselines=["bare", "bn", "wd"], subset=64 * args.steps,  # no DO: masks differ
                      lr=0.01)
    cpu_state, cpu_lc = train(grid, torch.device("cpu"), args.steps)
    dev_state, dev_lc = train(grid, device, args.steps)
    worst = max((cpu_state[k].float() - dev_state[k].float()).abs().max().item()
                for k in cpu_state)
    lc_diff = (cpu_lc - dev_lc).abs().max().item()
    print(f"{len(grid.runs())} runs x {args.steps} steps, cpu vs {device}: largest weight "
          f"difference {worst:.2e}, largest mean-L_c difference {lc_diff:.2e}")
    return 0 if worst <= args.atol else 1


if __name__ == "__main__":
    sys.exit(main())
