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
from .device import environment, select_device, set_cudnn_benchmark, set_threads, set_tf32
from .folder import AFRESH, GridFolder
from .plan import label_seeds
from .records import (EpochRecorder, check_finite, epoch_rows,
                      progress_summary)
from .shards import shard_runs
from .stack import Trainer


class Clock:
    """The training call's clock: its start and the epochs it has trained, in every part."""

    def __init__(self):
        self.start, self.epochs = time.perf_counter(), 0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def out_of_budget(self, budget_s: float | None) -> bool:
        """Whether one more epoch, at this call's mean epoch time so far, would pass the
        budget."""
        if budget_s is None or self.epochs == 0:
            return False
        elapsed = self.elapsed()
        return elapsed + elapsed / self.epochs > budget_s


@dataclass
class Part:
    """The state of one training call: the whole grid, or one shard of it, at one noise level."""
    grid: GridConfig
    folder: GridFolder
    runs: list
    trainer: Trainer
    recorder: EpochRecorder
    history: list
    start_epoch: int
    t0: float                         # the trainer's clock: perf_counter() - seconds so far
    position: dict | None = None      # epoch start_epoch + 1 stopped part-way (a signal)
    bar: object = None                # the progress bar, when shown

    def wall(self) -> float:
        return time.perf_counter() - self.t0

    def epochs(self, o: "TrainOptions"):
        """Epochs start_epoch + 1 .. grid.epochs (with a progress bar when o.progress), after
        row 0, the initialisation before any training, if it is not written yet."""
        if not self.history[0]:
            rows = epoch_rows(self.trainer, 0, None, torch.full((len(self.runs),), math.nan),
                              self.t0)
            self.recorder.record(0, rows, self.trainer, self.wall())
            if o.on_epoch_end:
                o.on_epoch_end(0, rows)
        epochs = range(self.start_epoch + 1, self.grid.epochs + 1)
        if not o.progress:
            return epochs
        from tqdm import tqdm
        self.bar = tqdm(epochs, initial=self.start_epoch, total=self.grid.epochs, unit="epoch",
                        file=sys.stderr, desc=f"{len(self.runs)} runs")
        return self.bar

    def position_at(self, epoch: int) -> dict | None:
        """Where a signal stopped inside `epoch`, to continue it there (the first epoch only)."""
        return self.position if epoch == self.start_epoch + 1 else None

    def end_epoch(self, epoch: int, sums: dict, o: "TrainOptions",
                  clock: Clock) -> int | tuple | None:
        """After Trainer.train_epoch: the epoch's metrics and files, then whether to stop: None
        to go on, else where it stopped: (epoch, step) inside an epoch (a signal: the exact state
        is saved), or the epoch after which a signal or the time budget stops the call."""
        t = self.trainer
        if "partial" in sums:
            self.recorder.save_state(epoch - 1, t, self.wall(), sums["partial"])
            return epoch, sums["partial"]["steps"]
        rows = epoch_rows(t, epoch, sums, t.weights[epoch - 1], self.t0)
        check_finite(rows, self.runs, epoch, self.folder)
        self.recorder.record(epoch, rows, t, self.wall())
        if self.bar is not None:
            self.bar.set_postfix_str(progress_summary(self.runs, rows))
        if o.on_epoch_end:
            o.on_epoch_end(epoch, rows)
        clock.epochs += 1
        if epoch == self.grid.epochs:
            return None
        checkpointed = epoch in self.recorder.checkpoint_epochs  # resume.pt is this epoch's
        if o.stop is not None and o.stop.check():
            if not checkpointed:
                self.recorder.save_state(epoch, t, self.wall())
            return epoch
        if clock.out_of_budget(o.time_budget_s):
            if not checkpointed:  # every run's state at the stop
                self.recorder.save_checkpoints(epoch, t, self.wall())
            return epoch
        return None


# what config.json's environment records of the step when no speed variant is installed
PLAIN_STEP = {"cuda_graph": False, "trunk": "grouped", "optimizer": "torch"}


@dataclass
class TrainOptions:
    """How one call trains a grid (train.py's flags). The numbers are the grid's (GridConfig);
    these say how they are computed and kept. Only a speed variant can move them, and only in the
    last bits (al2.speed.trunks: another kernel rounds differently).

    speed: installs speed variants on each new Trainer and returns what it installed for
    config.json's environment (al2.speed.variants.Variants: other trunk kernels, the flat
    optimiser, a CUDA graph); None: the plain step. threads: the CPU threads (device.set_threads:
    else Slurm's CPUs per task, else every core). time_budget_s: stop after the epoch past
    which the next one would not fit in this many seconds of this call, with a checkpoint of
    every run at that epoch; --resume continues later. shard (K, N): train only shard K of N
    (shards.py) into the grid's folder. on_epoch_end(epoch, rows) is called after each epoch's
    files are written (tests use it to interrupt a grid). stop (stopping.StopOnSignal): once it
    asks, the step under way finishes, the exact state goes to the resume file and the call
    returns with "signal" set (the signal's name) and "stopped_at" (epoch, step)."""
    device: str = "auto"
    resume: bool = False
    command: str = ""
    progress: bool = True
    data_root: str | Path = "data"
    speed: Callable | None = None
    cudnn_benchmark: bool = False
    threads: int | None = None
    time_budget_s: float | None = None
    shard: tuple[int, int] | None = None
    on_epoch_end: Callable | None = None
    stop: object = None


def train_grid(grid: GridConfig, out: Path, options: TrainOptions | None = None,
               **settings) -> dict:
    """Train every run of `grid`, writing run folders under `out`, as `options` say (or
    TrainOptions(**settings)): for each noise level a stack of its runs (start_part), then its
    epochs: Trainer.train_epoch trains one, Part.end_epoch writes it and says whether to stop.
    Returns a summary dict."""
    o = options if options is not None else TrainOptions(**settings)
    grid.validate()
    runs = grid.runs() if o.shard is None else shard_runs(grid.runs(), *o.shard)
    folder, dev = GridFolder(out), select_device(o.device)
    set_threads(o.threads)
    set_tf32(grid.tf32)
    set_cudnn_benchmark(o.cudnn_benchmark)
    resumed = folder.check(grid, o.resume, o.shard)
    clock, stopped_at, final = Clock(), None, {}
    with folder.lock_part(o.shard):  # a second process on this part is refused
        for level in dict.fromkeys(r.level for r in runs):  # a noise sweep: a stack per level
            part = start_part(grid, folder, dev, [r for r in runs if r.level == level], level,
                              resumed, o)
            t = part.trainer
            for epoch in part.epochs(o):
                sums = t.train_epoch(epoch - 1, t.weights[epoch - 1], stop=o.stop,
                                     position=part.position_at(epoch))
                stopped_at = part.end_epoch(epoch, sums, o, clock)
                if stopped_at is not None:
                    break
            final.update({r.name: h[-1] for r, h in zip(part.runs, part.history)})
            if stopped_at is not None:
                break
        if stopped_at is None:
            folder.split.mark_done(o.shard, runs, grid.epochs)
    signal = o.stop.requested if stopped_at is not None and o.stop is not None else None
    return {"runs": [r.name for r in runs], "epochs": grid.epochs, "device": str(dev),
            "wall_time_s": clock.elapsed(), "stopped_at": stopped_at, "signal": signal,
            "final": final}


def start_part(grid, folder: GridFolder, dev, runs, level, resumed, o: TrainOptions) -> Part:
    """The trainer of one stack of runs (labels of noise level `level`), fresh or restored
    from its resume file, then the grid's files and config.json. Everything a resume reads is
    read and checked before anything is written."""
    state_file = folder.resume_file(o.shard, None if len(grid.levels()) == 1 else level)
    data = load_grid_data(grid, dev, o.data_root, level, label_seeds(runs))
    trainer = Trainer(grid, runs, data)
    installed = o.speed(trainer) if o.speed is not None else {}   # before a resume fills it
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
    # what a variant installed replaces PLAIN_STEP's entries in place; a failed capture's
    # "cuda_graph_error" comes last
    env = {**environment(dev), **PLAIN_STEP,
           "shard": None if o.shard is None else f"{o.shard[0]}/{o.shard[1]}", **installed}
    folder.write_run_configs(runs, o.command, env, data, configs, start_epoch)
    recorder = EpochRecorder(folder, grid, runs, history, data.test_x[:grid.activation_images],
                             state_file)
    return Part(grid, folder, runs, trainer, recorder, history, start_epoch,
                time.perf_counter() - wall_before, position)
