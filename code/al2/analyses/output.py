"""One evaluation's output folder and what its analyses share (Evaluation), what it computes
(Settings), and every file it may write (OUTPUTS): evaluation.evaluate_runs drives it, the
analyses' writers write through it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..files import save_csv, save_text
from ..training.data import load_mnist, normalize
from ..training.folder import GridFolder
from .checkpoints import stack_checkpoints
from .runs import Run

# Every file an evaluation may write, and what it holds (the README's "Outputs").
OUTPUTS = {
    "table1.csv": "Table 1: every cell beside the paper's", "table1.md": "Table 1 as Markdown",
    "table1.png": "Table 1 rendered", "curves.png": "training curves",
    "runs.csv": "every run's metrics at every epoch (the per-run rows)",
    "selection.csv": "per run: final, early-stopped and oracle test accuracy",
    "selection.md": "the same per (baseline, AL2)",
    "paired.csv": "AL2 - plain per baseline and epoch, paired by replicate",
    "paired.md": "the same as Markdown",
    "comparison.csv": "the remedies side by side", "comparison.md": "the same as Markdown",
    "comparison.png": "the remedies' accuracies", "comparison_curves.png": "their curves",
    "similarity.csv": "Sec. 5.1: every pair, statistic and epoch",
    "similarity.png": "Fig. 1", "similarity_summary.csv": "over the pairs of a kind",
    "similarity_summary.md": "the same as Markdown",
    "probe.csv": "a linear probe of each trunk per epoch", "probe.md": "its AL2 - plain",
    "noise.csv": "the noise sweep", "noise.png": "the noise sweep plotted",
    "ablation.csv": "Sec. 5.2: accuracy per run, mode and fraction zeroed",
    "ablation.png": "the share of above-chance accuracy kept",
    "MISSING.md": "what could not be computed",
}


@dataclass
class Settings:
    """What an evaluation computes (evaluate.py's flags). similarity_images: test images per
    representation (None: those saved at each checkpoint; more are recomputed from the
    checkpoints); seed: the random floor and the ablation draws."""
    table: bool = True
    curves: bool = True
    similarity: bool = True
    ablation: bool = True
    probe: bool = True
    similarity_images: int | None = None
    similarity_epochs: list | None = None
    ablation_epochs: list | None = None
    ablation_images: int = 1000
    ablation_draws: int = 3
    probe_images: int = 1000
    seed: int = 0
    title: str = ""


class Evaluation:
    """One evaluation of a grid's runs into an output folder: what the analyses share (the
    runs, the grid, the device, the runs' folder, the problems list) and the one writer of the
    output folder's files (OUTPUTS), which records what it wrote."""

    def __init__(self, runs: list[Run], runs_dir: Path, out: Path, device: str = "cpu"):
        self.runs, self.runs_dir, self.out = runs, Path(runs_dir), Path(out)
        self.device, self.grid = torch.device(device), runs[0].grid
        self.folder = GridFolder(runs_dir)
        self.problems: list[str] = []
        self.written: list[str] = []

    def path(self, name: str) -> Path:
        if name not in OUTPUTS:
            raise KeyError(f"{name} is not an output of an evaluation (OUTPUTS)")
        return self.out / name

    def wrote(self, name: str) -> None:
        if name not in self.written:
            self.written.append(name)

    def save_csv(self, rows: list[dict], name: str, columns: list[str]) -> None:
        save_csv(rows, self.path(name), columns)
        self.wrote(name)

    def save_text(self, text: str, name: str) -> None:
        save_text(text, self.path(name))
        self.wrote(name)

    def save_png(self, name: str, draw) -> None:
        """draw(path): a figure of plotting.py, saved as `name`."""
        draw(self.path(name))
        self.wrote(name)

    def stack(self, runs: list[Run], epoch, trunk_only: bool = False):
        """The runs' checkpoints at `epoch` as one StackedLeNet on the device (what cannot be
        read becomes a problem): (model, the runs it holds)."""
        return stack_checkpoints(runs, epoch, self.problems, self.device, trunk_only)

    def noisy_labels(self, run: Run) -> torch.Tensor:
        """The corrupted labels of all 60,000 training images that `run` trained on (from its
        grid folder's corruption file, or recomputed: a problem)."""
        return self.folder.noisy_labels(self.grid, run, load_mnist()[1], self.problems)

    def images(self, which: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first n normalised "train" or "test" images on the device, and their clean
        labels."""
        train_x, train_y, test_x, test_y = load_mnist()
        x, y = (train_x, train_y) if which == "train" else (test_x, test_y)
        return normalize(x[:n]).to(self.device), y[:n].to(self.device)
