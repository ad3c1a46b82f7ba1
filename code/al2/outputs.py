"""What a grid writes, and the rules of its output folder (README, "Outputs").

Per run in `<out>/<run name>/`: config.json, metrics.csv, checkpoints/epoch_<E>.pt and
activations/epoch_<E>.pt. Per grid: grid.json, corruption.pt (corruption-n<level>.pt per
level of a noise sweep), split.json, and resume.pt, the newest complete checkpoint of the
stacked runs (resume-shard-K-of-N[-n<level>].pt per shard and level; shards.py). Every file is
written atomically.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch

from . import checkpoints as files
from .config import GridConfig, GridError, RunSpec
from .data import GridData
from .inference import trunk_features
from .shards import FolderLock, check_split, resume_file

METRIC_COLUMNS = ["epoch", "test_acc", "test_loss", "train_Lc", "train_Lr", "train_acc_noisy",
                  "train_acc_clean", "al2_weight", "wall_time_s"]


class NonFiniteLoss(RuntimeError):
    """A run's loss became NaN or infinite; the message names the run and epoch."""


def check_out_dir(out: Path, grid: GridConfig, resume: bool,
                  shard: tuple[int, int] | None = None) -> bool:
    """Refuse a folder that holds another grid, or this grid (this shard of it) without
    --resume; reads only. Returns whether this grid's (shard's) resume state is there."""
    grid_file = out / "grid.json"
    states = list(out.glob(resume_file(out, shard).stem + "*.pt")) if out.exists() else []
    if not grid_file.exists():
        # hidden entries (locks, a GPU lease's .device notes) are not someone else's files
        if out.exists() and any(not p.name.startswith(".") for p in out.iterdir()) \
                and not resume:
            raise GridError(f"{out} is not empty and holds no grid; choose another --out")
        return False
    try:
        saved = json.loads(grid_file.read_text())
    except ValueError:
        raise GridError(f"{grid_file} is damaged; delete {out} or choose another --out") from None
    wanted = asdict(grid)
    if saved != wanted:
        diff = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
        raise GridError(f"{out} holds a different grid (differs in {', '.join(diff)}); "
                        f"choose another --out")
    check_split(out, shard)
    part = "" if shard is None else f" (shard {shard[0]}/{shard[1]})"
    if states or (shard is None and any(out.glob("*/metrics.csv"))):
        if not resume:
            raise GridError(f"{out} already holds this grid{part}; pass --resume to continue "
                            f"it or choose another --out")
        return bool(states)
    return False


def prepare_folder(out: Path, grid: GridConfig, shard, data: GridData, level: float) -> None:
    """The grid's own files, written once by whichever process comes first (under a folder
    lock, so concurrent shards neither race nor rewrite each other's files)."""
    with FolderLock(out, "grid-files", wait=True):
        check_split(out, shard, write=True)
        write_grid_files(out, grid, data, level)


def corruption_file(out: Path, grid: GridConfig, level: float) -> Path:
    """corruption.pt, or corruption-n<level>.pt for each level of a noise sweep."""
    return out / ("corruption.pt" if len(grid.levels()) == 1 else f"corruption-n{level:g}.pt")


def write_grid_files(out: Path, grid: GridConfig, data: GridData, level: float) -> None:
    if not (out / "grid.json").exists():
        files.save_json(asdict(grid), out / "grid.json")
    path = corruption_file(out, grid, level)
    if not path.exists():
        files.save_torch({"noisy_labels": data.noisy_full, "corrupted": data.mask_full,
                          "percent_corrupt": level, "seed": grid.corruption_seed}, path)


def write_run_configs(out: Path, runs: list[RunSpec], command: str, env: dict,
                      data: GridData, resumed: bool, after_epoch: int = 0) -> None:
    """config.json of every run. A fresh start writes it; a resume keeps the original
    command and environment and appends its own under "resumes", with the epoch it continued
    after."""
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    for r in runs:
        path = out / r.name / "config.json"
        if resumed and path.exists():
            config = json.loads(path.read_text())
            config.setdefault("resumes", []).append({"command": command, "environment": env,
                                                     "started": started,
                                                     "after_epoch": after_epoch})
        else:
            config = {**r.config(), "command": command, "environment": env, "started": started,
                      "train_images": len(data.train_x), "test_images": len(data.test_x),
                      "activation_images": min(r.grid.activation_images, len(data.test_x)),
                      "checkpoint_epochs": r.grid.checkpoint_epochs(),
                      "metrics_columns": METRIC_COLUMNS, "resumes": []}
        files.save_json(config, path)


def metrics_rows(epoch, test_acc, test_loss, sums, batches, n_seen, weights, wall):
    """Per-run metric dicts for one epoch from host copies of the on-device values:
    test_acc, test_loss, al2 weights (R,); sums (4, R) of L_c, L_r, correct vs noisy and vs
    clean labels over `batches` batches and `n_seen` samples (None before training)."""
    rows = []
    for r in range(len(test_acc)):
        row = {"epoch": epoch, "test_acc": test_acc[r], "test_loss": test_loss[r],
               "train_Lc": math.nan, "train_Lr": math.nan, "train_acc_noisy": math.nan,
               "train_acc_clean": math.nan, "al2_weight": weights[r], "wall_time_s": wall}
        if batches:
            row.update(train_Lc=sums[0][r] / batches, train_Lr=sums[1][r] / batches,
                       train_acc_noisy=100.0 * sums[2][r] / n_seen,
                       train_acc_clean=100.0 * sums[3][r] / n_seen)
        rows.append(row)
    return rows


def check_finite(rows: list[dict], runs: list[RunSpec], epoch: int, out: Path) -> None:
    for r, row in zip(runs, rows):
        if not (math.isfinite(row["train_Lc"]) and math.isfinite(row["train_Lr"])) and epoch:
            raise NonFiniteLoss(f"run {r.name}: non-finite loss in epoch {epoch}; the last "
                                f"good checkpoint is kept in {out / r.name / 'checkpoints'}")


class EpochRecorder:
    """Writes each epoch's results: every run's metrics.csv (the whole history so far), and at
    the grid's checkpoint epochs every run's checkpoint and saved activations, then resume.pt
    (last: a resume never starts from a checkpoint that is not complete)."""

    def __init__(self, out: Path, grid: GridConfig, runs: list[RunSpec], history: list[list],
                 activation_x: torch.Tensor, state_file: Path):
        self.out, self.runs, self.history, self.state_file = out, runs, history, state_file
        self.checkpoint_epochs = set(grid.checkpoint_epochs())
        self.activation_x = activation_x          # (n_act, 1, 28, 28): first test images

    def record(self, epoch: int, rows: list[dict], model, buffers, wall: float) -> None:
        for h, row in zip(self.history, rows):
            h.append(row)
        for r, h in zip(self.runs, self.history):
            files.save_csv(h, self.out / r.name / "metrics.csv", METRIC_COLUMNS)
        if epoch in self.checkpoint_epochs:
            self.save_checkpoints(epoch, model, buffers, wall)

    def save_checkpoints(self, epoch: int, model, buffers, wall: float) -> None:
        feats = trunk_features(model, self.activation_x).to(torch.float16).cpu()  # (R, n, 800)
        for i, r in enumerate(self.runs):
            run_dir = self.out / r.name
            files.save_torch({"model": model.run_state_dict(i), "config": r.config(),
                              "epoch": epoch, "metrics": self.history[i][-1]},
                             run_dir / "checkpoints" / f"epoch_{epoch}.pt")
            files.save_torch(feats[i].clone(), run_dir / "activations" / f"epoch_{epoch}.pt")
        files.save_torch({"epoch": epoch, "model": model.state_dict(),
                          "momentum": [b.detach().cpu() for b in buffers],
                          "history": self.history, "wall_time_s": wall}, self.state_file)


def load_resume(state_file: Path, model, buffers, device: torch.device):
    """Restore weights and momentum from resume.pt -> (history, epoch, wall seconds so far)."""
    state = torch.load(state_file, map_location=device, weights_only=True)
    model.load_state_dict(state["model"], strict=True)
    for buf, saved in zip(buffers, state["momentum"]):
        buf.copy_(saved)
    return state["history"], state["epoch"], state["wall_time_s"]
