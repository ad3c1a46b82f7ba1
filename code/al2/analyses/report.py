"""Table 1 of the paper, ours beside theirs (long CSV and Markdown; the picture is in plotting),
and the noise sweep's table."""
from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from ..training.config import BASELINES
from . import plotting
from .runs import Run

if TYPE_CHECKING:
    from .output import Evaluation

PAPER_TABLE = Path(__file__).parents[1] / "paper" / "table1.csv"  # the published numbers
PAPER_EPOCHS = (100, 200, 300, 400, 500, 600, 700)
METRICS = {"TA": "test_acc", "Lc": "train_Lc", "Lr": "train_Lr"}
# Table 1 prints the with-AL2 L_r values x100; we compare and show them in the same units.
LR_AL2_SCALE = 100.0
# A cell "differs from the paper" when |ours - paper| exceeds this (README, "Outputs").
TOLERANCE = {"TA": 5.0, "Lc": 0.10, "Lr": 0.25}   # TA: points; Lc: absolute; Lr: relative
# seeds: how many runs a cell averages (Table 1's seeds x replicates)
TABLE_COLUMNS = ["baseline", "metric", "al2", "epoch", "paper_epoch", "ours", "ours_std",
                 "seeds", "paper", "diff", "scale", "outside_tolerance"]


def load_paper_table() -> dict:
    """(baseline, metric, paper_epoch, al2: bool) -> value as printed in Table 1."""
    table = {}
    with open(PAPER_TABLE, newline="") as f:
        for row in csv.DictReader(f):
            key = (row["baseline"], row["metric"], int(row["epoch"]))
            table[key + (False,)] = float(row["without_al2"])
            table[key + (True,)] = float(row["with_al2"])
    return table


def table_epochs(epochs: int) -> list[int]:
    """Table 1's columns: 100..700 for a 700-epoch grid; the same spread (k/7) for others."""
    return [max(1, round(epochs * k / 7)) for k in range(1, 8)] if epochs else []


def outside(metric: str, ours: float, paper: float) -> bool:
    if math.isnan(ours):
        return True
    if metric == "Lr":
        return abs(ours - paper) > TOLERANCE["Lr"] * max(abs(paper), 0.04)
    return abs(ours - paper) > TOLERANCE[metric]


def table_columns(runs: list[Run]) -> list[tuple[int, int | None]]:
    """Table 1's columns as (our epoch, the paper's epoch or None): from the grid's planned
    length, kept where every run got there (a grid stopped by --time-budget at epoch 450 shows
    100..400 beside the paper's 100..400)."""
    trained = min(r.epochs for r in runs)
    return [(e, paper) for e, paper in planned_columns(runs) if e <= trained]


def planned_columns(runs: list[Run]) -> list[tuple[int, int | None]]:
    """Every column of the grid's planned length, reached or not."""
    planned = table_epochs(runs[0].grid.epochs)
    return list(dict.fromkeys((e, PAPER_EPOCHS[k] if len(set(planned)) == 7 else None)
                              for k, e in enumerate(planned)))


def not_reached(rows: list[dict]) -> list[int]:
    """The columns a grid still in training has not reached: rows without a run (seeds 0)."""
    return sorted({r["epoch"] for r in rows if r["seeds"] == 0})


def table1_rows(runs: list[Run]) -> list[dict]:
    """One row per (baseline, metric, without/with AL2, epoch column): ours (mean and std over
    seeds and replicates) beside the paper's value."""
    paper = load_paper_table()
    reached, columns = table_columns(runs), planned_columns(runs)
    rows = []
    for baseline in sorted({r.baseline for r in runs}, key=BASELINES.index):
        for metric, column in METRICS.items():
            for use_al2 in (False, True):
                group = [r for r in runs if r.baseline == baseline and r.use_al2 == use_al2]
                if not group:
                    continue
                scale = LR_AL2_SCALE if (metric == "Lr" and use_al2) else 1.0
                for epoch, paper_epoch in columns:
                    # a column not reached yet keeps its place, empty (seeds 0), beside the
                    # paper's value: a grid still in training shows how far it got
                    values = [r.metric(column, epoch) * scale for r in group] \
                        if (epoch, paper_epoch) in reached else []
                    mean = statistics.fmean(values) if values else math.nan
                    std = statistics.stdev(values) if len(values) > 1 else \
                        (0.0 if values else math.nan)
                    ref = paper.get((baseline, metric, paper_epoch, use_al2), math.nan)
                    rows.append({"baseline": baseline, "metric": metric,
                                 "al2": "with" if use_al2 else "without", "epoch": epoch,
                                 "paper_epoch": paper_epoch, "ours": mean, "ours_std": std,
                                 "seeds": len(values), "paper": ref, "diff": mean - ref,
                                 "scale": scale,
                                 "outside_tolerance": bool(values) and outside(metric, mean,
                                                                               ref)})
    return rows


def fmt(value: float, std: float = 0.0, seeds: int = 1) -> str:
    """'12.34', or '12.34 ± 0.56 (5)': mean ± sd (n) over several runs (seeds, replicates)."""
    return f"{value:.2f}" + (f" ± {std:.2f} ({seeds})" if seeds > 1 else "")


def table1_markdown(rows: list[dict], title: str) -> str:
    """Markdown in the paper's layout: a row per baseline and metric, 'without / **with**'
    per epoch column, ours above the paper's."""
    epochs = sorted({r["epoch"] for r in rows})
    paper_epochs = {r["epoch"]: r["paper_epoch"] for r in rows}
    head = [f"{e}" + (f" (paper {paper_epochs[e]})" if paper_epochs[e] not in (None, e) else "")
            for e in epochs]
    several = " Ours over several runs: mean ± sd (n)." if any(r["seeds"] > 1 for r in rows) \
        else ""
    pending = not_reached(rows)
    if pending:
        several += (f" Epochs {', '.join(map(str, pending))}: not reached yet, the paper's value "
                    f"alone (the grid is still in training).")
    lines = [f"### {title}", "",
             "Each cell: without AL2 / **with AL2**; ours, then the paper's in brackets. "
             "With-AL2 L_r is ×100, as in the paper. † marks a cell outside the tolerance." +
             several, "",
             "| baseline | metric | " + " | ".join(head) + " |",
             "|---|---|" + "---|" * len(epochs)]
    index = {(r["baseline"], r["metric"], r["al2"], r["epoch"]): r for r in rows}
    for baseline in dict.fromkeys(r["baseline"] for r in rows):
        for metric in METRICS:
            cells = []
            for e in epochs:
                parts = []
                for al2 in ("without", "with"):
                    r = index.get((baseline, metric, al2, e))
                    if r is None:
                        parts.append("–")
                        continue
                    text = fmt(r["ours"], r["ours_std"], r["seeds"]) if r["seeds"] else \
                        "not reached"
                    if not math.isnan(r["paper"]):
                        text += f" ({r['paper']:.2f})"
                    text += "†" if r["outside_tolerance"] and not math.isnan(r["paper"]) else ""
                    parts.append(f"**{text}**" if al2 == "with" else text)
                cells.append(" / ".join(parts))
            lines.append(f"| {baseline.upper()} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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


def scale(runs: list[Run]) -> str:
    """'quick preset, 35 epochs x 5 replicates': the scale a table's title names."""
    g = runs[0].grid
    return f"{g.preset} preset, {g.epochs} epochs" + \
        (f" x {g.replicates} replicates" if g.replicates > 1 else "")


def title(runs: list[Run]) -> str:
    g = runs[0].grid
    replicates = f" x {g.replicates} replicates (mean ± sd)" if g.replicates > 1 else ""
    return (f"Table 1 reproduced, {g.preset} preset: {g.epochs} epochs, "
            f"{g.train_images()} training images, {table_level(runs):g}% noise, "
            f"{len(g.seeds)} seed(s){replicates}")


def write_table1(ev: "Evaluation", title: str) -> None:
    """Table 1's files; a grid still in training shows the columns it has not reached as
    such."""
    runs = table_runs(ev.runs)
    rows = table1_rows(runs) if runs else []
    if not rows:
        return
    ev.save_csv(rows, "table1.csv", TABLE_COLUMNS)
    ev.save_text(table1_markdown(rows, title), "table1.md")
    ev.save_png("table1.png", lambda path: plotting.table1_png(rows, path, title))


NOISE_COLUMNS = ["baseline", "al2", "level", "epoch", "seeds", "test_acc", "test_acc_std",
                 "train_Lc", "train_acc_noisy"]


def write_noise(ev: "Evaluation") -> None:
    """noise.csv / noise.png of a noise sweep: final test accuracy (mean and std over seeds and
    replicates), L_c and the fit of the noisy labels against the noise level, per baseline,
    without and with AL2."""
    rows, groups = [], {}
    for r in ev.runs:
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
    ev.save_csv(rows, "noise.csv", NOISE_COLUMNS)
    ev.save_png("noise.png", lambda path: plotting.noise_png(rows, path))
