"""Benchmark: the stacked grid trainer vs its peers: the authors' style, a tight per-run loop and
torch.func's vmap ensemble (al2.speed.peers), each on the same runs and samples.

Authors' style: torchvision's MNIST Dataset of PIL images with ToTensor + Normalize, a DataLoader
(batch 64, shuffled), one LeNet at a time with torch.optim.SGD. Stacked: al2.Trainer with all
runs in one StackedLeNet, data resident on the device. Both train the same number of samples per
run and are counted in samples x runs per second of training (test evaluation excluded and
timed apart). Grids: 1 run (bare), 8 runs (Table 1), 14 runs (the default paper grid: Table 1
plus Bare x 4 instances for Fig. 1), 8k runs (Table 1 x k seeds, or with --replicates m Table
1 x k/m seeds x m replicates: the same runs, each replicate reading its own batch order). On
CUDA each size is timed for every --precisions (fp32, tf32) x --modes (eager, graph: the
captured CUDA-graph step) x --trunks.

    python code/bench/bench_train.py                       # CPU: 8 runs, 6400 samples per run
    python code/bench/bench_train.py --runs 8,40 --replicates 1,5 --no-authors   # replicates' cost
    python code/bench/bench_train.py --device cuda --runs 1,8,14 --precisions fp32,tf32 --no-authors
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's al2 and svcca,
sys.path.insert(1, str(Path(__file__).resolve().parents[2]))  # not an installed checkout's

import al2
from al2.training.config import GridConfig
from al2.training.presets import grid_of_size
from al2.training.data import MNIST_MEAN, MNIST_STD, load_grid_data
from al2.training.device import (select_device, set_cudnn_benchmark, set_tf32,
                                 synchronize)
from al2.errors import UserError
from al2.paths import DATA_DIR
from al2.speed import peers
from al2.speed.variants import TRUNKS, Variants
from al2.training.stack import Trainer

PAPER_STEPS = 700 * 938  # Table 1: 700 epochs of ceil(60000 / 64) steps


def authors_style(grid: GridConfig, noisy: torch.Tensor, samples: int, device) -> float:
    """Seconds to train every run of the grid for `samples` samples, one run at a time."""
    import torchvision
    from torchvision import transforms
    dataset = torchvision.datasets.MNIST(
        str(DATA_DIR), train=True, download=False,
        transform=transforms.Compose([transforms.ToTensor(),
                                      transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))]))
    dataset.targets = noisy.clone()
    synchronize(device)
    start = time.perf_counter()
    for run in grid.runs():
        model, opt, w = peers.alone(run, grid, device)
        loader = torch.utils.data.DataLoader(dataset, batch_size=grid.batch_size, shuffle=True)
        seen = 0
        for x, y in loader:
            peers.plain_step(model, opt, x.to(device), y.to(device), w)
            seen += len(x)
            if seen >= samples:
                break
    synchronize(device)
    return time.perf_counter() - start


def stacked(grid: GridConfig, samples: int, device, graph: bool = False,
            test_images: int = 10000, trunk: str = "grouped", optimizer: str = "torch"):
    """(seconds to train `samples` samples per run, seconds for one full test evaluation) of
    al2.Trainer; graph: full batches through the captured CUDA graph; optimizer: flat
    (speed.flat_sgd) or torch (training.sgd, torch.optim.SGD, the plain step's)."""
    data = load_grid_data(GridConfig(**{**asdict(grid), "subset": samples,
                                        "test_subset": test_images}), device)
    trainer = Trainer(grid, grid.runs(), data)
    Variants(trunk, optimizer, graph)(trainer)
    w = torch.tensor([peers.AL2_WEIGHT if r.use_al2 else 0.0 for r in grid.runs()],
                     device=device)
    trainer.train_epoch(0, w)  # warm-up: allocator, oneDNN / cuDNN algorithm choice
    synchronize(device)
    start = time.perf_counter()
    trainer.train_epoch(1, w)
    synchronize(device)
    t_train = time.perf_counter() - start
    trainer.test()  # the paper: the full test set
    synchronize(device)
    start = time.perf_counter()
    trainer.test()
    synchronize(device)
    return t_train, time.perf_counter() - start


def configurations(args, device) -> list[tuple[str, bool, bool, str]]:
    """(label, tf32, graph, trunk) for every precision x mode x trunk asked for that the device
    can run."""
    modes = [m for m in args.modes.split(",") if m == "eager" or device.type == "cuda"]
    precisions = [p for p in args.precisions.split(",") if p == "fp32" or device.type == "cuda"]
    return [(f"{p} {m}", p == "tf32", m == "graph", t) for p in precisions for m in modes
            for t in args.trunks.split(",")]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--samples", type=int, default=6400, help="training samples per run")
    p.add_argument("--runs", default="8", help="grid sizes, comma list of 1, 14 (the default "
                                               "paper grid) or 8k")
    p.add_argument("--replicates", default="1",
                   help="replicates of each size that divides into them, comma list (1: every "
                        "run reads the same batches)")
    p.add_argument("--modes", default="eager,graph",
                   help="eager and/or graph (CUDA graph replay; CUDA only)")
    p.add_argument("--precisions", default="fp32",
                   help="fp32 (strict, the paper's) and/or tf32 (CUDA only)")
    p.add_argument("--trunks", default="grouped",
                   help=f"trunk kernels to time, comma list of {', '.join(TRUNKS)}")
    p.add_argument("--optimizers", default="flat,torch",
                   help="optimisers to time, comma list of flat (one buffer) and torch "
                        "(torch.optim.SGD): the same rule")
    p.add_argument("--cudnn-benchmark", action="store_true",
                   help="let cuDNN time its algorithms (CUDA only)")
    p.add_argument("--authors", action=argparse.BooleanOptionalAction, default=True,
                   help="also time the authors' style (one run at a time, DataLoader)")
    p.add_argument("--peers", action=argparse.BooleanOptionalAction, default=True,
                   help="also time a tight per-run loop and torch.func's vmap ensemble")
    p.add_argument("--authors-samples", type=int, default=None,
                   help="samples per run for the authors' loop (default: --samples)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--repeats", type=int, default=2,
                   help="time each side this many times and keep the fastest (timing noise "
                        "on a shared machine is ~10%%)")
    p.add_argument("--test-images", type=int, default=10000,
                   help="images of the timed test evaluation (the paper: all 10,000)")
    p.add_argument("--markdown", default=None, help="also write the results to this file")
    p.add_argument("--json", default=None, help="also write the rows as JSON to this file")
    return p


def main():
    parser = build_parser()
    args = parser.parse_args()
    if args.samples < 128 or args.repeats < 1 or not 1 <= args.test_images <= 10000:
        parser.error("--samples must be >= 128, --repeats >= 1, --test-images in 1..10000")
    if not set(args.trunks.split(",")) <= set(TRUNKS):
        parser.error(f"--trunks takes a comma list of {', '.join(TRUNKS)}")
    if not set(args.optimizers.split(",")) <= {"flat", "torch"}:
        parser.error("--optimizers takes a comma list of flat, torch")
    try:
        sizes = [int(r) for r in args.runs.split(",")]
        replicates = [int(k) for k in args.replicates.split(",")]
        grids = {(r, k): grid_of_size(r, k) for r in sizes for k in replicates
                 if k == 1 or (r >= 8 and r % (8 * k) == 0)}
        device = select_device(args.device)
    except (ValueError, UserError) as e:
        parser.error(str(e))
    set_cudnn_benchmark(args.cudnn_benchmark)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} threads"
    steps = -(-args.samples // 64)
    lines = [f"# Training speed ({date.today()}, {name}, torch {torch.__version__})", "",
             f"Samples per run: {args.samples} ({steps} steps of 64); fastest of {args.repeats} "
             f"timings per row. Projected: 700 epochs of 938 steps plus one test evaluation per "
             f"epoch.", "",
             "| runs | replicates | precision, step | trunk, optimiser | train s | "
             "samples·runs/s | "
             "steps/s | eval s | projected 700 epochs |", "|---|---|---|---|---|---|---|---|---|"]
    rows, rates = time_stacked(grids, args, device, steps, lines)
    ratios = replicate_ratios(rates) + optimiser_ratios(rates)
    largest = grids[max(key for key in grids if key[1] == 1)]
    for wanted, rows_of in ((args.peers, peer_rows), (args.authors, authors_rows)):
        if wanted:                                      # table rows, then a ratio line
            *table, ratio = rows_of(largest, args, device, rates)
            lines += table
            ratios += ["", ratio]
    lines += ratios
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": name, "torch": torch.__version__, "rows": rows}, f, indent=2)


def time_stacked(grids: dict, args, device, steps: int, lines: list) -> tuple[list, dict]:
    """Every grid size x configuration: a table line each (appended to `lines`); returns the
    rows and the samples·runs/s by (runs, label)."""
    rows, rates = [], {}
    for (r, k), grid in grids.items():
        for label, tf32, graph, trunk in configurations(args, device):
            for optimizer in args.optimizers.split(","):
                set_tf32(tf32)
                kind = f"{trunk}, {optimizer}"
                try:
                    t_train, t_eval = min(stacked(grid, args.samples, device, graph,
                                                  args.test_images, trunk, optimizer)
                                          for _ in range(args.repeats))
                except RuntimeError as e:  # a failed graph capture should not end the bench
                    lines.append(f"| {r} | {k} | {label} | {kind} | failed: "
                                 f"{str(e).splitlines()[0][:80]} |")
                    continue
                proj = PAPER_STEPS / (steps / t_train) + 700 * t_eval
                rates[(r, k, f"{label} {kind}")] = rate = r * args.samples / t_train
                rows.append({"runs": r, "replicates": k, "config": label, "trunk": trunk,
                             "optimizer": optimizer, "train_s": t_train, "eval_s": t_eval,
                             "steps_per_s": steps / t_train, "projected_s": proj})
                lines.append(f"| {r} | {k} | {label} | {kind} | {t_train:.2f} | {rate:,.0f} | "
                             f"{steps / t_train:.1f} | {t_eval:.3f} | {proj / 60:.1f} min |")
    set_tf32(False)
    return rows, rates


def replicate_ratios(rates: dict) -> list[str]:
    """For each size timed with several replicates: their cost per run-sample against the same
    size with one replicate (every run reading the same batches), and against its replicates
    trained one after another (the size of one replicate, when that was timed too)."""
    lines = []
    for (r, k, config), rate in rates.items():
        one = rates.get((r, 1, config))
        if k == 1 or one is None:
            continue
        lines += ["", f"{r} runs as {k} replicates in one stack ({config}): "
                      f"{one / rate:.3f}x the cost per run-sample of {r} runs sharing one batch "
                      f"order (within 15%: {one / rate <= 1.15})"]
        alone = rates.get((r // k, 1, config))
        if alone is not None:
            lines[-1] += (f"; {alone / rate:.3f}x that of its {k} replicates of {r // k} runs "
                          f"one after another (the stack {100 * (rate / alone - 1):+.1f}% in "
                          f"samples·runs/s)")
    return lines


def optimiser_ratios(rates: dict) -> list[str]:
    """The flat optimiser's speed against torch.optim.SGD's, where both were timed: the flat
    one earns a default only where it is >= 10% faster."""
    lines = []
    for (r, k, config), rate in rates.items():
        if not config.endswith(", flat"):
            continue
        plain = rates.get((r, k, config.removesuffix(", flat") + ", torch"))
        if plain is not None:
            lines += ["", f"{r} runs, {k} replicate(s), {config.removesuffix(', flat')}: the "
                          f"flat optimiser {rate / plain:.3f}x torch.optim.SGD's samples·runs/s "
                          f"(>= 1.10, the bar for a default: {rate / plain >= 1.10})"]
    return lines


def peer_rows(grid: GridConfig, args, device, rates) -> list[str]:
    """The tight per-run loop and the vmap ensemble at the largest size; the stacked ratio."""
    data = load_grid_data(GridConfig(**{**asdict(grid), "subset": args.samples,
                                        "test_subset": 1}), device)
    runs, steps = len(grid.runs()), -(-args.samples // 64)
    best_label, best = max(((k[2], v) for k, v in rates.items() if k[0] == runs and k[1] == 1),
                           key=lambda kv: kv[1])
    lines, ratios = [], []
    for name, peer in (("tight per-run loop", peers.tight_loop),
                       ("torch.func vmap ensemble", peers.vmap_ensemble)):
        t = min(peer(grid, data.train_x, data.train_noisy[0], args.samples, device)
                for _ in range(args.repeats))
        rate = runs * args.samples / t
        lines.append(f"| {runs} | 1 | fp32, {name} | – | {t:.2f} | {rate:,.0f} | "
                     f"{runs * steps / t:.1f} (one run's) | – | "
                     f"{runs * PAPER_STEPS * 64 / rate / 60:.1f} min (training only) |")
        ratios.append(f"{name} {best / rate:.2f}x")
    return lines + [f"Stacked ({best_label}) vs its peers at {runs} runs, in samples·runs per "
                    f"second: " + ", ".join(ratios) + "."]


def authors_rows(grid: GridConfig, args, device, rates) -> list[str]:
    """The authors' loop at the largest grid size, and the stacked trainer's ratio to it."""
    noisy, _ = al2.corrupt_labels(al2.load_mnist()[1], 75, 0)
    a_samples = args.authors_samples or args.samples
    t_auth = min(authors_style(grid, noisy, a_samples, device) for _ in range(args.repeats))
    runs = len(grid.runs())
    rate = runs * a_samples / t_auth
    proj = runs * PAPER_STEPS * 64 / rate
    best_label, best = max(((k[2], v) for k, v in rates.items() if k[0] == runs and k[1] == 1),
                           key=lambda kv: kv[1])
    return [f"| {runs} | 1 | fp32, authors' style | – | {t_auth:.2f} | {rate:,.0f} | "
            f"{runs * -(-a_samples // 64) / t_auth:.1f} (one run's) | – | {proj / 60:.1f} min "
            f"(training only) |",
            f"Stacked ({best_label}) vs authors' style at {runs} runs: {best / rate:.2f}x "
            f"the samples·runs per second."]


if __name__ == "__main__":
    main()
