"""Figures: Table 1 rendered, training curves, similarity and ablation plots.

Grayscale-readable: without / with AL2 differ by line style (solid / dashed) and marker, the
baselines by gray level and marker; every axis is labelled with its unit.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..files import atomic_write  # noqa: E402
from ..training.data import CHANCE  # noqa: E402

BASELINE_STYLE = {"bare": ("0.0", "o"), "bn": ("0.35", "s"), "do": ("0.55", "^"),
                  "wd": ("0.75", "D"),
                  # the remedies (beyond the paper)
                  "ls": ("0.3", "v"), "gce": ("0.45", "P"), "sce": ("0.6", "X"),
                  "mixup": ("0.7", "*")}
AL2_STYLE = {False: "-", True: "--"}


def save_figure(fig, path: Path) -> None:
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=130, bbox_inches="tight"))
    plt.close(fig)


def table1_png(rows: list[dict], path: Path, title: str) -> None:
    """Table 1 in the paper's layout: a row per baseline and metric, without / with AL2 as
    two lines (with-AL2 in bold, as the paper prints it), epochs as columns. Cells outside the
    README's tolerance from the paper are shaded and marked †."""
    epochs = sorted({r["epoch"] for r in rows})
    index = {(r["baseline"], r["metric"], r["al2"], r["epoch"]): r for r in rows}
    baselines = list(dict.fromkeys(r["baseline"] for r in rows))
    metrics = list(dict.fromkeys(r["metric"] for r in rows))      # report.METRICS' order
    cell_text, row_labels, bold, shade = [], [], [], []
    for b in baselines:
        for metric in metrics:
            for al2 in ("without", "with"):
                if not any((b, metric, al2, e) in index for e in epochs):
                    continue
                texts, flags = [], []
                for e in epochs:
                    r = index.get((b, metric, al2, e))
                    if r is None:
                        texts.append("–"), flags.append(False)
                        continue
                    if not r["seeds"]:                     # a column not reached yet
                        texts.append("not reached"), flags.append(False)
                        continue
                    t = f"{r['ours']:.2f}"
                    if r["seeds"] > 1:
                        t += f"±{r['ours_std']:.2f}"
                    mark = r["outside_tolerance"] and not math.isnan(r["paper"])
                    texts.append(t + (" †" if mark else ""))
                    flags.append(mark)
                cell_text.append(texts)
                unit = " (×100)" if (metric == "Lr" and al2 == "with") else ""
                row_labels.append(f"{b.upper()} {metric}{' +AL2' if al2 == 'with' else ''}{unit}")
                bold.append(al2 == "with")
                shade.append(flags)
    fig_h = 0.28 * len(cell_text) + 1.0
    fig, ax = plt.subplots(figsize=(1.35 * len(epochs) + 2.4, fig_h))
    ax.axis("off")
    table = ax.table(cellText=cell_text, rowLabels=row_labels,
                     colLabels=[f"epoch {e}" for e in epochs], loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.15)
    for (i, j), cell in table.get_celld().items():
        if i == 0:
            cell.set_text_props(weight="bold")
            continue
        if bold[i - 1]:
            cell.set_text_props(weight="bold")
        if j >= 0 and shade[i - 1][j]:
            cell.set_facecolor("0.85")
    ax.set_title(title, fontsize=10)
    save_figure(fig, path)


def curves_png(runs, path: Path) -> None:
    """TA, L_c, L_r (log) and the AL2 weight (log) against epoch; seeds as min-max bands."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    panels = [("test_acc", "test accuracy (%)", False), ("train_Lc", "training L_c (nats)", False),
              ("train_Lr", "training L_r = mean(a²)", True), ("al2_weight", "AL2 weight w_e", True)]
    groups = {}
    for r in runs:
        groups.setdefault((r.baseline, r.use_al2), []).append(r)
    for ax, (column, label, log) in zip(axes.flat, panels):
        for (baseline, use_al2), group in sorted(groups.items()):
            if column == "al2_weight" and not use_al2:
                continue
            epochs = np.array([m["epoch"] for m in group[0].metrics])
            values = np.array([[m[column] for m in r.metrics][:len(epochs)] for r in group])
            gray, marker = BASELINE_STYLE.get(baseline, ("0.0", "x"))
            with warnings.catch_warnings():  # row 0 has no training metrics (NaN)
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, low, high = (np.nanmean(values, 0), np.nanmin(values, 0),
                                   np.nanmax(values, 0))
            every = max(1, len(epochs) // 8)
            ax.plot(epochs, mean, AL2_STYLE[use_al2], color=gray, marker=marker,
                    markevery=every, markersize=4, lw=1.3,
                    label=f"{baseline}{' + AL2' if use_al2 else ''}")
            if len(group) > 1:
                ax.fill_between(epochs, low, high, color=gray, alpha=0.2, lw=0)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, ncol=2)
    fig.suptitle("Training curves: without AL2 solid, with AL2 dashed")
    fig.tight_layout()
    save_figure(fig, path)


SIMILARITY_LINES = {  # pair kinds (similarity.csv) -> line style, marker, gray, label
    ("seeds_plain",): ("-", "o", "0.0", "instance pairs, without AL2"),
    ("seeds_al2",): ("--", "s", "0.0", "instance pairs, with AL2"),
    ("plain_vs_al2",): ("-.", "^", "0.45", "without vs with AL2, same seed"),
    ("random_plain", "random_al2"): (":", "x", "0.6", "random floor (uniform)"),
}


def similarity_png(rows: list[dict], path: Path) -> None:
    """Fig. 1's comparison: each statistic against epoch, the mean over pairs of a kind with
    its min-max spread shaded. Top row: the statistics as the authors computed them; bottom
    row: the published-formula variants and linear CKA."""
    stats = list(dict.fromkeys(r["statistic"] for r in rows))
    top = [s for s in stats if s.endswith("_authors")]
    bottom = [s for s in stats if s not in top]
    layout = [row for row in (top, bottom) if row]
    cols = max(len(row) for row in layout)
    fig, axes = plt.subplots(len(layout), cols, figsize=(3.7 * cols, 3.3 * len(layout)),
                             squeeze=False)
    for i, row in enumerate(layout):
        for j in range(cols):
            ax = axes[i][j]
            if j >= len(row):
                ax.axis("off")
                continue
            stat = row[j]
            for kinds, (ls, marker, color, label) in SIMILARITY_LINES.items():
                sel = [r for r in rows if r["statistic"] == stat and r["pair"] in kinds]
                if not sel:
                    continue
                epochs = sorted({r["epoch"] for r in sel})
                values = [[r["value"] for r in sel if r["epoch"] == e] for e in epochs]
                with warnings.catch_warnings():  # a dead representation's pairs are NaN
                    warnings.simplefilter("ignore", RuntimeWarning)
                    mean = [np.nanmean(v) for v in values]
                    low, high = [np.nanmin(v) for v in values], [np.nanmax(v) for v in values]
                baselines = sorted({r["run_a"].split("_")[0] for r in sel})
                ax.plot(epochs, mean, ls, marker=marker, color=color, markersize=4,
                        label=f"{label} ({', '.join(baselines)})" if kinds[0] != "random_plain"
                        else label)
                if any(len(v) > 1 for v in values):
                    ax.fill_between(epochs, low, high, color=color, alpha=0.15, lw=0)
            ax.set_title(stat.replace("_authors", " (as the authors computed it)")
                         if stat.endswith("_authors") else stat, fontsize=9)
            ax.set_xlabel("epoch")
            ax.set_ylabel("similarity (0-1)")
            ax.set_ylim(-0.05, 1.05)
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.suptitle("Representation similarity (Sec. 5.1): mean over pairs, min-max shaded",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    save_figure(fig, path)


def kept_above_chance(values: np.ndarray) -> np.ndarray:
    """Accuracies (F, ...) with fraction 0 first -> the share (%) of the unablated accuracy
    above chance that is kept: 100 (a - 10) / (a_0 - 10). Networks that start at different
    accuracies compare on it without the chance floor favouring the one that starts lower."""
    with np.errstate(divide="ignore", invalid="ignore"):  # a network at chance: no share
        return 100.0 * (values - CHANCE) / (values[:1] - CHANCE)


def ablation_png(rows: list[dict], path: Path, groups: dict | None = None) -> None:
    """The share of above-chance accuracy kept (kept_above_chance) against the ablated
    fraction, per mode (rows) and evaluation set (columns): a line per run, or with replicates
    (groups: run -> its name without the replicate) the mean over a run's replicates with their
    min-max shaded. ablation.csv holds the raw accuracies."""
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    sets = [("acc_train_noisy", "train, noisy labels"), ("acc_train_clean", "train, clean labels"),
            ("acc_test", "test")]
    fig, axes = plt.subplots(len(modes), 3, figsize=(12, 3.4 * len(modes)), squeeze=False)
    last = max(r["epoch"] for r in rows)
    groups = groups or {}
    for i, mode in enumerate(modes):
        for j, (column, label) in enumerate(sets):
            ax = axes[i][j]
            for name in dict.fromkeys(groups.get(r["run"], r["run"]) for r in rows):
                sel = [r for r in rows if groups.get(r["run"], r["run"]) == name
                       and r["mode"] == mode and r["epoch"] == last]
                if not sel:
                    continue
                fractions = sorted({r["fraction"] for r in sel})
                values = kept_above_chance(np.array(
                    [[r[column] for r in sel if r["fraction"] == f] for f in fractions]))
                # (F, replicates); fractions start at 0
                gray, marker = BASELINE_STYLE.get(sel[0]["baseline"], ("0.0", "x"))
                x = [100 * f for f in fractions]
                ax.plot(x, values.mean(1), AL2_STYLE[sel[0]["al2"]], color=gray, marker=marker,
                        markersize=3, label=name if values.shape[1] == 1 else
                        f"{name} ({values.shape[1]} replicates)")
                if values.shape[1] > 1:
                    ax.fill_between(x, values.min(1), values.max(1), color=gray, alpha=0.15,
                                    lw=0)
            ax.set_title(f"{mode} ablation, {label} (epoch {last})", fontsize=9)
            ax.set_xlabel("activations zeroed (%)")
            ax.set_ylabel("above-chance accuracy kept (%)")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    save_figure(fig, path)


def noise_png(rows: list[dict], path: Path) -> None:
    """Final test accuracy against the label-noise level, per baseline, without (solid) and
    with AL2 (dashed); error bars: std over seeds."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for baseline in dict.fromkeys(r["baseline"] for r in rows):
        gray, marker = BASELINE_STYLE.get(baseline, ("0.0", "x"))
        for al2 in ("without", "with"):
            sel = sorted((r for r in rows if r["baseline"] == baseline and r["al2"] == al2),
                         key=lambda r: r["level"])
            if sel:
                ax.errorbar([r["level"] for r in sel], [r["test_acc"] for r in sel],
                            yerr=[r["test_acc_std"] for r in sel], fmt=AL2_STYLE[al2 == "with"],
                            color=gray, marker=marker, markersize=4, capsize=3,
                            label=f"{baseline}{' + AL2' if al2 == 'with' else ''}")
    epoch = max(r["epoch"] for r in rows)
    ax.set_xlabel("training labels corrupted (%)")
    ax.set_ylabel(f"test accuracy at epoch {epoch} (%)")
    ax.set_title("Label noise sweep: without AL2 solid, with AL2 dashed", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def comparison_png(rows: list[dict], points: dict, path: Path) -> None:
    """Final and early-stopped test accuracy per remedy, without and with AL2: a bar per mean
    (light: without AL2, dark: with; hatched: early-stopped), whiskers the 95% t-interval of the
    mean, dots the runs."""
    remedies = list(dict.fromkeys((r["level"], r["baseline"], r["remedy"]) for r in rows))
    index = {(r["level"], r["baseline"], r["al2"]): r for r in rows}
    bars = [("final", False, "0.8", ""), ("final", True, "0.35", ""),
            ("early", False, "0.8", "//"), ("early", True, "0.35", "//")]
    columns = {"final": "final_test_acc", "early": "early_stopped_test_acc"}
    fig, ax = plt.subplots(figsize=(1.6 * len(remedies) + 2, 4.4))
    width = 0.2
    for j, (measure, al2, gray, hatch) in enumerate(bars):
        for i, (level, baseline, _) in enumerate(remedies):
            r = index.get((level, baseline, al2))
            if r is None or math.isnan(r[f"{measure}_mean"]):
                continue
            x = i + (j - 1.5) * width
            low, high = r[f"{measure}_low"], r[f"{measure}_high"]
            err = None if math.isnan(low) else [[r[f"{measure}_mean"] - low],
                                                [high - r[f"{measure}_mean"]]]
            ax.bar(x, r[f"{measure}_mean"], width, color=gray, hatch=hatch, edgecolor="0.0",
                   lw=0.6, yerr=err, capsize=3,
                   label=f"{'early-stopped' if measure == 'early' else 'final'}, "
                         f"{'with' if al2 else 'without'} AL2" if i == 0 else None)
            values = [s[columns[measure]] for s in points[(level, baseline, al2)]]
            ax.plot([x] * len(values), values, ".", color="0.0", markersize=3)
    ax.set_xticks(range(len(remedies)))
    ax.set_xticklabels([name for _, _, name in remedies], fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Remedies for label noise, without and with AL2: mean, 95% t-interval, runs",
                 fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)
