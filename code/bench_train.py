"""Benchmark: the stacked grid trainer vs the authors' style, one run after another.

Authors' style: torchvision's MNIST Dataset of PIL images with ToTensor + Normalize, a DataLoader
(batch 64, shuffled), one LeNet at a time with torch.optim.SGD. Stacked: al2's train_epoch with
all runs in one StackedLeNet, data resident on the device. Both train the same number of samples
per run and are counted in samples x runs per second of training (test evaluation excluded and
timed apart). Grids: 1 run (bare), 8 runs (Table 1), 14 runs (the default paper grid: Table 1
plus Bare x 4 instances for Fig. 1), 8k runs (Table 1 x k seeds). On CUDA each size is timed
for every --precisions (fp32, tf32) x --modes (eager, graph: the captured CUDA-graph step).

    python code/bench_train.py                       # CPU: 8 runs, 6400 samples per run
    python code/bench_train.py --device cuda --runs 1,8,14 --precisions fp32,tf32 --no-authors
"""
from __future__ import annotations

import argparse
import json
import time
from datetime import date

import torch
import torchvision
from torchvision import transforms

import al2
from al2.data import MNIST_MEAN, MNIST_STD
from al2.model import StackedLeNet, lenet_from_seed
from al2.paths import DATA_DIR
from al2.config import PRESETS, GridConfig, GridError
from al2.data import load_grid_data
from al2.device import select_device, set_tf32
from al2.engine import (ORDER_STREAM, StaticStep, dropout_generators, epoch_generator,
                        stacked_runs, train_epoch)
from al2.inference import evaluate_stacked

PAPER_STEPS = 700 * 938  # Table 1: 700 epochs of ceil(60000 / 64) steps


PAPER_GRID = GridConfig(**PRESETS["paper"])  # train.py's default: 14 runs


def grid_of(runs: int) -> GridConfig:
    if runs == 1:
        return GridConfig(baselines=["bare"], al2="off")
    if runs == len(PAPER_GRID.runs()):
        return PAPER_GRID
    if runs % 8:
        raise ValueError(f"--runs takes 1, {len(PAPER_GRID.runs())} (the default paper grid) "
                         f"or multiples of 8 (Table 1 x seeds)")
    return GridConfig(seeds=list(range(runs // 8)))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def authors_style(grid: GridConfig, noisy: torch.Tensor, samples: int, device) -> float:
    """Seconds to train every run of the grid for `samples` samples, one run at a time."""
    dataset = torchvision.datasets.MNIST(
        str(DATA_DIR), train=True, download=False,
        transform=transforms.Compose([transforms.ToTensor(),
                                      transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))]))
    dataset.targets = noisy.clone()
    sync(device)
    start = time.perf_counter()
    for run in grid.runs():
        model = lenet_from_seed(run.seed, run.batch_norm, run.dropout).to(device).train()
        opt = torch.optim.SGD(model.parameters(), lr=grid.lr, momentum=grid.momentum,
                              weight_decay=run.weight_decay)
        loader = torch.utils.data.DataLoader(dataset, batch_size=grid.batch_size, shuffle=True)
        seen = 0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            log_probs, features = model(x)
            w = torch.tensor([0.01 if run.use_al2 else 0.0], device=device)
            loss, _, _ = al2.al2_loss(log_probs[None], features[:, None], y, w)  # R = 1
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(x)
            if seen >= samples:
                break
    sync(device)
    return time.perf_counter() - start


def grid_epochs(grid: GridConfig, samples: int, device, graph: bool = False,
                test_images: int = 10000, conv2: str = "grouped", conv1: str = "cudnn"):
    """(epoch(i): train epoch i of the grid on its first `samples` images, the model, the data);
    graph: full batches through engine.StaticStep captured as a CUDA graph; conv2, conv1: the
    convolutions' kernels (StackedLeNet.CONV2, CONV1). code/profile_step.py uses it too."""
    data = load_grid_data(GridConfig(**{**grid.__dict__, "subset": samples,
                                        "test_subset": test_images}), device)
    runs = grid.runs()
    model, params, buffers, wd = stacked_runs(runs, device, conv2, conv1)
    step = StaticStep(model, params, buffers, data, grid.batch_size, grid.lr, grid.momentum, wd,
                      graph=True) if graph else None
    w = torch.tensor([0.01 if r.use_al2 else 0.0 for r in runs], device=device)

    def epoch(i):
        return train_epoch(model, params, buffers, data, grid.batch_size, grid.lr, grid.momentum,
                           w, wd, epoch_generator(0, i, ORDER_STREAM, device),
                           dropout_generators(runs, 0, i, device), step=step)
    return epoch, model, data


def stacked(grid: GridConfig, samples: int, device, graph: bool = False,
            test_images: int = 10000, conv2: str = "grouped", conv1: str = "cudnn"):
    """(seconds to train `samples` samples per run, seconds for one full test evaluation);
    the arguments as grid_epochs's."""
    epoch, model, data = grid_epochs(grid, samples, device, graph, test_images, conv2, conv1)
    epoch(0)  # warm-up: allocator, oneDNN / cuDNN algorithm choice
    sync(device)
    start = time.perf_counter()
    epoch(1)
    sync(device)
    t_train = time.perf_counter() - start
    evaluate_stacked(model, data.test_x, data.test_y)  # the paper: the full test set
    sync(device)
    start = time.perf_counter()
    evaluate_stacked(model, data.test_x, data.test_y)
    sync(device)
    return t_train, time.perf_counter() - start


def configurations(args, device) -> list[tuple[str, bool, bool, str, str]]:
    """(label, tf32, graph, conv2, conv1) for every precision x mode x conv2 x conv1 asked for
    that the device can run."""
    modes = [m for m in args.modes.split(",") if m == "eager" or device.type == "cuda"]
    precisions = [p for p in args.precisions.split(",") if p == "fp32" or device.type == "cuda"]
    return [(f"{p} {m}", p == "tf32", m == "graph", c2, c1) for p in precisions for m in modes
            for c2 in args.conv2.split(",") for c1 in args.conv1.split(",")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--samples", type=int, default=6400, help="training samples per run")
    parser.add_argument("--runs", default="8", help=f"grid sizes, comma list of 1, "
                        f"{len(PAPER_GRID.runs())} (the default paper grid) or 8k")
    parser.add_argument("--modes", default="eager,graph",
                        help="eager and/or graph (CUDA graph replay; CUDA only)")
    parser.add_argument("--precisions", default="fp32",
                        help="fp32 (strict, the paper's) and/or tf32 (CUDA only)")
    parser.add_argument("--authors", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the authors' style (one run at a time, DataLoader)")
    parser.add_argument("--authors-samples", type=int, default=None,
                        help="samples per run for the authors' loop (default: --samples)")
    parser.add_argument("--conv2", default="grouped",
                        help="second-convolution kernels to time, comma list of "
                             f"{', '.join(StackedLeNet.CONV2)}")
    parser.add_argument("--conv1", default="cudnn",
                        help="first-convolution kernels to time, comma list of "
                             f"{', '.join(StackedLeNet.CONV1)}")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--repeats", type=int, default=2,
                        help="time each side this many times and keep the fastest (timing noise "
                             "on a shared machine is ~10%%)")
    parser.add_argument("--test-images", type=int, default=10000,
                        help="images of the timed test evaluation (the paper: all 10,000)")
    parser.add_argument("--markdown", default=None, help="also write the results to this file")
    parser.add_argument("--json", default=None, help="also write the rows as JSON to this file")
    args = parser.parse_args()
    if args.samples < 128 or args.repeats < 1 or not 1 <= args.test_images <= 10000:
        parser.error("--samples must be >= 128, --repeats >= 1, --test-images in 1..10000")
    if not set(args.conv2.split(",")) <= set(StackedLeNet.CONV2) or \
            not set(args.conv1.split(",")) <= set(StackedLeNet.CONV1):
        parser.error(f"--conv2 takes a comma list of {', '.join(StackedLeNet.CONV2)}, --conv1 "
                     f"of {', '.join(StackedLeNet.CONV1)}")
    try:
        sizes = [int(r) for r in args.runs.split(",")]
        grids = {r: grid_of(r) for r in sizes}
        device = select_device(args.device)
    except (ValueError, GridError) as e:
        parser.error(str(e))
    noisy, _ = al2.corrupt_labels(al2.load_mnist()[1], 75, 0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} threads"
    steps = -(-args.samples // 64)
    lines = [f"# Training speed ({date.today()}, {name}, torch {torch.__version__})", "",
             f"Samples per run: {args.samples} ({steps} steps of 64); fastest of {args.repeats} "
             f"timings per row. Projected: 700 epochs of 938 steps plus one test evaluation per "
             f"epoch.", "",
             "| runs | precision, step | conv2, conv1 | train s | samples·runs/s | steps/s | "
             "eval s | projected 700 epochs |",
             "|---|---|---|---|---|---|---|---|"]
    rows, rates = [], {}
    for r, grid in grids.items():
        for label, tf32, graph, conv2, conv1 in configurations(args, device):
            set_tf32(tf32)
            try:
                t_train, t_eval = min(stacked(grid, args.samples, device, graph,
                                              args.test_images, conv2, conv1)
                                      for _ in range(args.repeats))
            except RuntimeError as e:  # a failed graph capture should not end the probe
                lines.append(f"| {r} | {label} | {conv2}, {conv1} | failed: "
                             f"{str(e).splitlines()[0][:80]} |")
                continue
            proj = PAPER_STEPS / (steps / t_train) + 700 * t_eval
            kernels = f"{conv2}, {conv1}"
            rates[(r, f"{label} {kernels}")] = r * args.samples / t_train
            rows.append({"runs": r, "config": label, "conv2": conv2, "conv1": conv1,
                         "train_s": t_train,
                         "eval_s": t_eval, "steps_per_s": steps / t_train, "projected_s": proj})
            lines.append(f"| {r} | {label} | {kernels} | {t_train:.2f} | "
                         f"{rates[(r, f'{label} {kernels}')]:,.0f} | {steps / t_train:.1f} | "
                         f"{t_eval:.3f} | {proj / 60:.1f} min |")
    set_tf32(False)
    if args.authors:
        lines += authors_rows(grids[max(sizes)], noisy, args, device, rates)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": name, "torch": torch.__version__, "rows": rows}, f, indent=2)


def authors_rows(grid: GridConfig, noisy, args, device, rates) -> list[str]:
    """The authors' loop at the largest grid size, and the stacked trainer's ratio to it."""
    a_samples = args.authors_samples or args.samples
    t_auth = min(authors_style(grid, noisy, a_samples, device) for _ in range(args.repeats))
    runs = len(grid.runs())
    rate = runs * a_samples / t_auth
    proj = runs * PAPER_STEPS * 64 / rate
    best_label, best = max(((k[1], v) for k, v in rates.items() if k[0] == runs),
                           key=lambda kv: kv[1])
    return [f"| {runs} | authors' style | – | {t_auth:.2f} | {rate:,.0f} | "
            f"{runs * -(-a_samples // 64) / t_auth:.1f} | – | {proj / 60:.1f} min "
            f"(training only) |", "",
            f"Stacked ({best_label}) vs authors' style at {runs} runs: {best / rate:.2f}x "
            f"the samples·runs per second."]


if __name__ == "__main__":
    main()
