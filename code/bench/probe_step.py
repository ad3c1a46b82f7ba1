"""Probe the training step's variants on this device: check each, time each, pick the fastest.

A variant is a trunk (al2.speed.variants.TRUNKS) with or without cuDNN's algorithm search, and on
CUDA with either optimiser (torch.optim.SGD or the flat one, speed.flat_sgd). Each is the same
function; on a GPU each runs as a replayed CUDA graph. For every variant:

  check  a few steps of the default paper grid (all four baselines, dropout included) in
         float64 through the variant's step, against the stacked eager step (grouped trunk):
         every weight, momentum and metric sum within --rtol. A missing stream join or a race
         shows here; float64 leaves no room for rounding to hide one. On the CPU the variant's
         step is its static-buffer path, run eagerly.
  time   --steps steps of the paper grid (R = --runs, 14 by default) in strict fp32 inside
         the real epoch loop (batch index copy, dropout draws, replay), after --warmup steps,
         timed with CUDA events (wall clock on the CPU).

On CUDA the plain step (the eager grouped step with torch.optim.SGD, train.py --no-cuda-graph)
is timed too, and a variant is chosen over it only when it is at least BAR (1.10x) faster: a
speed variant earns its place by a measurement, on the machine that runs it. The fastest
variant that passed its check is the choice; the chosen one is also timed at
--project-runs (R = 24: 3 seeds of every cell) for the projection. A table is printed last;
--json keeps the rows and the choice for the job script and speed_report.py.

    python code/bench/probe_step.py --device cuda --json probe.json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's al2 and svcca,
sys.path.insert(1, str(Path(__file__).resolve().parents[2]))  # not an installed checkout's

from al2.training.config import GridConfig
from al2.training.presets import grid_of_size
from al2.training.data import load_grid_data
from al2.training.device import (select_device, set_cudnn_benchmark, set_tf32,
                                 synchronize)
from al2.errors import UserError
from al2.speed.graph import StaticStep
from al2.speed.variants import TRUNKS, Variants, install_flat_sgd, install_trunk
from al2.training.stack import Trainer

PAPER_STEPS = 700 * 938   # Table 1: 700 epochs of ceil(60000 / 64) steps


BAR = 1.10  # how much faster than the plain step a variant must be to be chosen
# the plain step: eager (no CUDA graph), the model's own trunk, torch.optim.SGD; also the choice
# when no variant passed
PLAIN = {"trunk": "grouped", "cudnn_benchmark": False, "optimizer": "torch", "cuda_graph": False}


def variants(trunks: list[str], device: torch.device) -> list[dict]:
    """The candidates, each replayed as a CUDA graph; on CUDA first the plain step itself. On the
    CPU only the trunks (its defaults are the CPU bench's to set)."""
    cuda = device.type == "cuda"
    plain = [dict(PLAIN)] if cuda else []
    return plain + [{"trunk": t, "cudnn_benchmark": b, "optimizer": o, "cuda_graph": True}
                    for t in trunks for b in ((False, True) if cuda else (False,))
                    for o in (("torch", "flat") if cuda else ("torch",))]


def name(v: dict) -> str:
    if not v.get("cuda_graph", True):
        return "plain step (eager, grouped, torch.optim.SGD)"
    return v["trunk"] + (" + cudnn.benchmark" if v["cudnn_benchmark"] else "") + \
        (" + flat SGD" if v.get("optimizer") == "flat" else "")


def float64_trainer(grid: GridConfig, device, trunk: str, graph: bool,
                    optimizer: str = "torch") -> Trainer:
    """A trainer of `grid` in float64 (the same initial weights for every variant: each run's
    float32 initialisation, converted)."""
    data = load_grid_data(grid, device)
    data.train_x, data.test_x = data.train_x.double(), data.test_x.double()
    trainer = Trainer(grid, grid.runs(), data)
    install_trunk(trainer, trunk)
    if optimizer == "flat":
        install_flat_sgd(trainer)
    if graph:  # the variant's own step: captured and replayed on CUDA, its buffers on the CPU
        trainer.fast_step = StaticStep(trainer, graph=device.type == "cuda")
    return trainer


def run_steps(trainer: Trainer, epoch_index: int, al2_weight: torch.Tensor, steps: int,
              order: torch.Tensor | None = None) -> dict:
    """The first `steps` steps of an epoch, as Trainer.train_epoch takes them (in the batch
    order `order` (N,) when given): the epoch loop cut short, for checks and timings."""
    trainer.model.train()
    trainer.sums.zero()
    draws = trainer.draws(epoch_index, order)
    weight = al2_weight.to(trainer.device)
    for step, idx in draws.batches():
        if step >= steps:
            break
        trainer.take_step(idx, weight, draws, step)
    return trainer.sums.read()


def run_check(trainer: Trainer, steps: int) -> list[torch.Tensor]:
    w = torch.tensor([0.5 if r.use_al2 else 0.0 for r in trainer.runs])   # distinct per run
    sums = run_steps(trainer, 0, w, steps)
    return [*trainer.sgd.state_tensors(), *trainer.model.buffers(),
            torch.tensor([sums[k] for k in ("loss_c", "loss_r")], dtype=torch.float64)]


def check(v: dict, grid: GridConfig, device, steps: int, reference: list) -> float:
    """Largest relative difference of the variant's float64 state from the reference's."""
    set_cudnn_benchmark(v["cudnn_benchmark"])
    state = run_check(float64_trainer(grid, device, v["trunk"], graph=v.get("cuda_graph", True),
                                      optimizer=v.get("optimizer", "torch")), steps)
    worst = 0.0
    for a, b in zip(state, reference):
        a, b = a.double().cpu(), b.double().cpu()
        if a.numel():
            worst = max(worst, ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item())
    return worst if math.isfinite(worst) else math.inf


def time_variant(v: dict, runs: int, device, steps: int, warmup: int) -> float:
    """Steps per second of the variant's strict-fp32 step at `runs` runs, in the epoch loop."""
    set_cudnn_benchmark(v["cudnn_benchmark"])
    grid = grid_of_size(runs)
    data = load_grid_data(GridConfig(**{**asdict(grid), "subset": 64 * (steps + warmup)}),
                          device)
    trainer = Trainer(grid, grid.runs(), data)
    env = Variants(v["trunk"], v.get("optimizer", "torch"), v.get("cuda_graph", True))(trainer)
    if "cuda_graph_error" in env:  # the trainer kept the eager step: not this variant's speed
        raise RuntimeError(f"capture failed ({env['cuda_graph_error']})")
    w = torch.tensor([0.01 if r.use_al2 else 0.0 for r in grid.runs()], device=device)
    perm = torch.arange(len(data.train_x), device=device)
    run_steps(trainer, 0, w, warmup, perm)
    synchronize(device)
    timed = perm[64 * warmup:]
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run_steps(trainer, 1, w, steps, timed)
        end.record()
        end.synchronize()
        return steps / (start.elapsed_time(end) / 1000)
    t0 = time.perf_counter()
    run_steps(trainer, 1, w, steps, timed)
    return steps / (time.perf_counter() - t0)


def measured(what: str, errors: list, measure, *args):
    """measure(*args), or None with a one-line note in `errors` when it raises: a failing
    measurement (a capture that fails, a kernel that is missing, memory) is a result of the
    probe, never its end."""
    try:
        return measure(*args)
    except Exception as e:  # noqa: BLE001 - any failure of one measurement, whatever its type
        first = str(e).splitlines()[0][:120] if str(e) else ""
        errors.append(f"{what}: {type(e).__name__}: {first}")
        return None


def pick(passed: list[dict]) -> dict:
    """The fastest variant that passed, unless the plain step passed too and the fastest is
    less than BAR times faster than it: then the plain step."""
    best = max(passed, key=lambda r: r["steps_per_s"])
    plain = [r for r in passed if not r.get("cuda_graph", True)]
    if plain and best["steps_per_s"] < BAR * plain[0]["steps_per_s"]:
        return plain[0]
    return best


def probe(args, device) -> dict:
    """Check and time every variant within --budget-s seconds; a variant left when the budget
    is spent is skipped. The choice is the fastest variant that passed, replayed as a CUDA graph;
    when none passed (or the reference failed), the eager grouped step, which needs no capture."""
    start, errors = time.perf_counter(), []
    set_tf32(False)  # strict fp32: the paper's precision
    check_grid = GridConfig(**{**asdict(grid_of_size(14)), "subset": 64 * args.check_steps,
                               "test_subset": 64})
    set_cudnn_benchmark(False)
    reference = measured("float64 reference (eager grouped step)", errors, lambda: run_check(
        float64_trainer(check_grid, device, "grouped", graph=False), args.check_steps))
    rows = []
    for v in variants(args.trunks.split(","), device):
        row = {**v, "name": name(v), "passed": False}
        rows.append(row)
        if time.perf_counter() - start > args.budget_s:
            row["error"] = f"skipped: the probe's {args.budget_s:g} s were spent"
            continue
        if reference is None:
            row["error"] = "not checked: the float64 reference failed"
            continue
        failed = len(errors)
        diff = measured(name(v) + " check", errors, check, v, check_grid, device,
                        args.check_steps, reference)
        if diff is not None:
            row["check_rel_diff"] = diff
            row["passed"] = diff <= args.rtol
        if row["passed"]:
            rate = measured(name(v) + " timing", errors, time_variant, v, args.runs, device,
                            args.steps, args.warmup)
            row["passed"] = rate is not None
            if rate is not None:
                row["steps_per_s"] = rate
        if len(errors) > failed:
            row["error"] = errors[-1].split(": ", 1)[1]
    passed = [r for r in rows if r["passed"]]
    choice = pick(passed) if passed else \
        {**PLAIN, "name": "grouped, eager (fallback: no variant passed)"}
    projection = {}
    if passed and args.project_runs and time.perf_counter() - start <= args.budget_s:
        rate = measured(f"projection at R = {args.project_runs}", errors, time_variant, choice,
                        args.project_runs, device, args.steps, args.warmup)
        projection = {"runs": args.project_runs, "steps_per_s": rate} if rate else \
            {"runs": args.project_runs, "error": errors[-1]}
    set_cudnn_benchmark(False)
    return {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
            "torch": torch.__version__, "runs": args.runs, "steps": args.steps, "rtol": args.rtol,
            "rows": rows, "choice": {k: choice[k] for k in ("trunk", "cudnn_benchmark",
                                                           "optimizer", "cuda_graph", "name")},
            "projection": projection, "errors": errors,
            "seconds": time.perf_counter() - start}


def table(result: dict) -> str:
    """The probe as Markdown: a row per variant, the choice, the projections."""
    lines = [f"Step variants on {result['device']} (torch {result['torch']}): float64 check "
             f"against the stacked eager step (rtol {result['rtol']:g}), then "
             f"{result['steps']} strict-fp32 steps at R = {result['runs']}; projected: "
             f"{PAPER_STEPS:,} steps (700 epochs), training only.", "",
             "| variant | float64 check | steps/s | ms per step | projected 700 epochs |",
             "|---|---|---|---|---|"]
    for r in result["rows"]:
        diff = r.get("check_rel_diff", math.nan)
        verdict = f"{'passed' if r['passed'] else 'FAILED'} ({diff:.1e})" if "error" not in r \
            else f"error: {r['error']}"
        rate = r.get("steps_per_s")
        lines.append(f"| {r['name']} | {verdict} | {rate or math.nan:,.0f} | "
                     f"{1000 / rate if rate else math.nan:.3f} | "
                     f"{PAPER_STEPS / rate / 60 if rate else math.nan:.1f} min |")
    lines += ["", f"Chosen: {result['choice']['name']}."]
    p = result.get("projection")
    if p and p.get("steps_per_s"):
        lines.append(f"At R = {p['runs']} (3 seeds of every cell) the chosen step runs "
                     f"{p['steps_per_s']:,.0f} steps/s: {PAPER_STEPS / p['steps_per_s'] / 60:.1f} "
                     f"min of training for 700 epochs.")
    elif p:
        lines.append(f"The projection at R = {p['runs']} failed: {p['error']}.")
    if result.get("errors"):
        lines += ["", "Failed measurements (each recorded, none ended the probe):"]
        lines += [f"- {e}" for e in result["errors"]]
    if "seconds" in result:
        lines += ["", f"The probe took {result['seconds']:.0f} s."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--trunks", default=",".join(TRUNKS),
                        help="trunk variants, comma list")
    parser.add_argument("--steps", type=int, default=300, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=30, help="untimed steps before them")
    parser.add_argument("--check-steps", type=int, default=4, help="float64 steps compared")
    parser.add_argument("--rtol", type=float, default=1e-9,
                        help="largest relative float64 difference a variant may show")
    parser.add_argument("--runs", type=int, default=14,
                        help="runs timed: 14 (the default paper grid), 1 or a multiple of 8")
    parser.add_argument("--project-runs", type=int, default=24,
                        help="also time the chosen variant at this many runs (0: no)")
    parser.add_argument("--budget-s", type=float, default=60.0,
                        help="seconds the probe may take; variants left then are skipped")
    parser.add_argument("--json", default=None, help="write the rows and the choice here")
    args = parser.parse_args()
    if min(args.steps, args.check_steps) < 1 or args.warmup < 0:
        parser.error("--steps and --check-steps must be >= 1, --warmup >= 0")
    if not set(args.trunks.split(",")) <= set(TRUNKS):
        parser.error(f"--trunks takes a comma list of {', '.join(TRUNKS)}")
    try:
        device = select_device(args.device)
        grid_of_size(args.runs)
        if args.project_runs:
            grid_of_size(args.project_runs)
        result = probe(args, device)
    except (UserError, ValueError) as e:
        parser.exit(2, f"probe_step.py: error: {e}\n")
    result["table"] = table(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    print(result["table"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
