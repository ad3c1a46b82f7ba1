"""A linear probe of each trunk (beyond the paper): "more general representations" (Sec. 5.1)
read directly, as representations from which the true classes can be read off by a linear
classifier fitted on a few clean labels.

For each run at each of Table 1's epoch columns: the trunk's 800 features of the first
`images` training images with their clean labels (a small trusted set, as the noisy-label
literature assumes one), standardised per feature with the trusted set's own mean and sd (scale
free: AL2 shrinks the activations, and the probe must not read their scale as their quality),
a multinomial logistic regression fitted to them (L-BFGS in float64 to convergence, the L2
penalty of scikit-learn's default, C = 1), and its accuracy on the grid's test images,
standardised the same way. Each run is probed alone: its result depends on nothing else.

    probe.csv   per run and epoch: the probe's accuracy on its trusted set and on the test set
    probe.md    per baseline and epoch: without and with AL2, and AL2 - plain paired within a
                replicate (its 95% t-interval and in how many replicates AL2 is ahead)
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from svcca.batched import one_torch_thread

from ..files import significant
from ..training.data import NUM_CLASSES
from ..training.inference import trunk_chunk, trunk_features
from .replicates import fmt_mean_sd, interval_text, pairs, t_interval
from .report import table_columns
from .runs import grid_order

if TYPE_CHECKING:
    from .output import Evaluation, Settings

CPU = torch.device("cpu")  # where a probe is fitted (one_torch_thread holds the CPU's threads)
PENALTY_C = 1.0          # L2 penalty 1 / (2 C) ||W||^2 on the summed loss: scikit-learn's default
POOL_FROM = 40 * 1000    # fits x images from which FitPool's worker processes pay (write_probe)
PROBE_COLUMNS = ["run", "baseline", "al2", "seed", "replicate", "level", "epoch", "images",
                 "train_acc", "test_acc"]


def standardise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, D), (m, D) -> both standardised with the first's per-feature mean and sd (a constant
    feature, a dead unit's, stays 0)."""
    mean, sd = train.mean(0), train.std(0)
    sd = torch.where(sd > 0, sd, torch.ones_like(sd))
    return (train - mean) / sd, (test - mean) / sd


def fit_probe(x: torch.Tensor, y: torch.Tensor, c: float = PENALTY_C,
              iterations: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression on x (n, D), y (n,): the minimiser (W (D, 10), b (10,))
    of sum_i -log softmax(x_i W + b)[y_i] + ||W||^2 / (2 c), by L-BFGS in float64 (strictly
    convex: one optimum, which L-BFGS reaches from zero). It stops when a step changes the loss
    by less than 1e-9: on the quick grid's trunks the loss is then within 1e-8 of its value at
    a 1e-12 stop and no test prediction differs (3x faster)."""
    x = x.double()
    w = torch.zeros(x.shape[1], NUM_CLASSES, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(NUM_CLASSES, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iterations, history_size=20,
                            tolerance_grad=1e-6, tolerance_change=1e-9,
                            line_search_fn="strong_wolfe")

    def objective():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y, reduction="sum") + w.pow(2).sum() / (2 * c)
        loss.backward()
        return loss

    with one_torch_thread(CPU):  # a small problem: more threads only wait for each other
        opt.step(objective)    # (measured: 2.2 ms an evaluation on 1 thread, 40 on 2 busy cores)
    return w.detach(), b.detach()


def accuracy(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    return 100.0 * ((x.double() @ w + b).argmax(1) == y).double().mean().item()


def probe_run(train: torch.Tensor, train_y, test: torch.Tensor, test_y) -> tuple[float, float]:
    """One trunk's features (n, 800) and (m, 800) -> the probe's (trusted-set, test) accuracy."""
    with one_torch_thread(CPU), torch.enable_grad():   # the same bits alone or in a FitPool
        train, test = standardise(train.double(), test.double())
        w, b = fit_probe(train, train_y)
        return accuracy(w, b, train, train_y), accuracy(w, b, test, test_y)


def _call(fit_and_job):
    fit, job = fit_and_job
    return fit(*job)


def _start_worker() -> None:
    """A FitPool worker's start: one torch thread; naming this function makes the worker
    import this module (and torch) while the caller computes the first trunk features."""
    torch.set_num_threads(1)


class FitPool:
    """Probe fits, `workers` at a time (default: one per thread torch may use, i.e. per core):
    `with FitPool() as pool: pool.map(fit, jobs)` is [fit(*job) for job in jobs].

    Fast path: the fits are independent and each runs on one thread (one_torch_thread), so they run
    in worker processes side by side, each computing exactly what it computes alone, bit for
    bit (tests/test_evaluate.py). Processes, not threads: L-BFGS holds the GIL between its
    small kernels (2-core Xeon, 10 fits, after the start: threads 1.55-1.66x the plain loop,
    processes 1.74-2.14x).
    Spawned, not forked (a fork copies torch's thread pools in a state they cannot run from),
    once per evaluation: their start (~3 s) overlaps the first trunk pass. With one worker or
    one job it is the plain loop."""

    def __init__(self, workers: int | None = None):
        self.workers = workers or torch.get_num_threads()
        self.pool = None

    def __enter__(self):
        if self.workers > 1:
            self.pool = ProcessPoolExecutor(self.workers, multiprocessing.get_context("spawn"),
                                            initializer=_start_worker)
            self.pool.submit(int)                   # start the workers now
        return self

    def map(self, fit, jobs: list[tuple]) -> list:
        if self.pool is None or len(jobs) <= 1:
            return [fit(*job) for job in jobs]
        return list(self.pool.map(_call, [(fit, job) for job in jobs]))

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.shutdown()


@torch.no_grad()
def probe_rows(ev: "Evaluation", epochs: list[int], images: int, pool: FitPool) -> list[dict]:
    """probe.csv's rows: every run at each of `epochs` it has, on the first `images` training
    images (clean labels) and the grid's test images, fitted on `pool`."""
    train_x, train_y = ev.images("train", min(images, ev.grid.train_images()))
    test_x, test_y = ev.images("test", ev.grid.test_subset or 10000)
    rows = []
    for epoch in epochs:
        model, kept = ev.stack([r for r in ev.runs if r.epochs >= epoch], epoch,
                               trunk_only=True)
        if model is None:
            continue
        # images per pass as the ablation's (trunk_chunk: 16 for 40 runs instead of 64): the
        # same bits; the 40-run grid's trunk passes 88 -> 72 s (2-core Xeon)
        chunk = trunk_chunk(train_x.device, len(kept))
        train_f = trunk_features(model, train_x, chunk).cpu()
        test_f = trunk_features(model, test_x, chunk).cpu()
        # each run's features as a tensor of its own: a worker is sent that, not the stack
        fits = pool.map(probe_run, [(train_f[j].contiguous(), train_y.cpu(),
                                     test_f[j].contiguous(), test_y.cpu())
                                    for j in range(len(kept))])     # (R, n, 800) each
        for r, (fit, test) in zip(kept, fits):
            rows.append({"run": r.name, "baseline": r.baseline, "al2": r.use_al2,
                         "seed": r.seed, "replicate": r.replicate, "level": r.level,
                         "epoch": epoch, "images": len(train_x),
                         "train_acc": significant(fit, 7), "test_acc": significant(test, 7)})
    return rows


def probe_markdown(ev: "Evaluation", rows: list[dict]) -> str:
    """Per baseline and epoch: the probe's test accuracy without and with AL2 (mean ± sd (n)),
    and AL2 - plain paired within a replicate."""
    acc = {(r["run"], r["epoch"]): r["test_acc"] for r in rows}
    epochs = sorted({r["epoch"] for r in rows})
    lines = ["### A linear probe of the trunk (beyond the paper)", "",
             f"Test accuracy (%) of a multinomial logistic regression fitted on the trunk's "
             f"standardised features of {rows[0]['images']:,} training images with their clean "
             f"labels. Without / with AL2: mean ± sd (n runs); AL2 − plain: paired within a "
             f"replicate, its 95% t-interval, in how many replicates AL2 is ahead.", "",
             "| noise | baseline | epoch | without AL2 | with AL2 | AL2 − plain |",
             "|---|---|---|---|---|---|"]
    for (level, baseline), matched in pairs(sorted(ev.runs, key=grid_order)).items():
        for epoch in epochs:
            plain = [acc.get((a.name, epoch)) for a, _ in matched]
            al2 = [acc.get((b.name, epoch)) for _, b in matched]
            if None in plain or None in al2:
                continue
            ci = t_interval([b - a for a, b in zip(plain, al2)])
            lines.append(f"| {level:g}% | {baseline.upper()} | {epoch} | {fmt_mean_sd(plain)} | "
                         f"{fmt_mean_sd(al2)} | {interval_text(ci)} |")
    return "\n".join(lines) + "\n"


def write_probe(ev: "Evaluation", s: "Settings") -> None:
    """probe.csv/.md at epoch 0 (the initialisation) and Table 1's epoch columns, those that
    every run has a checkpoint of."""
    saved = set.intersection(*(set(r.saved_config.get("checkpoint_epochs", []))
                               for r in ev.runs))
    epochs = [e for e in dict.fromkeys([0] + [e for e, _ in table_columns(ev.runs)])
              if e in saved]
    images = min(s.probe_images, ev.grid.train_images())
    # the workers' start (~3 s) pays only for enough work: from about 40 fits on 1,000 images
    # (~0.6 s each one after another on a 2-core Xeon); fewer, smaller fits run in this process
    few = len(ev.runs) * len(epochs) * images < POOL_FROM
    with FitPool(workers=1 if few else None) as pool:
        rows = probe_rows(ev, epochs, s.probe_images, pool)
    if rows:
        ev.save_csv(rows, "probe.csv", PROBE_COLUMNS)
        ev.save_text(probe_markdown(ev, rows), "probe.md")
