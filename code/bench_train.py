"""Benchmark: the stacked grid trainer vs the authors' style, one run after another.

Authors' style: torchvision's MNIST Dataset of PIL images with ToTensor + Normalize, a DataLoader
(batch 64, shuffled), one LeNet at a time with torch.optim.SGD. Stacked: al2's train_epoch with
all runs in one StackedLeNet, data resident on the device. Both train the same number of samples
per run and are counted in samples x runs per second of training (test evaluation excluded and
timed apart). Grids: 1 run (bare), 8 runs (Table 1), 14 runs (the default paper grid: Table 1
plus Bare x 4 instances for Fig. 1), 8k runs (Table 1 x k seeds). Strict fp32 unless --tf32.

    python code/bench_train.py                       # CPU: 8 runs, 6400 samples per run
    python code/bench_train.py --device cuda --runs 1,8,14 --samples 60032 --markdown speed.md
"""
from __future__ import annotations

import argparse
import time
from datetime import date

import torch
import torchvision
from torchvision import transforms

import al2
from al2.data import MNIST_MEAN, MNIST_STD
from al2.model import lenet_from_seed
from al2.paths import DATA_DIR
from al2.config import PRESETS, GridConfig, GridError
from al2.data import load_grid_data
from al2.device import select_device, set_tf32
from al2.engine import DROPOUT_STREAM, ORDER_STREAM, epoch_generator, stacked_runs, train_epoch
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


def stacked(grid: GridConfig, samples: int, device):
    """(seconds to train `samples` samples per run, seconds for one full test evaluation)."""
    data = load_grid_data(GridConfig(**{**grid.__dict__, "subset": samples}), device)
    runs = grid.runs()
    model, params, buffers, wd = stacked_runs(runs, device)
    w = torch.tensor([0.01 if r.use_al2 else 0.0 for r in runs], device=device)

    def epoch(i):
        return train_epoch(model, params, buffers, data, grid.batch_size, grid.lr, grid.momentum,
                           w, wd, epoch_generator(0, i, ORDER_STREAM, device),
                           epoch_generator(0, i, DROPOUT_STREAM, device))
    epoch(0)  # warm-up: allocator, oneDNN / cuDNN algorithm choice
    sync(device)
    start = time.perf_counter()
    epoch(1)
    sync(device)
    t_train = time.perf_counter() - start
    evaluate_stacked(model, data.test_x, data.test_y)  # the full test set: no test subset
    sync(device)
    start = time.perf_counter()
    evaluate_stacked(model, data.test_x, data.test_y)
    sync(device)
    return t_train, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--samples", type=int, default=6400, help="training samples per run")
    parser.add_argument("--runs", default="8", help="grid sizes, comma list of 1 or 8k")
    parser.add_argument("--authors-samples", type=int, default=None,
                        help="samples per run for the authors' loop (default: --samples)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--repeats", type=int, default=2,
                        help="time each side this many times and keep the fastest (timing noise "
                             "on a shared machine is ~10%%)")
    parser.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=False,
                        help="TF32 on CUDA (default: strict fp32, the paper's)")
    parser.add_argument("--markdown", default=None, help="also write the results to this file")
    args = parser.parse_args()
    if args.samples < 128 or args.repeats < 1:
        parser.error("--samples must be >= 128 and --repeats >= 1")
    try:
        sizes = [int(r) for r in args.runs.split(",")]
        grids = {r: grid_of(r) for r in sizes}
        device = select_device(args.device)
    except (ValueError, GridError) as e:
        parser.error(str(e))
    set_tf32(args.tf32)
    noisy, _ = al2.corrupt_labels(al2.load_mnist()[1], 75, 0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} threads"
    precision = "TF32" if args.tf32 else "strict fp32"
    lines = [f"# Training speed ({date.today()}, {name}, torch {torch.__version__}, {precision})",
             "",
             f"Samples per run: {args.samples}; fastest of {args.repeats} timings per row. "
             f"Projected times are for 700 epochs of 938 steps per run, plus one test "
             f"evaluation per epoch.", "",
             "| runs | trainer | train s | samples·runs/s | steps/s | eval s | projected 700 epochs |",
             "|---|---|---|---|---|---|---|"]
    rates = {}
    for r, grid in grids.items():
        t_train, t_eval = min(stacked(grid, args.samples, device) for _ in range(args.repeats))
        rates[r] = r * args.samples / t_train
        steps = -(-args.samples // 64)
        proj = PAPER_STEPS / (steps / t_train) + 700 * t_eval
        lines.append(f"| {r} | stacked | {t_train:.2f} | {r * args.samples / t_train:,.0f} | "
                     f"{steps / t_train:.1f} | {t_eval:.2f} | {proj / 60:.1f} min |")
    base = grids[max(sizes)]
    a_samples = args.authors_samples or args.samples
    t_auth = min(authors_style(base, noisy, a_samples, device) for _ in range(args.repeats))
    runs = len(base.runs())
    rate = runs * a_samples / t_auth
    proj = runs * PAPER_STEPS * 64 / rate
    lines.append(f"| {runs} | authors' style | {t_auth:.2f} | {rate:,.0f} | "
                 f"{runs * -(-a_samples // 64) / t_auth:.1f} | – | {proj / 60:.1f} min "
                 f"(training only) |")
    lines += ["", f"Stacked vs authors' style at {runs} runs: {rates[max(sizes)] / rate:.2f}x "
                  f"the samples·runs per second."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
