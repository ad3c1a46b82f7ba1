"""What a grid writes, and the rules of its output folder (README, "Outputs").

Per run in `<out>/<run name>/`: config.json, metrics.csv, checkpoints/epoch_<E>.pt and
activations/epoch_<E>.pt. Per grid: grid.json, corruption.pt (corruption-n<level>.pt per
level of a noise sweep, corruption[-n<level>]-r<k>.pt per replicate when each replicate has its
own labels), split.json, and resume.pt, the newest complete checkpoint of the stacked runs
(resume-shard-K-of-N[-n<level>].pt per shard and level; shards.py). Every file is
written atomically; every file read back is checked first (files.py), and a resume reads all it
needs before it writes anything.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path

import torch

from .config import GridConfig, GridError, RunSpec, full_grid
from .data import GridData, corrupt_labels
from .files import FileError, read_json, read_torch, save_csv, save_json, save_torch
from .inference import trunk_features
from .paths import shown
from .shards import FolderLock, check_split, resume_file

# val_*: the held-out images against their corrupted labels (NaN without a validation set);
# train_fit: the data term a run minimised (train_Lc for cross-entropy runs, a remedy's loss).
METRIC_COLUMNS = ["epoch", "test_acc", "test_loss", "train_Lc", "train_Lr", "train_acc_noisy",
                  "train_acc_clean", "al2_weight", "wall_time_s", "val_acc", "val_loss",
                  "train_fit"]
AFRESH = "delete the folder to train afresh, or choose another --out"


class NonFiniteLoss(RuntimeError):
    """A run's loss became NaN or infinite; the message names the run and epoch."""


def check_out_dir(out: Path, grid: GridConfig, resume: bool,
                  shard: tuple[int, int] | None = None) -> bool:
    """Refuse a path that is not a folder, a folder that holds another grid, or this grid (this
    shard of it) without --resume; reads only. Returns whether this grid's (shard's) resume
    state is there."""
    if out.exists() and not out.is_dir():
        raise GridError(f"--out {shown(out)} is a file, not a folder; choose another --out")
    grid_file = out / "grid.json"
    if not grid_file.exists():
        if out.exists() and any(not p.name.startswith(".lock-") for p in out.iterdir()) \
                and not resume:
            raise GridError(f"{shown(out)} is not empty and holds no grid; choose another --out")
        return False
    saved = full_grid(read_json(grid_file, "grid file", AFRESH))
    wanted = asdict(grid)
    if saved != wanted:
        diff = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
        raise GridError(f"{shown(out)} holds a different grid (differs in {', '.join(diff)}); "
                        f"choose another --out")
    check_split(out, shard)
    part = "" if shard is None else f" (shard {shard[0]}/{shard[1]})"
    states = list(out.glob(resume_file(out, shard).stem + "*.pt"))
    trained = states or (shard is None and any(out.glob("*/metrics.csv")))
    if trained and not resume:
        raise GridError(f"{shown(out)} already holds this grid{part}; pass --resume to continue "
                        f"it or choose another --out")
    if trained and not states:
        raise GridError(f"{shown(out)} holds this grid's runs but no {resume_file(out, shard).name}"
                        f" to continue from; {AFRESH}")
    return bool(states)


def read_resume(state_file: Path, runs: list[RunSpec]) -> dict:
    """resume.pt, checked: {"epoch", "model", "momentum", "history" (one list per run),
    "wall_time_s", "runs" (their names), "partial" (where a signal stopped inside the next
    epoch, or None; absent in older files)}; a FileError or GridError naming the file when it is
    damaged or not these runs' state."""
    state = read_torch(state_file, "resume file", AFRESH)
    keys = {"epoch", "model", "momentum", "history", "wall_time_s", "runs"}
    if not isinstance(state, dict) or not keys <= set(state):
        raise GridError(f"resume file {shown(state_file)} is not a grid's resume state; "
                        f"{AFRESH}")
    if state["runs"] != [r.name for r in runs] or len(state["history"]) != len(runs):
        raise GridError(f"resume file {shown(state_file)} holds other runs than this grid's "
                        f"(another grid's?); {AFRESH}")
    partial = state.get("partial")
    if partial is not None and not (isinstance(partial, dict) and
                                    {"epoch_index", "steps", "sums", "dropout_rng"} <= set(partial)
                                    and partial["epoch_index"] == state["epoch"]):
        raise GridError(f"resume file {shown(state_file)} is damaged (its partial epoch does not "
                        f"follow its epoch {state['epoch']}); {AFRESH}")
    return state


def read_run_configs(out: Path, runs: list[RunSpec]) -> dict:
    """run name -> its config.json (read before a resume writes anything)."""
    configs = {}
    for r in runs:
        path = out / r.name / "config.json"
        if path.exists():
            configs[r.name] = read_json(path, "run config", AFRESH)
    return configs


def prepare_folder(out: Path, grid: GridConfig, shard, data: GridData, level: float,
                   runs: list[RunSpec]) -> None:
    """The grid's own files, written once by whichever process comes first (under a folder
    lock, so concurrent shards neither race nor rewrite each other's files)."""
    with FolderLock(out, "grid-files", wait=True):
        check_split(out, shard, write=True)
        write_grid_files(out, grid, data, level, runs)


def corruption_file(out: Path, grid: GridConfig, level: float, replicate: int = 0) -> Path:
    """corruption.pt, or corruption-n<level>.pt for each level of a noise sweep; with labels per
    replicate (corruption_per_replicate) one file per replicate, -r<k> added."""
    name = "corruption" + ("" if len(grid.levels()) == 1 else f"-n{level:g}")
    return out / (name + (f"-r{replicate}" if grid.corruption_per_replicate else "") + ".pt")


def write_grid_files(out: Path, grid: GridConfig, data: GridData, level: float,
                     runs: list[RunSpec]) -> None:
    if not (out / "grid.json").exists():
        save_json(asdict(grid), out / "grid.json")
    for replicate in dict.fromkeys(r.replicate for r in runs):
        seed = next(r.corruption_seed for r in runs if r.replicate == replicate)
        path = corruption_file(out, grid, level, replicate)
        if not path.exists():
            i = data.label_seeds.index(seed)
            save_torch({"noisy_labels": data.noisy_full[i], "corrupted": data.mask_full[i],
                        "percent_corrupt": level, "seed": seed}, path)


def label_groups(runs) -> dict:
    """(level, corruption seed) -> the runs (evaluate's runs.Run) that trained on those labels."""
    groups = {}
    for r in runs:
        groups.setdefault((r.level, r.corruption_seed), []).append(r)
    return dict(sorted(groups.items()))


def noisy_labels(runs_dir: Path, grid: GridConfig, run, train_y, problems: list) -> torch.Tensor:
    """The corrupted training labels (60000,) that `run` (a runs.Run) trained on, from the
    grid's corruption file of its level (and replicate, with labels per replicate); recomputed
    from its corruption seed if the file is missing, damaged or another grid's (a problem is
    recorded)."""
    path = corruption_file(runs_dir, grid, run.level, run.replicate)
    recomputed = corrupt_labels(train_y, run.level, run.corruption_seed)[0]
    fix = "its noisy labels were recomputed from the grid's corruption seed"
    try:
        saved = read_torch(path, "corruption file", fix)
        labels = saved.get("noisy_labels") if isinstance(saved, dict) else None
        if not isinstance(labels, torch.Tensor) or labels.shape != recomputed.shape:
            raise FileError(f"corruption file {shown(path)} is not this grid's; {fix}")
        if not torch.equal(labels, recomputed):
            raise FileError(f"corruption file {shown(path)} holds other labels than the grid's "
                            f"corruption seed gives (another grid's?); {fix}")
        return labels
    except FileError as e:
        problems.append(str(e))
        return recomputed


def write_run_configs(out: Path, runs: list[RunSpec], command: str, env: dict,
                      data: GridData, saved: dict, after_epoch: int = 0) -> None:
    """config.json of every run. A fresh start writes it; a resume (`saved`: the configs read
    before, read_run_configs) keeps the original command and environment and appends its own
    under "resumes", with the epoch it continued after."""
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    for r in runs:
        if r.name in saved:
            config = saved[r.name]
            config.setdefault("resumes", []).append({"command": command, "environment": env,
                                                     "started": started,
                                                     "after_epoch": after_epoch})
        else:
            val = r.grid.validation_range()
            config = {**r.config(), "command": command, "environment": env, "started": started,
                      "train_images": len(data.train_x), "test_images": len(data.test_x),
                      "validation_images": [val.start, val.stop] if len(val) else None,
                      "activation_images": min(r.grid.activation_images, len(data.test_x)),
                      "checkpoint_epochs": r.grid.checkpoint_epochs(),
                      "metrics_columns": METRIC_COLUMNS, "resumes": []}
        save_json(config, out / r.name / "config.json")


def metrics_rows(epoch: int, test_acc: list, test_loss: list, sums: dict | None,
                 weights: list, wall: float, val: tuple | None = None) -> list[dict]:
    """Per-run metric dicts for one epoch from host copies of the on-device values: test
    accuracy and loss, AL2 weights (R each); sums: an epoch's Trainer.train_epoch result (sums
    of L_c, L_r and correct predictions over its batches and samples), None before training;
    val: (accuracy, loss) on the noisy validation set, None without one."""
    rows = []
    for r in range(len(test_acc)):
        row = {"epoch": epoch, "test_acc": test_acc[r], "test_loss": test_loss[r],
               "train_Lc": math.nan, "train_Lr": math.nan, "train_acc_noisy": math.nan,
               "train_acc_clean": math.nan, "al2_weight": weights[r], "wall_time_s": wall,
               "val_acc": val[0][r] if val else math.nan,
               "val_loss": val[1][r] if val else math.nan, "train_fit": math.nan}
        if sums and sums["batches"]:
            b, n = sums["batches"], sums["samples"]
            row.update(train_Lc=sums["loss_c"][r] / b, train_Lr=sums["loss_r"][r] / b,
                       train_acc_noisy=100.0 * sums["correct_noisy"][r] / n,
                       train_acc_clean=100.0 * sums["correct_clean"][r] / n,
                       train_fit=sums["loss_fit"][r] / b)
        rows.append(row)
    return rows


def check_finite(rows: list[dict], runs: list[RunSpec], epoch: int, out: Path) -> None:
    for r, row in zip(runs, rows):
        if not (math.isfinite(row["train_Lc"]) and math.isfinite(row["train_Lr"])) and epoch:
            raise NonFiniteLoss(f"run {r.name}: non-finite loss in epoch {epoch}; the last "
                                f"good checkpoint is kept in "
                                f"{shown(out / r.name / 'checkpoints')}")


class EpochRecorder:
    """Writes each epoch's results: every run's metrics.csv (the whole history so far), and at
    the grid's checkpoint epochs every run's checkpoint and saved activations, then resume.pt
    (last: a resume never starts from a checkpoint that is not complete)."""

    def __init__(self, out: Path, grid: GridConfig, runs: list[RunSpec], history: list[list],
                 activation_x: torch.Tensor, state_file: Path):
        self.out, self.runs, self.history, self.state_file = out, runs, history, state_file
        self.checkpoint_epochs = set(grid.checkpoint_epochs())
        self.activation_x = activation_x          # (n_act, 1, 28, 28): first test images

    def record(self, epoch: int, rows: list[dict], trainer, wall: float) -> None:
        for h, row in zip(self.history, rows):
            h.append(row)
        for r, h in zip(self.runs, self.history):
            save_csv(h, self.out / r.name / "metrics.csv", METRIC_COLUMNS)
        if epoch in self.checkpoint_epochs:
            self.save_checkpoints(epoch, trainer, wall)

    def save_checkpoints(self, epoch: int, trainer, wall: float) -> None:
        model = trainer.model
        feats = trunk_features(model, self.activation_x).to(torch.float16).cpu()  # (R, n, 800)
        for i, r in enumerate(self.runs):
            run_dir = self.out / r.name
            save_torch({"model": model.run_state_dict(i), "config": r.config(),
                        "epoch": epoch, "metrics": self.history[i][-1]},
                       run_dir / "checkpoints" / f"epoch_{epoch}.pt")
            save_torch(feats[i].clone(), run_dir / "activations" / f"epoch_{epoch}.pt")
        self.save_state(epoch, trainer, wall)

    def save_state(self, epoch: int, trainer, wall: float, partial: dict | None = None) -> None:
        """resume.pt: weights, momentum and BN statistics, the history up to `epoch` (the last
        complete one), and `partial`, the position inside epoch + 1 when a signal stopped it
        there (Trainer.position; None at an epoch's end)."""
        save_torch({"epoch": epoch, **trainer.state_dict(), "history": self.history,
                    "wall_time_s": wall, "runs": [r.name for r in self.runs],
                    "partial": partial}, self.state_file)
