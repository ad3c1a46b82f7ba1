"""Training a whole grid at once (paper Sec. 4, Table 1, Fig. 1): the epoch loop.

code/train.py -> train_grid -> engine.train_epoch -> engine.train_step -> loss.al2_loss (Eq. 1).
Each epoch: train every run on the same shuffled minibatches, evaluate every run on the test
set, read the metrics back once, write metrics.csv, and at checkpoint epochs the checkpoints.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch

from .config import GridConfig, RunSpec
from .data import load_grid_data
from .device import environment, select_device, set_tf32
from .engine import (ORDER_STREAM, StaticStep, dropout_generators, epoch_generator,
                     stacked_runs, train_epoch)
from .inference import evaluate_stacked
from .outputs import (EpochRecorder, check_finite, check_out_dir, load_resume, metrics_rows,
                      write_grid_files, write_run_configs)
from .schedule import get_map_weights


def al2_weights(grid: GridConfig, runs: list[RunSpec], device: torch.device) -> torch.Tensor:
    """(epochs, R): w_e = get_map_weights(...)[e] for AL2 runs in training epoch e + 1
    (zero-based e, as the authors index it), 0 for runs without AL2."""
    w = torch.tensor(get_map_weights(grid.epochs, grid.map_start, grid.map_threshold,
                                     grid.map_fac1, grid.map_fac2), dtype=torch.float32)
    uses_al2 = torch.tensor([float(r.use_al2) for r in runs])
    return (w[:, None] * uses_al2).to(device)


def train_grid(grid: GridConfig, out: Path, device: str = "auto", resume: bool = False,
               command: str = "", progress: bool = True, data_root="data",
               on_epoch_end=None, cuda_graph: bool = True,
               time_budget_s: float | None = None) -> dict:
    """Train every run of `grid`, writing run folders under `out`. Returns a summary dict.

    cuda_graph: on CUDA, replay the training step as a captured graph (engine.StaticStep);
    False runs it eagerly. time_budget_s: stop after the epoch past which the next one would
    not fit in this many seconds of this call, with a checkpoint of every run at that epoch;
    --resume continues later. on_epoch_end(epoch, rows) is called after each epoch's files are
    written (tests use it to interrupt a grid)."""
    grid.validate()
    out, dev = Path(out), select_device(device)
    set_tf32(grid.tf32)
    holds_grid = check_out_dir(out, grid, resume)
    runs = grid.runs()
    data = load_grid_data(grid, dev, data_root)
    model, params, buffers, wd = stacked_runs(runs, dev)
    weights = al2_weights(grid, runs, dev)                                # (epochs, R)
    resumed = holds_grid and (out / "resume.pt").exists()
    if resumed:
        history, start_epoch, wall_before = load_resume(out, model, buffers, dev)
    else:
        history, start_epoch, wall_before = [[] for _ in runs], 0, 0.0
        write_grid_files(out, grid, data)
    step = StaticStep(model, params, buffers, data, grid.batch_size, grid.lr, grid.momentum,
                      wd, graph=True) if dev.type == "cuda" and cuda_graph else None
    write_run_configs(out, runs, command, {**environment(dev), "cuda_graph": step is not None},
                      data, resumed)
    recorder = EpochRecorder(out, grid, runs, history, data.test_x[:grid.activation_images])
    t0 = time.perf_counter() - wall_before
    call_start, stopped_at = time.perf_counter(), None
    if not history[0]:  # row 0: the initialisation, before any training
        rows = epoch_rows(model, data, 0, None, 0, torch.full((len(runs),), math.nan), t0)
        recorder.record(0, rows, model, buffers, time.perf_counter() - t0)
        if on_epoch_end:
            on_epoch_end(0, rows)
    bar = progress_bar(range(start_epoch + 1, grid.epochs + 1), start_epoch, grid.epochs,
                       len(runs), progress)
    for epoch in bar:
        i = epoch - 1  # zero-based index of the epoch being trained, as in get_map_weights
        sums, batches = train_epoch(model, params, buffers, data, grid.batch_size, grid.lr,
                                    grid.momentum, weights[i], wd,
                                    epoch_generator(grid.order_seed, i, ORDER_STREAM, dev),
                                    dropout_generators(runs, grid.dropout_seed, i, dev),
                                    step=step)
        rows = epoch_rows(model, data, epoch, sums, batches, weights[i], t0)
        check_finite(rows, runs, epoch, out)
        recorder.record(epoch, rows, model, buffers, time.perf_counter() - t0)
        if progress:
            bar.set_postfix_str(progress_summary(runs, rows))
        if on_epoch_end:
            on_epoch_end(epoch, rows)
        if out_of_budget(time_budget_s, call_start, epoch - start_epoch) and epoch < grid.epochs:
            if epoch not in recorder.checkpoint_epochs:  # every run's state at the stop
                recorder.save_checkpoints(epoch, model, buffers, time.perf_counter() - t0)
            stopped_at = epoch
            break
    return {"runs": [r.name for r in runs], "epochs": grid.epochs, "device": str(dev),
            "wall_time_s": time.perf_counter() - t0, "stopped_at": stopped_at,
            "final": {r.name: h[-1] for r, h in zip(runs, history)}}


def out_of_budget(budget_s: float | None, start: float, epochs_done: int) -> bool:
    """Whether one more epoch, at this call's mean epoch time so far, would pass the budget."""
    if budget_s is None or epochs_done == 0:
        return False
    elapsed = time.perf_counter() - start
    return elapsed + elapsed / epochs_done > budget_s


def epoch_rows(model, data, epoch: int, sums, batches: int, al2_weight: torch.Tensor,
               t0: float) -> list[dict]:
    """The epoch's metrics per run: test accuracy and loss of every run (one batched pass),
    the training sums read back: the epoch's one host sync."""
    acc, loss = evaluate_stacked(model, data.test_x, data.test_y)
    return metrics_rows(epoch, acc.tolist(), loss.tolist(),
                        None if sums is None else sums.tolist(), batches, len(data.train_x),
                        al2_weight.tolist(), time.perf_counter() - t0)


def progress_bar(epochs, start: int, total: int, runs: int, show: bool):
    if not show:
        return epochs
    from tqdm import tqdm
    return tqdm(epochs, initial=start, total=total, unit="epoch", file=sys.stderr,
                desc=f"{runs} runs")


def progress_summary(runs, rows) -> str:
    """'plain TA 25.1-31.0 Lr 1.2 | al2 TA 68.2-90.3 Lr 0.003': the two groups' ranges."""
    parts = []
    for flag, label in ((False, "plain"), (True, "al2")):
        group = [row for r, row in zip(runs, rows) if r.use_al2 == flag]
        if group:
            ta = [g["test_acc"] for g in group]
            lr = [g["train_Lr"] for g in group]
            parts.append(f"{label} TA {min(ta):.1f}-{max(ta):.1f} Lr {max(lr):.3g}")
    return " | ".join(parts)
