"""Device check: the trainer on a GPU agrees with the trainer on the CPU, and the CUDA-graph
step agrees with the eager step.

Trains the same grid (dropout off: its masks come from device-specific generators) for a few
hundred steps from the same initialisation and batches: on the CPU, on the GPU eagerly, and on
the GPU through the captured graph (engine.StaticStep); then compares every weight and the
per-run training losses. Strict fp32 on the GPU (TF32 off) so that the tolerance measures the
path, not the number format. Exit code 1 when a difference exceeds --atol.

    python code/check_device.py --device cuda --steps 300     # on a machine with a GPU
"""
from __future__ import annotations

import argparse
import sys

import torch

from al2.config import GridConfig, GridError
from al2.data import load_grid_data
from al2.device import select_device, set_tf32
from al2.engine import StaticStep, dropout_generators, stacked_runs, train_epoch


def train(grid: GridConfig, device: torch.device, steps: int, graph: bool = False):
    """(stacked state_dict on the CPU, per-run mean L_c) after `steps` steps of epoch 0."""
    runs = grid.runs()
    data = load_grid_data(grid, device)
    model, params, buffers, wd = stacked_runs(runs, device)
    step = StaticStep(model, params, buffers, data, grid.batch_size, grid.lr, grid.momentum, wd,
                      graph=True) if graph else None
    w = torch.tensor([1.0 if r.use_al2 else 0.0 for r in runs], device=device)
    # the batch order is drawn on the CPU and moved, so both devices see the same batches
    perm = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(0))
    sums, batches = train_epoch(model, params, buffers, data, grid.batch_size, grid.lr,
                                grid.momentum, w, wd, None,
                                dropout_generators(runs, 0, 0, device),
                                max_steps=steps, perm=perm.to(device), step=step)
    return ({k: v.detach().cpu() for k, v in model.state_dict().items()},
            (sums[0] / batches).cpu())


def compare(a, b) -> tuple[float, float]:
    """(largest weight difference, largest mean-L_c difference) of two train() results."""
    worst = max((a[0][k].float() - b[0][k].float()).abs().max().item()
                for k in a[0] if a[0][k].numel())  # some buffers are empty (no dropout run)
    return worst, (a[1] - b[1]).abs().max().item()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    parser.add_argument("--steps", type=int, default=300, help="SGD steps (default: 300)")
    parser.add_argument("--atol", type=float, default=1e-3,
                        help="largest weight difference accepted (default: 1e-3)")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    try:
        device = select_device(args.device)
    except GridError as e:
        parser.error(str(e))
    set_tf32(False)
    grid = GridConfig(baselines=["bare", "bn", "wd"], subset=64 * args.steps,  # no DO: masks differ
                      lr=0.01)
    cpu = train(grid, torch.device("cpu"), args.steps)
    eager = train(grid, device, args.steps)
    ok = report(grid, args, "cpu", f"{device} eager", compare(cpu, eager))
    if device.type == "cuda":
        try:
            graph = train(grid, device, args.steps, graph=True)
        except RuntimeError as e:  # the capture itself failed
            print(f"{device} graph: failed: {str(e).splitlines()[0]}")
            ok = graph_ok = False
        else:
            graph_ok = report(grid, args, f"{device} eager", f"{device} graph",
                              compare(eager, graph))
            ok &= graph_ok
        print(f"graph step: {'ok' if graph_ok else 'failed'}")  # read by reproduce_gpu.sh
    return 0 if ok else 1


def report(grid, args, a: str, b: str, result: tuple[float, float]) -> bool:
    """Print one comparison; whether it is within --atol."""
    worst, lc = result
    print(f"{len(grid.runs())} runs x {args.steps} steps, {a} vs {b}: largest weight "
          f"difference {worst:.2e}, largest mean-L_c difference {lc:.2e}"
          f"{'' if worst <= args.atol else f'  > --atol {args.atol:g}'}")
    return worst <= args.atol


if __name__ == "__main__":
    sys.exit(main())
