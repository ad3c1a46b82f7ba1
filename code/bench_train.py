"""Benchmark: the stacked grid trainer vs the authors' style, one run after another, on the CPU.

Authors' style: torchvision's MNIST Dataset of PIL images with ToTensor + Normalize, a DataLoader
(batch 64, shuffled), one LeNet at a time with torch.optim.SGD. Stacked: al2's train_epoch on the
same number of samples with all runs in one StackedLeNet. Both use the Table 1 grid (8 runs) and
count samples x runs per second of training (no test evaluation on either side).

    python code/bench_train.py              # 8 runs, 6400 samples each (about 3 minutes)
"""
from __future__ import annotations

import argparse
import time

import torch
import torchvision
from torchvision import transforms

import al2
from al2.data import MNIST_MEAN, MNIST_STD
from al2.model import StackedLeNet, lenet_from_seed
from al2.paths import DATA_DIR
from al2.training import (DROPOUT_STREAM, ORDER_STREAM, GridConfig, epoch_generator,
                          load_grid_data, train_epoch)


def authors_style(grid: GridConfig, noisy_labels: torch.Tensor, samples: int) -> float:
    """Seconds to train every run of the grid for `samples` samples, one run at a time."""
    dataset = torchvision.datasets.MNIST(
        str(DATA_DIR), train=True, download=False,
        transform=transforms.Compose([transforms.ToTensor(),
                                      transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))]))
    dataset.targets = noisy_labels.clone()
    start = time.perf_counter()
    for run in grid.runs():
        model = lenet_from_seed(run.seed, run.batch_norm, run.dropout).train()
        opt = torch.optim.SGD(model.parameters(), lr=grid.lr, momentum=grid.momentum,
                              weight_decay=run.weight_decay)
        loader = torch.utils.data.DataLoader(dataset, batch_size=grid.batch_size, shuffle=True)
        seen = 0
        for x, y in loader:
            log_probs, features = model(x)
            loss, _, _ = al2.al2_loss(log_probs, features, y, 0.01 if run.use_al2 else 0.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(x)
            if seen >= samples:
                break
    return time.perf_counter() - start


def stacked(grid: GridConfig, samples: int) -> float:
    device = torch.device("cpu")
    data = load_grid_data(GridConfig(**{**grid.__dict__, "subset": samples}), device)
    runs = grid.runs()
    model = StackedLeNet([lenet_from_seed(r.seed, r.batch_norm, r.dropout) for r in runs]).train()
    params = list(model.parameters())
    buffers = [torch.zeros_like(p) for p in params]
    wd = torch.tensor([r.weight_decay for r in runs])
    w = torch.tensor([0.01 if r.use_al2 else 0.0 for r in runs])
    start = time.perf_counter()
    train_epoch(model, params, buffers, data, grid, w, wd,
                epoch_generator(0, 0, ORDER_STREAM, device),
                epoch_generator(0, 0, DROPOUT_STREAM, device))
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--samples", type=int, default=6400, help="training samples per run")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args()
    if args.samples < 64:
        parser.error("--samples must be >= 64")
    if args.threads:
        torch.set_num_threads(args.threads)
    grid = GridConfig()
    runs = len(grid.runs())
    noisy, _ = al2.corrupt_labels(al2.load_mnist()[1], grid.percent_corrupt, grid.corruption_seed)
    stacked(grid, 640)  # warm-up: allocator and oneDNN primitives
    t_stacked = stacked(grid, args.samples)
    t_authors = authors_style(grid, noisy, args.samples)
    work = runs * args.samples
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {runs} runs x "
          f"{args.samples} samples")
    print(f"authors' style (one run at a time, DataLoader of PIL images): {t_authors:7.1f} s  "
          f"{work / t_authors:8.0f} samples*runs/s")
    print(f"stacked (all runs at once):                                {t_stacked:7.1f} s  "
          f"{work / t_stacked:8.0f} samples*runs/s")
    print(f"speed-up: {t_authors / t_stacked:.2f}x")


if __name__ == "__main__":
    main()
