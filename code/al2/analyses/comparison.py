"""Which remedy for noisy labels, and does AL2 help it? (Beyond the paper.) For a grid that
trains remedies (config.REMEDIES) beside Bare, each without and with AL2, over replicates:

    comparison.csv / .md   per remedy and AL2: final, early-stopped and oracle test accuracy,
                           train L_c on the noisy labels and the share of corrupted training
                           labels the network reproduces (both in eval mode on the training
                           images at the last epoch, the same measure for every remedy, mixup
                           included), mean ± sd over runs; AL2's paired gain on each remedy;
                           the ranking, each entry against the best, paired within replicates
    comparison.png         final and early-stopped test accuracy per remedy, without and with
                           AL2: bars (mean), whiskers (95% t-interval), dots (runs)
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from ..training.inference import evaluate_stacked
from . import plotting
from .replicates import (CONFIDENCE, fmt_mean_sd, interval_text, mean_sd, selection,
                         t_interval)
from .runs import Run, grid_order, label_groups

if TYPE_CHECKING:
    from .output import Evaluation

NAMES = {"bare": "none (cross-entropy)", "bn": "batch norm", "do": "dropout",
         "wd": "weight decay", "ls": "label smoothing", "gce": "GCE", "sce": "SCE",
         "mixup": "mixup"}
COLUMNS = ["level", "baseline", "remedy", "al2", "n", "final_mean", "final_sd", "final_low",
           "final_high", "early_mean", "early_sd", "early_low", "early_high", "oracle_mean",
           "train_Lc_mean", "train_Lc_sd", "fitted_mean", "fitted_sd"]
MEASURES = {"final": "final_test_acc", "early": "early_stopped_test_acc",
            "oracle": "oracle_test_acc"}


@torch.no_grad()
def training_fit(ev: "Evaluation") -> dict:
    """run name -> {"train_Lc", "fitted"} at its last epoch, in eval mode on the grid's training
    images: the mean NLL of their noisy labels, and the % of the corrupted ones predicted as
    their (wrong) noisy label: how much of the noise the network memorised."""
    x, clean = ev.images("train", ev.grid.train_images())
    out = {}
    for _, group in label_groups(ev.runs).items():
        noisy = ev.noisy_labels(group[0])[:len(x)].to(ev.device)
        corrupted = noisy != clean
        model, kept = ev.stack(group, lambda r: r.epochs)
        if model is None:
            continue
        _, loss_c = evaluate_stacked(model, x, noisy)
        fitted, _ = evaluate_stacked(model, x[corrupted], noisy[corrupted])
        for i, r in enumerate(kept):
            out[r.name] = {"train_Lc": float(loss_c[i]), "fitted": float(fitted[i])}
    return out


def configurations(runs: list[Run]) -> dict:
    """(level, baseline, AL2) -> its runs, in the grid's order (runs.grid_order)."""
    groups = {}
    for r in sorted(runs, key=grid_order):
        groups.setdefault((r.level, r.baseline, r.use_al2), []).append(r)
    return groups


def comparison_rows(runs: list[Run], fit: dict) -> list[dict]:
    rows = []
    for (level, baseline, use_al2), group in configurations(runs).items():
        sel = [selection(r) for r in group]
        row = {"level": level, "baseline": baseline, "remedy": NAMES.get(baseline, baseline),
               "al2": use_al2, "n": len(group)}
        for short, column in MEASURES.items():
            values = [s[column] for s in sel]
            mean, sd, _ = mean_sd(values)
            row[f"{short}_mean"] = mean
            if short != "oracle":
                ci = t_interval(values)
                row.update({f"{short}_sd": sd, f"{short}_low": ci["low"],
                            f"{short}_high": ci["high"]})
        for column in ("train_Lc", "fitted"):
            values = [fit[r.name][column] for r in group if r.name in fit]
            row[f"{column}_mean"], row[f"{column}_sd"], _ = mean_sd(values)
        rows.append(row)
    return rows


def matched(a: list[Run], b: list[Run]) -> list[tuple[Run, Run]]:
    """Runs of two configurations paired by replicate and seed."""
    index = {(r.replicate, r.seed): r for r in b}
    return [(r, index[(r.replicate, r.seed)]) for r in a if (r.replicate, r.seed) in index]


def paired_difference(a: list[Run], b: list[Run], column: str) -> dict:
    """b - a on `column` of selection(), paired by replicate and seed: its t-interval."""
    return t_interval([selection(y)[column] - selection(x)[column]
                            for x, y in matched(a, b)])


def gain(a: list[Run], b: list[Run], column: str) -> str:
    """b - a on `column`, paired, as '+12.3 [+8.1, +16.5], 5 of 5'."""
    return interval_text(paired_difference(a, b, column), digits=1)


def comparison_markdown(rows: list[dict], runs: list[Run], title: str) -> str:
    configs = configurations(runs)
    lines = [f"### {title}", "",
             "Test accuracy (%), mean ± sd (n runs): *final* at the last epoch; "
             "*early-stopped* at the epoch of best accuracy on the noisy validation labels (what "
             "a user without clean labels can do); *oracle* at the best test epoch (peeks at "
             "the test set). *train L_c* and *noisy fitted* (the % of corrupted training labels "
             "the network reproduces) in eval mode on the training images at the last epoch.",
             "", "| remedy | AL2 | final | early-stopped | oracle (peeks) | train L_c | "
             "noisy fitted (%) |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        group = configs[(row["level"], row["baseline"], row["al2"])]
        sel = [selection(r) for r in group]
        lines.append(f"| {row['remedy']} | {'with' if row['al2'] else 'without'} | "
                     f"{fmt_mean_sd([s['final_test_acc'] for s in sel])} | "
                     f"{fmt_mean_sd([s['early_stopped_test_acc'] for s in sel])} | "
                     f"{row['oracle_mean']:.2f} | "
                     f"{row['train_Lc_mean']:.3f} ± {row['train_Lc_sd']:.3f} | "
                     f"{row['fitted_mean']:.1f} ± {row['fitted_sd']:.1f} |")
    lines += ["", f"**AL2's gain on each remedy**: with AL2 − without, paired within a "
              f"replicate, mean [{CONFIDENCE:.0%} t-interval], in how many replicates AL2 is "
              f"ahead.", "", "| remedy | final | early-stopped |", "|---|---|---|"]
    for (level, baseline, use_al2), group in configs.items():
        if use_al2 or (level, baseline, True) not in configs:
            continue
        with_al2 = configs[(level, baseline, True)]
        lines.append(f"| {NAMES.get(baseline, baseline)} | "
                     f"{gain(group, with_al2, 'final_test_acc')} | "
                     f"{gain(group, with_al2, 'early_stopped_test_acc')} |")
    for short, label in (("final", "final"), ("early", "early-stopped")):
        lines += ["", *ranking(rows, configs, short, label)]
    return "\n".join(lines) + "\n"


def ranking(rows: list[dict], configs: dict, short: str, label: str) -> list[str]:
    """The configurations by mean test accuracy (`short`: final or early), each with its
    t-interval and its paired difference to the first."""
    ranked = sorted((r for r in rows if not math.isnan(r[f"{short}_mean"])),
                    key=lambda r: -r[f"{short}_mean"])
    if not ranked:
        return []
    column = MEASURES[short]
    best = configs[(ranked[0]["level"], ranked[0]["baseline"], ranked[0]["al2"])]
    lines = [f"**Ranking by {label} test accuracy** (mean [{CONFIDENCE:.0%} t-interval]; then "
             f"this entry − the first, paired within replicates):", ""]
    for i, r in enumerate(ranked, 1):
        name = r["remedy"] + (" + AL2" if r["al2"] else "")
        interval = f" [{r[f'{short}_low']:.1f}, {r[f'{short}_high']:.1f}]" \
            if r["n"] > 1 else ""
        entry = configs[(r["level"], r["baseline"], r["al2"])]
        versus = "" if i == 1 else "; vs the first: " + gain(best, entry, column)
        lines.append(f"{i}. {name}: {r[f'{short}_mean']:.1f}{interval}{versus}")
    return lines


def write_comparison(ev: "Evaluation", title: str) -> None:
    """comparison.csv/.md/.png and comparison_curves.png for the grid's runs."""
    runs = ev.runs
    rows = comparison_rows(runs, training_fit(ev))
    ev.save_csv(rows, "comparison.csv", COLUMNS)
    ev.save_text(comparison_markdown(rows, runs, title), "comparison.md")
    points = {(r["level"], r["baseline"], r["al2"]): [selection(x) for x in group]
              for r, group in zip(rows, configurations(runs).values())}
    ev.save_png("comparison.png", lambda path: plotting.comparison_png(rows, points, path))
    ev.save_png("comparison_curves.png", lambda path: plotting.curves_png(runs, path))
