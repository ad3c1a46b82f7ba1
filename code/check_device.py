"""Device check: the trainer on a GPU agrees with the trainer on the CPU, and the CUDA-graph
step agrees with the eager step.

Trains the same grid (dropout off: its masks come from device-specific generators) from the same
initialisation and batches: on the CPU, on the GPU eagerly, and on the GPU through the captured
graph (engine.StaticStep). Two comparisons each: every weight after the first --weight-steps
steps (atol --atol), and each run's mean training L_c over all --steps steps (atol --lc-atol).
Weights are compared early because fp32 training is chaotic: on an H200 (2026-11-28) the
largest weight difference after 300 steps was 7.0e-2 for CPU vs GPU and 7.0e-2 for eager vs
graph alike, while the mean L_c agreed to 5e-5. Strict fp32 on the GPU (TF32 off), so that the
tolerances measure the path, not the number format. Prints "graph step: ok|failed" last (read by
code/reproduce_gpu.sh); exit code 1 when a comparison fails.

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
from al2.model import StackedLeNet


def train(grid: GridConfig, device: torch.device, steps: int, weight_steps: int,
          graph: bool = False, conv2: str = "grouped", conv1: str = "cudnn"):
    """(stacked state_dict on the CPU after `weight_steps` steps, per-run mean L_c over
    `steps` steps), all within epoch 0."""
    runs = grid.runs()
    data = load_grid_data(grid, device)
    model, params, buffers, wd = stacked_runs(runs, device, conv2, conv1)
    step = StaticStep(model, params, buffers, data, grid.batch_size, grid.lr, grid.momentum, wd,
                      graph=True) if graph else None
    w = torch.tensor([1.0 if r.use_al2 else 0.0 for r in runs], device=device)
    # the batch order is drawn on the CPU and moved, so both devices see the same batches
    perm = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(0))
    perm = perm.to(device)
    loss_c, state = 0.0, None
    for first, count in ((0, weight_steps), (weight_steps, steps - weight_steps)):
        if count == 0:
            continue
        sums, _ = train_epoch(model, params, buffers, data, grid.batch_size, grid.lr,
                              grid.momentum, w, wd, None, dropout_generators(runs, 0, 0, device),
                              max_steps=count, perm=perm[first * grid.batch_size:], step=step)
        loss_c = loss_c + sums[0].cpu()
        if state is None:
            state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return state, loss_c / steps


def compare(a, b) -> tuple[float, float]:
    """(largest weight difference, largest mean-L_c difference) of two train() results."""
    worst = max((a[0][k].float() - b[0][k].float()).abs().max().item()
                for k in a[0] if a[0][k].numel())  # some buffers are empty (no dropout run)
    return worst, (a[1] - b[1]).abs().max().item()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    parser.add_argument("--steps", type=int, default=300, help="SGD steps (default: 300)")
    parser.add_argument("--weight-steps", type=int, default=20,
                        help="steps after which the weights are compared (default: 20)")
    parser.add_argument("--atol", type=float, default=1e-3,
                        help="largest weight difference accepted (default: 1e-3)")
    parser.add_argument("--conv2", default="grouped",
                        help="second-convolution kernels to check on the device, comma list "
                             "(default: grouped; the CPU reference always uses grouped)")
    parser.add_argument("--conv1", choices=StackedLeNet.CONV1, default="cudnn",
                        help="first-convolution kernels on the device (default: cudnn)")
    parser.add_argument("--lc-atol", type=float, default=1e-3,
                        help="largest difference of a run's mean L_c accepted (default: 1e-3)")
    args = parser.parse_args()
    if not 1 <= args.weight_steps <= args.steps:
        parser.error("--steps and --weight-steps must satisfy 1 <= --weight-steps <= --steps")
    if not set(args.conv2.split(",")) <= set(StackedLeNet.CONV2):
        parser.error(f"--conv2 takes a comma list of {', '.join(StackedLeNet.CONV2)}")
    try:
        device = select_device(args.device)
    except GridError as e:
        parser.error(str(e))
    set_tf32(False)
    grid = GridConfig(baselines=["bare", "bn", "wd"], subset=64 * args.steps,  # no DO: masks differ
                      lr=0.01)
    cpu = train(grid, torch.device("cpu"), args.steps, args.weight_steps)
    ok, usable = True, []
    for conv2 in args.conv2.split(","):
        name = f"{device} {conv2}" + ("" if args.conv1 == "cudnn" else f", conv1 {args.conv1}")
        eager = train(grid, device, args.steps, args.weight_steps, conv2=conv2, conv1=args.conv1)
        weights_ok, lc_ok = report(grid, args, "cpu grouped", f"{name} eager",
                                   compare(cpu, eager))
        ok &= weights_ok and lc_ok
        if device.type != "cuda":
            continue
        try:
            graph = train(grid, device, args.steps, args.weight_steps, graph=True,
                          conv2=conv2, conv1=args.conv1)
        except RuntimeError as e:  # the capture itself failed
            print(f"{name} graph: failed: {str(e).splitlines()[0]}")
            ok = False
            continue
        weights_ok, graph_lc_ok = report(grid, args, f"{name} eager", f"{name} graph",
                                         compare(eager, graph))
        ok &= weights_ok and graph_lc_ok
        if lc_ok and graph_lc_ok:
            usable.append(conv2)
    if device.type == "cuda":
        # read by reproduce_gpu.sh: a step trains when its graph captured and its L_c agrees
        # with the CPU's and the eager step's (a weight difference alone can be fp32 chaos; a
        # broken step moves the loss)
        print(f"usable conv2: {' '.join(usable) or 'none'}")
        print(f"graph step: {'ok' if usable else 'failed'}")
    return 0 if ok else 1


def report(grid, args, a: str, b: str, result: tuple[float, float]) -> tuple[bool, bool]:
    """Print one comparison; (weights within --atol, mean L_c within --lc-atol)."""
    worst, lc = result
    ok = worst <= args.atol, lc <= args.lc_atol
    print(f"{len(grid.runs())} runs, {a} vs {b}: largest weight difference after "
          f"{args.weight_steps} steps {worst:.2e} (atol {args.atol:g}"
          f"{'' if ok[0] else ': FAILED'}), largest difference of a run's mean L_c over "
          f"{args.steps} steps {lc:.2e} (atol {args.lc_atol:g}{'' if ok[1] else ': FAILED'})")
    return ok


if __name__ == "__main__":
    sys.exit(main())
