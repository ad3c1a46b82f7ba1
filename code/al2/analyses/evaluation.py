"""Everything code/evaluate.py regenerates from a folder of trained runs: Table 1, training
curves, representation similarity (Sec. 5.1, similarity.py), the noise sweep and cumulative
ablation (Sec. 5.2, ablation.py).

Each analysis writes what it can; a missing or damaged file is recorded as a problem (naming
the file) and the rest goes on, so that a partial grid still yields its table.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from ..files import save_csv, save_text
from ..paths import shown
from ..training.config import REMEDIES
from ..training.data import load_mnist, normalize
from ..training.folder import GridFolder
from . import plotting
from .ablation import write_ablation
from .comparison import write_comparison
from .replicates import write_replicates
from .report import TABLE_COLUMNS, table1_markdown, table1_rows, table_columns
from .runs import Run
from .similarity import write_similarity

TABLE_LEVEL = 75.0  # Table 1's label noise (%)


def table_level(runs: list[Run]) -> float:
    """The noise level Table 1 shows: the paper's 75% if the grid has it, else its first."""
    levels = sorted({r.level for r in runs})
    return TABLE_LEVEL if TABLE_LEVEL in levels else levels[0]


def table_runs(runs: list[Run]) -> list[Run]:
    """The runs Table 1 averages: every baseline over the grid's `seeds` (extra instances of a
    baseline, trained for Fig. 1, are left out so that every cell has the same seeds), at
    Table 1's noise level."""
    level = table_level(runs)
    return [r for r in runs if r.in_table and r.level == level]


def write_table1(runs: list[Run], out: Path, title: str) -> list[dict]:
    """Table 1's files; nothing written (and no rows returned) while no run has reached the
    table's first epoch column (a grid stopped early)."""
    rows = table1_rows(table_runs(runs))
    if not rows:
        return rows
    save_csv(rows, out / "table1.csv", TABLE_COLUMNS)
    save_text(table1_markdown(rows, title), out / "table1.md")
    plotting.table1_png(rows, out / "table1.png", title)
    return rows


NOISE_COLUMNS = ["baseline", "al2", "level", "epoch", "seeds", "test_acc", "test_acc_std",
                 "train_Lc", "train_acc_noisy"]


def write_noise(runs: list[Run], out: Path) -> list[dict]:
    """noise.csv / noise.png of a noise sweep: final test accuracy (mean and std over seeds),
    L_c and the fit of the noisy labels against the noise level, per baseline, without and
    with AL2."""
    rows = []
    groups = {}
    for r in runs:
        groups.setdefault((r.baseline, r.use_al2, r.level), []).append(r)
    for (baseline, use_al2, level), group in sorted(groups.items()):
        epoch = min(r.epochs for r in group)
        values = {c: [r.metric(c, epoch) for r in group]
                  for c in ("test_acc", "train_Lc", "train_acc_noisy")}
        rows.append({"baseline": baseline, "al2": "with" if use_al2 else "without",
                     "level": level, "epoch": epoch, "seeds": len(group),
                     "test_acc": statistics.fmean(values["test_acc"]),
                     "test_acc_std": statistics.stdev(values["test_acc"]) if len(group) > 1
                     else 0.0,
                     "train_Lc": statistics.fmean(values["train_Lc"]),
                     "train_acc_noisy": statistics.fmean(values["train_acc_noisy"])})
    save_csv(rows, out / "noise.csv", NOISE_COLUMNS)
    plotting.noise_png(rows, out / "noise.png")
    return rows


def missing_parts(runs: list[Run], runs_dir: Path) -> list[str]:
    """The grid's runs that the folder lacks (a shard not trained yet), and the shards of its
    split that have not finished; each a line of MISSING.md."""
    grid = runs[0].grid
    have = {r.name for r in runs}
    problems = [f"run {r.name} of this grid is missing from {shown(runs_dir)} (train its shard)"
                for r in grid.runs() if r.name not in have]
    trained = min(r.epochs for r in runs)
    folder = GridFolder(runs_dir)
    problems += [f"{label.replace('-', ' ')} of {shown(runs_dir)} has not finished (no "
                 f"{folder.done_file(label).relative_to(runs_dir)}; its runs are at epoch "
                 f"{trained} of {grid.epochs} or still training): continue it with --resume"
                 for label in folder.unfinished_shards()]
    return problems


class Laps:
    """Seconds per analysis: lap(name) books the time since the previous lap under name."""

    def __init__(self):
        self.seconds, self.last = {}, time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self.last
        self.last = now


def evaluate_runs(runs: list[Run], runs_dir: Path, out: Path, table: bool = True,
                  curves: bool = True, similarity: bool = True, ablation: bool = True,
                  similarity_images: int | None = None, similarity_epochs: list | None = None,
                  ablation_epochs=None, ablation_images: int = 1000, ablation_draws: int = 3,
                  seed: int = 0, device: str = "cpu", title: str = "") -> dict:
    """Run the chosen analyses; returns {"written": [...], "problems": [...], "seconds": ...,
    "timings": {analysis: seconds}}.
    similarity_images: test images per representation (None: those saved at each checkpoint;
    more are recomputed from the checkpoints); seed: the random floor and ablation draws."""
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    problems, written, lap = missing_parts(runs, runs_dir), [], Laps()
    g = runs[0].grid
    replicates = f" x {g.replicates} replicates (mean ± sd)" if g.replicates > 1 else ""
    title = title or (f"Table 1 reproduced, {g.preset} preset: {g.epochs} epochs, "
                      f"{g.train_images()} training images, "
                      f"{table_level(runs):g}% noise, {len(g.seeds)} seed(s){replicates}")
    if table and table_runs(runs):
        if write_table1(runs, out, title):
            written += ["table1.csv", "table1.md", "table1.png"]
        else:
            problems.append("Table 1: no run has reached the table's first epoch column yet "
                            "(train further, or --resume)")
    if curves:
        plotting.curves_png(table_runs(runs) or runs, out / "curves.png")
        written.append("curves.png")
    lap("table and curves")
    epochs = [e for e, _ in table_columns(runs)]
    scale = f"{g.preset} preset, {g.epochs} epochs{replicates.replace(' (mean ± sd)', '')}"
    if g.replicates > 1 or g.validation:  # seeds are not replicates: none for them
        written += write_replicates(runs, out, epochs, scale, paired=g.replicates > 1)
        lap("replicates")
    if any(r.baseline in REMEDIES for r in runs):
        written += write_comparison(runs, g, out, runs_dir, torch.device(device),
                                    problems, f"Remedies at {table_level(runs):g}% label noise, "
                                              f"{scale}")
        lap("remedies")
    if similarity:
        test_x = None
        if similarity_images and similarity_images > min(
                r.config.get("activation_images", 0) for r in runs):
            test_x = normalize(load_mnist()[2][:similarity_images]).to(device)
        summary = g.replicates > 1
        if write_similarity(runs, out, similarity_images, similarity_epochs, problems, test_x,
                            seed, torch.device(device), summary):
            written += ["similarity.csv", "similarity.png"] + \
                ["similarity_summary.csv", "similarity_summary.md"] * summary
        lap("similarity")
    if len({r.level for r in runs}) > 1:
        write_noise(runs, out)
        written += ["noise.csv", "noise.png"]
        lap("noise")
    if ablation:
        if write_ablation(runs, g, out, ablation_epochs, ablation_images,
                          ablation_draws, seed, problems, runs_dir, torch.device(device)):
            written += ["ablation.csv", "ablation.png"]
        lap("ablation")
    if problems:
        save_text("Missing from this evaluation:\n" + "".join(f"- {p}\n" for p in problems),
                  out / "MISSING.md")
    elif (out / "MISSING.md").exists():
        (out / "MISSING.md").unlink()
    return {"written": written, "problems": problems, "seconds": time.perf_counter() - start,
            "timings": lap.seconds}
