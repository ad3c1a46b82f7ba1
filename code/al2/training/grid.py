"""Training a whole grid at once (paper Sec. 4, Table 1, Fig. 1): the epoch loop and its files.

code/train.py -> train_grid -> Trainer.train -> Trainer.step -> loss.eq1 (Eq. 1).
Each epoch: train every run on the same shuffled minibatches, evaluate every run on the test
set, read the metrics back once, write metrics.csv, and at checkpoint epochs the checkpoints.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


from ..paths import shown
from .config import GridConfig, GridError
from .data import load_grid_data
from .device import environment, select_device, set_cudnn_benchmark, set_threads, set_tf32
from .portable import apply as apply_portable
from .folder import AFRESH, GridFolder
from .plan import label_seeds
from .records import EpochRecorder, check_finite, epoch_rows, progress_summary
from .shards import shard_runs
from .stack import Trainer


@dataclass
class Part:
    """One stack of a training call (the whole grid, or one shard of it, at one noise level)
    and where it stands: its trainer, its files' writer, every run's rows so far, the last
    complete epoch and, after a signal, the position inside the next one."""
    grid: GridConfig
    folder: GridFolder
    runs: list
    trainer: Trainer
    recorder: EpochRecorder
    history: list
    start_epoch: int
    t0: float                         # the trainer's clock: perf_counter() - seconds so far
    position: dict | None = None      # epoch start_epoch + 1 stopped part-way (a signal)

    def wall(self) -> float:
        return time.perf_counter() - self.t0


def record_epoch(part: Part, epoch: int, sums: dict | None, o: "TrainOptions") -> list[dict]:
    """After epoch `epoch` (0: the initialisation, before any training): test every run, then
    its row of metrics.csv and at checkpoint epochs its checkpoint. Returns the rows."""
    t = part.trainer
    rows = epoch_rows(t, epoch, sums, t.al2_weight(epoch), part.t0)
    check_finite(rows, part.runs, epoch, part.folder)
    part.recorder.record(epoch, rows, t, part.wall())
    if o.on_epoch_end:
        o.on_epoch_end(epoch, rows)
    return rows


def stop_after(part: Part, epoch: int, o: "TrainOptions", started: float, trained: int) -> bool:
    """Whether the call stops after epoch `epoch` (not the grid's last): a stop signal came,
    or one more epoch at this call's mean epoch time would pass the time budget. The state
    at the stop is saved: the resume state for a signal, every run's checkpoint for the
    budget (nothing more at a checkpoint epoch, which has both)."""
    if epoch == part.grid.epochs:
        return False
    signal = o.stop is not None and o.stop.check()
    budget = past_budget(time.perf_counter() - started, trained, o.time_budget_s)
    if (signal or budget) and epoch not in part.recorder.checkpoint_epochs:
        save = part.recorder.save_state if signal else part.recorder.save_checkpoints
        save(epoch, part.trainer, part.wall())
    return signal or budget


def past_budget(elapsed: float, trained: int, budget_s: float | None) -> bool:
    """Whether one more epoch, at the mean time of the `trained` epochs so far, would pass the
    budget (train.py --time-budget)."""
    return budget_s is not None and elapsed + elapsed / trained > budget_s


def epoch_range(part: Part, o: "TrainOptions"):
    """Epochs start_epoch + 1 .. grid.epochs, with a progress bar when o.progress."""
    epochs = range(part.start_epoch + 1, part.grid.epochs + 1)
    if not o.progress:
        return epochs
    from tqdm import tqdm
    return tqdm(epochs, initial=part.start_epoch, total=part.grid.epochs, unit="epoch",
                file=sys.stderr, desc=f"{len(part.runs)} runs")


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
    TrainOptions(**settings)): for each noise level a stack of its runs (start_part); its row
    0 if new; then per epoch: train, test and record, and one check whether to stop. Epochs
    count from 1 as metrics.csv does (row 0: the initialisation). Returns a summary dict."""
    o = options if options is not None else TrainOptions(**settings)
    grid.validate()
    runs = grid.runs() if o.shard is None else shard_runs(grid.runs(), *o.shard)
    folder, dev = GridFolder(out), select_device(o.device)
    if grid.portable and dev.type == "cpu":
        apply_portable(o.threads)  # AVX2 kernels everywhere, ATen's convolutions, 2 threads
    else:
        set_threads(o.threads)
    set_tf32(grid.tf32)
    set_cudnn_benchmark(o.cudnn_benchmark)
    resumed = folder.check(grid, o.resume, o.shard)
    started, trained, stopped_at, final = time.perf_counter(), 0, None, {}
    with folder.lock_part(o.shard):  # a second process on this part is refused
        for level in dict.fromkeys(r.level for r in runs):  # a noise sweep: a stack per level
            part = start_part(grid, folder, dev, [r for r in runs if r.level == level], level,
                              resumed, o)
            t = part.trainer
            if not part.history[0]:
                record_epoch(part, 0, None, o)
            bar = epoch_range(part, o)
            for epoch in bar:
                sums = t.train(epoch, stop=o.stop, position=part.position)
                part.position = None  # a stopped epoch is continued once, in the first
                if "partial" in sums:  # a signal inside the epoch: its exact state is saved
                    part.recorder.save_state(epoch - 1, t, part.wall(), sums["partial"])
                    stopped_at = (epoch, sums["partial"]["steps"])
                    break
                rows = record_epoch(part, epoch, sums, o)
                trained += 1
                if o.progress:
                    bar.set_postfix_str(progress_summary(part.runs, rows))
                if stop_after(part, epoch, o, started, trained):
                    stopped_at = epoch
                    break
            final.update({r.name: h[-1] for r, h in zip(part.runs, part.history)})
            if stopped_at is not None:
                break
        if stopped_at is None:
            folder.split.mark_done(o.shard, runs, grid.epochs)
    signal = o.stop.requested if stopped_at is not None and o.stop is not None else None
    return {"runs": [r.name for r in runs], "epochs": grid.epochs, "device": str(dev),
            "wall_time_s": time.perf_counter() - started, "stopped_at": stopped_at,
            "signal": signal, "final": final}


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
