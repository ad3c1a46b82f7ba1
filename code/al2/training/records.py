"""What a grid's training writes each epoch: the metric rows of every run, the check that they
are finite, and EpochRecorder, which hands them, the checkpoints and the resume state to the
grid's folder (folder.GridFolder, which alone knows the files and their names).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from ..paths import shown
from .config import GridConfig, RunSpec
from .folder import GridFolder
from .inference import trunk_features



class NonFiniteLoss(RuntimeError):
    """A run's loss became NaN or infinite; the message names the run and epoch."""


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


def epoch_rows(trainer, epoch: int, sums: dict | None, al2_weight: torch.Tensor,
               t0: float) -> list[dict]:
    """The epoch's metrics per run: test accuracy and loss of every run (one batched pass), the
    same on the noisy validation set if there is one, and the training sums (read back once per
    epoch by Trainer.train_epoch)."""
    acc, loss = trainer.test()
    val = trainer.validate()
    val = None if val is None else (val[0].tolist(), val[1].tolist())
    return metrics_rows(epoch, acc.tolist(), loss.tolist(), sums, al2_weight.tolist(),
                        time.perf_counter() - t0, val)


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


def check_finite(rows: list[dict], runs: list[RunSpec], epoch: int, folder: GridFolder) -> None:
    for r, row in zip(runs, rows):
        if not (math.isfinite(row["train_Lc"]) and math.isfinite(row["train_Lr"])) and epoch:
            raise NonFiniteLoss(f"run {r.name}: non-finite loss in epoch {epoch}; the last "
                                f"good checkpoint is kept in "
                                f"{shown(folder.checkpoint(r.name, 0).parent)}")


class EpochRecorder:
    """Writes each epoch's results into the grid's folder: every run's metrics.csv (the whole
    history so far), and at the grid's checkpoint epochs every run's checkpoint and saved
    activations, then the resume state (last: a resume never starts from a checkpoint that is
    not complete)."""

    def __init__(self, folder: GridFolder, grid: GridConfig, runs: list[RunSpec],
                 history: list[list], activation_x: torch.Tensor, state_file: Path):
        self.folder, self.runs, self.history, self.state_file = folder, runs, history, state_file
        self.checkpoint_epochs = set(grid.checkpoint_epochs())
        self.activation_x = activation_x          # (n_act, 1, 28, 28): first test images

    def record(self, epoch: int, rows: list[dict], trainer, wall: float) -> None:
        for h, row in zip(self.history, rows):
            h.append(row)
        for r, h in zip(self.runs, self.history):
            self.folder.write_metrics(r.name, h)
        if epoch in self.checkpoint_epochs:
            self.save_checkpoints(epoch, trainer, wall)

    def save_checkpoints(self, epoch: int, trainer, wall: float) -> None:
        model = trainer.model
        feats = trunk_features(model, self.activation_x).to(torch.float16).cpu()  # (R, n, 800)
        for i, r in enumerate(self.runs):
            self.folder.write_checkpoint(r, epoch, model.run_state_dict(i), self.history[i][-1],
                                         feats[i].clone())
        self.save_state(epoch, trainer, wall)

    def save_state(self, epoch: int, trainer, wall: float, partial: dict | None = None) -> None:
        """The resume state: weights, momentum and BN statistics, the history up to `epoch`
        (the last complete one), and `partial`, the position inside epoch + 1 when a signal
        stopped it there (Trainer.position; None at an epoch's end)."""
        self.folder.write_resume(self.state_file, {
            "epoch": epoch, **trainer.state_dict(), "history": self.history,
            "wall_time_s": wall, "runs": [r.name for r in self.runs], "partial": partial})
