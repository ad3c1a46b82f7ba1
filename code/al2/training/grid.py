"""Training a whole grid at once (paper Sec. 4, Table 1, Fig. 1): the epoch loop and its files.

code/train.py -> train_grid -> Trainer.train_epoch -> Trainer.step -> loss.al2_loss (Eq. 1).
Each epoch: train every run on the same shuffled minibatches, evaluate every run on the test
set, read the metrics back once, write metrics.csv, and at checkpoint epochs the checkpoints.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..paths import shown
from .config import GridConfig, GridError
from .data import load_grid_data
from .device import environment, select_device, set_cudnn_benchmark, set_tf32
from .folder import AFRESH, GridFolder
from .plan import label_seeds
from .records import METRIC_COLUMNS, EpochRecorder, check_finite, metrics_rows
from .shards import shard_runs
from .stack import Trainer


@dataclass
class Part:
    """The state of one training call: the whole grid, or one shard of it, at one noise level."""
    grid: GridConfig
    folder: GridFolder
    runs: list
    trainer: Trainer
    weights: torch.Tensor             # (epochs, R): w_e per run
    recorder: EpochRecorder
    history: list
    start_epoch: int
    t0: float                         # the trainer's clock: perf_counter() - seconds so far
    position: dict | None = None      # epoch start_epoch + 1 stopped part-way (a signal)


@dataclass
class TrainOptions:
    """How one call trains a grid; none of it changes a number (train.py's flags).

    cuda_graph: on CUDA, replay the training step as a captured graph (speed.graph.StaticStep);
    False runs it eagerly. trunk: how the trunk is computed (StackedLeNet.TRUNKS, the same
    function); optimizer: "torch", "flat" or "auto", the same rule (stack.Trainer);
    cudnn_benchmark: let cuDNN time its algorithms (device.set_cudnn_benchmark); these are
    recorded in config.json's environment. time_budget_s: stop after the epoch past which
    the next one would not fit in this many seconds of this call, with a checkpoint of every run
    at that epoch; --resume continues later. shard (K, N): train only shard K of N (shards.py)
    into the grid's folder. on_epoch_end(epoch, rows) is called after each epoch's files are
    written (tests use it to interrupt a grid). stop (stopping.StopOnSignal): once it asks, the
    step under way finishes, the exact state goes to the resume file and the call returns with
    "signal" set (the signal's name) and "stopped_at" (epoch, step)."""
    device: str = "auto"
    resume: bool = False
    command: str = ""
    progress: bool = True
    data_root: str | Path = "data"
    cuda_graph: bool = True
    trunk: str = "grouped"
    optimizer: str = "auto"
    cudnn_benchmark: bool = False
    time_budget_s: float | None = None
    shard: tuple[int, int] | None = None
    on_epoch_end: Callable | None = None
    stop: object = None


def train_grid(grid: GridConfig, out: Path, options: TrainOptions | None = None,
               **settings) -> dict:
    """Train every run of `grid`, writing run folders under `out`, as `options` say (or
    TrainOptions(**settings)). Returns a summary dict."""
    o = options if options is not None else TrainOptions(**settings)
    grid.validate()
    folder, dev = GridFolder(out), select_device(o.device)
    set_tf32(grid.tf32)
    set_cudnn_benchmark(o.cudnn_benchmark)
    runs = grid.runs() if o.shard is None else shard_runs(grid.runs(), *o.shard)
    resumed = folder.check(grid, o.resume, o.shard)
    call_start, done, stopped_at, final = time.perf_counter(), 0, None, {}
    signal = None
    with folder.lock_part(o.shard):  # a second process on this part is refused
        for level in dict.fromkeys(r.level for r in runs):  # a noise sweep: a stack per level
            part_runs = [r for r in runs if r.level == level]
            part = start_part(grid, folder, dev, part_runs, level, resumed, o)
            stopped_at, done = train_epochs(part, o, call_start, done)
            final.update({r.name: h[-1] for r, h in zip(part_runs, part.history)})
            if stopped_at is not None:
                signal = o.stop.requested if o.stop is not None else None
                break
        if stopped_at is None:
            folder.mark_done(o.shard, runs, grid.epochs)
    return {"runs": [r.name for r in runs], "epochs": grid.epochs, "device": str(dev),
            "wall_time_s": time.perf_counter() - call_start, "stopped_at": stopped_at,
            "signal": signal, "final": final}


def start_part(grid, folder: GridFolder, dev, runs, level, resumed, o: TrainOptions) -> Part:
    """The trainer of one stack of runs (labels of noise level `level`), fresh or restored
    from its resume file, then the grid's files and config.json. Everything a resume reads is
    read and checked before anything is written."""
    state_file = folder.resume_file(o.shard, None if len(grid.levels()) == 1 else level)
    data = load_grid_data(grid, dev, o.data_root, level, label_seeds(runs))
    trainer = Trainer(grid, runs, data, trunk=o.trunk, cuda_graph=o.cuda_graph,
                      optimizer=o.optimizer)
    history, start_epoch, wall_before, configs, position = [[] for _ in runs], 0, 0.0, {}, None
    if resumed and state_file.exists():
        state = folder.read_resume(state_file, runs)
        configs = folder.read_run_configs(runs)
        try:
            trainer.load_state_dict(state)
        except (RuntimeError, ValueError, KeyError, TypeError):
            raise GridError(f"resume file {shown(state_file)} does not fit this grid's runs; "
                            f"{AFRESH}") from None
        history, start_epoch, wall_before = state["history"], state["epoch"], state["wall_time_s"]
        position = state.get("partial")  # older resume files: always at an epoch's end
        if position is not None and not trainer.fits_position(position):
            raise GridError(f"resume file {shown(state_file)} is damaged (its partial epoch "
                            f"does not fit this grid's runs); {AFRESH}")
    folder.prepare(grid, o.shard, data, level, runs)
    env = {**environment(dev), "cuda_graph": trainer.uses_graph, "trunk": o.trunk,
           "optimizer": trainer.optimizer,
           "shard": None if o.shard is None else f"{o.shard[0]}/{o.shard[1]}"}
    if trainer.graph_error:  # asked for, failed, trained eagerly
        env["cuda_graph_error"] = trainer.graph_error
    folder.write_run_configs(runs, o.command, env, data, configs, start_epoch, METRIC_COLUMNS)
    recorder = EpochRecorder(folder, grid, runs, history, data.test_x[:grid.activation_images],
                             state_file)
    return Part(grid, folder, runs, trainer, trainer.plan.al2_weights(grid, dev), recorder,
                history, start_epoch, time.perf_counter() - wall_before, position)


def train_epochs(part: Part, o: TrainOptions, call_start: float,
                 done: int) -> tuple[int | tuple | None, int]:
    """Epochs start_epoch + 1 .. grid.epochs. Returns (where it stopped or None: the epoch a
    time budget or a signal stopped after, or (epoch, step) for a signal inside an epoch;
    epochs trained in this call so far, `done` of them before this part)."""
    g, p, t = part.grid, part, part.trainer
    if not p.history[0]:  # row 0: the initialisation, before any training
        rows = epoch_rows(t, 0, None, torch.full((len(p.runs),), math.nan), p.t0)
        p.recorder.record(0, rows, t, time.perf_counter() - p.t0)
        if o.on_epoch_end:
            o.on_epoch_end(0, rows)
    bar = progress_bar(range(p.start_epoch + 1, g.epochs + 1), p.start_epoch, g.epochs,
                       len(p.runs), o.progress)
    for epoch in bar:
        i = epoch - 1  # zero-based index of the epoch being trained, as in get_map_weights
        sums = t.train_epoch(i, p.weights[i], stop=o.stop,
                             position=p.position if epoch == p.start_epoch + 1 else None)
        if "partial" in sums:  # a signal: the exact state, then stop
            p.recorder.save_state(epoch - 1, t, time.perf_counter() - p.t0, sums["partial"])
            return (epoch, sums["partial"]["steps"]), done
        rows = epoch_rows(t, epoch, sums, p.weights[i], p.t0)
        check_finite(rows, p.runs, epoch, p.folder)
        p.recorder.record(epoch, rows, t, time.perf_counter() - p.t0)
        if o.progress:
            bar.set_postfix_str(progress_summary(p.runs, rows))
        if o.on_epoch_end:
            o.on_epoch_end(epoch, rows)
        done += 1
        if epoch < g.epochs and o.stop is not None and o.stop.check():
            if epoch not in p.recorder.checkpoint_epochs:  # else resume.pt is this epoch's
                p.recorder.save_state(epoch, t, time.perf_counter() - p.t0)
            return epoch, done
        if epoch < g.epochs and out_of_budget(o.time_budget_s, call_start, done):
            if epoch not in p.recorder.checkpoint_epochs:  # every run's state at the stop
                p.recorder.save_checkpoints(epoch, t, time.perf_counter() - p.t0)
            return epoch, done
    return None, done


def out_of_budget(budget_s: float | None, start: float, epochs_done: int) -> bool:
    """Whether one more epoch, at this call's mean epoch time so far, would pass the budget."""
    if budget_s is None or epochs_done == 0:
        return False
    elapsed = time.perf_counter() - start
    return elapsed + elapsed / epochs_done > budget_s


def epoch_rows(trainer: Trainer, epoch: int, sums: dict | None, al2_weight: torch.Tensor,
               t0: float) -> list[dict]:
    """The epoch's metrics per run: test accuracy and loss of every run (one batched pass), the
    same on the noisy validation set if there is one, and the training sums (read back once per
    epoch by Trainer.train_epoch)."""
    acc, loss = trainer.test()
    val = trainer.validate()
    val = None if val is None else (val[0].tolist(), val[1].tolist())
    return metrics_rows(epoch, acc.tolist(), loss.tolist(), sums, al2_weight.tolist(),
                        time.perf_counter() - t0, val)


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
