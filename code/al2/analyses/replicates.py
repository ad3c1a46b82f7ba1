"""How sure a result is (beyond the paper): each run's test accuracy at the end, at the epoch a
user would keep by looking only at noisy held-out labels (early stopping), and at its best epoch
(an oracle: it peeks at the test set); and each AL2 - plain difference, paired within a replicate
(the same initialisation, batches and masks but AL2), with its 95% t-interval over independent
replicates and the number of replicates in which AL2 is ahead.

    selection.csv / .md   per run, and per (baseline, AL2) mean ± sd (n)
    paired.csv / .md      per baseline, measure and reported epoch: AL2 - plain
"""
from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING

from scipy import stats

from .report import table_columns
from .runs import Run, grid_order

if TYPE_CHECKING:
    from .output import Evaluation

SELECTION_COLUMNS = ["run", "baseline", "al2", "seed", "replicate", "level", "epoch",
                     "final_test_acc", "val_epoch", "val_acc", "early_stopped_test_acc",
                     "oracle_epoch", "oracle_test_acc"]
PAIRED_COLUMNS = ["level", "baseline", "measure", "epoch", "n", "plain_mean", "al2_mean",
                  "mean_diff", "sd_diff", "ci_low", "ci_high", "al2_ahead"]
MEASURES = {"final": "final_test_acc", "early_stopped": "early_stopped_test_acc"}
CONFIDENCE = 0.95


def first_best(values: list[tuple[int, float]]) -> int | None:
    """The first epoch of the largest value (NaN skipped); None when there is none."""
    best = None
    for epoch, value in values:
        if not math.isnan(value) and (best is None or value > best[1]):
            best = (epoch, value)
    return None if best is None else best[0]


def selection(run: Run, upto: int | None = None) -> dict:
    """Test accuracy at epoch `upto` (default: the last trained), at the first epoch of best
    noisy-validation accuracy among 1..upto (NaN without a validation set), and at the epoch of
    best test accuracy among 1..upto (the oracle)."""
    upto = run.epochs if upto is None else upto
    epochs = range(1, upto + 1)
    has_val = "val_acc" in run.metrics[0]
    val_epoch = first_best([(e, run.metric("val_acc", e)) for e in epochs]) if has_val else None
    oracle_epoch = first_best([(e, run.metric("test_acc", e)) for e in epochs])

    def at(column, e):
        return math.nan if e is None else run.metric(column, e)
    return {"run": run.name, "baseline": run.baseline, "al2": run.use_al2, "seed": run.seed,
            "replicate": run.replicate, "level": run.level, "epoch": upto,
            "final_test_acc": run.metric("test_acc", upto),
            "val_epoch": math.nan if val_epoch is None else val_epoch,
            "val_acc": at("val_acc", val_epoch),
            "early_stopped_test_acc": at("test_acc", val_epoch),
            "oracle_epoch": math.nan if oracle_epoch is None else oracle_epoch,
            "oracle_test_acc": at("test_acc", oracle_epoch)}


def mean_sd(values: list[float]) -> tuple[float, float, int]:
    """(mean, sample sd, n) of the finite values; sd NaN for n < 2."""
    v = [x for x in values if not math.isnan(x)]
    if not v:
        return math.nan, math.nan, 0
    return statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else math.nan, len(v)


def fmt_mean_sd(values: list[float], digits: int = 2) -> str:
    """'55.35 ± 3.21 (5)', or '55.35' for a single value, '–' for none."""
    mean, sd, n = mean_sd(values)
    if n == 0:
        return "–"
    return f"{mean:.{digits}f}" if n == 1 else f"{mean:.{digits}f} ± {sd:.{digits}f} ({n})"


def t_interval(values: list[float], confidence: float = CONFIDENCE) -> dict:
    """The mean of `values` with its two-sided t-interval (n - 1 degrees of freedom), and how
    many values are > 0: {"n", "mean", "sd", "low", "high", "positive"}; NaN values are left out,
    the interval is NaN for n < 2. Of paired differences (b - a per replicate) it is the paired
    t-interval of the mean difference."""
    mean, sd, n = mean_sd(values)
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n) if n > 1 else math.nan
    return {"n": n, "mean": mean, "sd": sd, "low": mean - half, "high": mean + half,
            "positive": sum(x > 0 for x in values if not math.isnan(x))}


def pairs(runs: list[Run]) -> dict:
    """(level, baseline) -> [(plain run, AL2 run)], one pair per replicate, matched by
    replicate: a paired comparison (everything the same but AL2). Only the grid's first seed:
    other seeds of a replicate share its batch order and labels, so they are not replicates."""
    by_key = {(r.level, r.baseline, r.seed, r.replicate, r.use_al2): r for r in runs
              if r.seed == r.grid.seeds[0]}
    out = {}
    for (level, baseline, seed, replicate, use_al2), plain in sorted(by_key.items()):
        al2 = by_key.get((level, baseline, seed, replicate, True))
        if not use_al2 and al2 is not None:
            out.setdefault((level, baseline), []).append((plain, al2))
    return out


def paired_rows(runs: list[Run], epochs: list[int], early: bool) -> list[dict]:
    """AL2 - plain per (level, baseline), measure (final; early-stopped if the grid holds out
    validation images) and epoch column."""
    rows = []
    measures = [m for m in MEASURES if m == "final" or early]
    for (level, baseline), matched in pairs(runs).items():
        for measure in measures:
            for epoch in epochs:
                plain = [selection(a, epoch)[MEASURES[measure]] for a, _ in matched]
                al2 = [selection(b, epoch)[MEASURES[measure]] for _, b in matched]
                ci = t_interval([b - a for a, b in zip(plain, al2)])
                rows.append({"level": level, "baseline": baseline, "measure": measure,
                             "epoch": epoch, "n": ci["n"], "plain_mean": mean_sd(plain)[0],
                             "al2_mean": mean_sd(al2)[0], "mean_diff": ci["mean"],
                             "sd_diff": ci["sd"], "ci_low": ci["low"], "ci_high": ci["high"],
                             "al2_ahead": ci["positive"]})
    return rows


def signed_interval(ci: dict, digits: int = 2) -> str:
    """A t_interval's mean and interval as '+34.20 [+28.10, +40.30]' (the mean alone for n = 1)."""
    text = f"{ci['mean']:+.{digits}f}"
    if ci["n"] > 1:
        text += f" [{ci['low']:+.{digits}f}, {ci['high']:+.{digits}f}]"
    return text


def interval_text(ci: dict, digits: int = 2) -> str:
    """A t_interval as '+34.20 [+28.10, +40.30], 5 of 5' (without the interval for n = 1, '–'
    for none)."""
    if not ci["n"]:
        return "–"
    return signed_interval(ci, digits) + f", {ci['positive']} of {ci['n']}"


def paired_ci(row: dict) -> dict:
    """A paired_rows row's interval under t_interval's keys."""
    return {"n": row["n"], "mean": row["mean_diff"], "low": row["ci_low"],
            "high": row["ci_high"], "positive": row["al2_ahead"]}


def paired_markdown(rows: list[dict], title: str) -> str:
    epochs = sorted({r["epoch"] for r in rows})
    levels = sorted({r["level"] for r in rows})
    lines = [f"### {title}", "",
             f"AL2 − plain test accuracy (points), paired within a replicate: the mean "
             f"difference, its {CONFIDENCE:.0%} t-interval over the replicates, and in how many "
             f"replicates AL2 is ahead. *final*: the test accuracy at that epoch; "
             f"*early-stopped*: at the epoch of best accuracy on the noisy validation labels "
             f"up to that epoch.", "",
             "| " + ("noise | " if len(levels) > 1 else "") + "baseline | measure | " +
             " | ".join(f"epoch {e}" for e in epochs) + " |",
             "|---|---|" + ("---|" if len(levels) > 1 else "") + "---|" * len(epochs)]
    index = {(r["level"], r["baseline"], r["measure"], r["epoch"]): r for r in rows}
    for level, baseline, measure in dict.fromkeys((r["level"], r["baseline"], r["measure"])
                                                  for r in rows):
        cells = [interval_text(paired_ci(index[(level, baseline, measure, e)]))
                 for e in epochs]
        lines.append("| " + (f"{level:g}% | " if len(levels) > 1 else "") +
                     f"{baseline.upper()} | {measure.replace('_', '-')} | " + " | ".join(cells)
                     + " |")
    return "\n".join(lines) + "\n"


def selection_markdown(rows: list[dict], title: str) -> str:
    """Per (baseline, AL2): the three test accuracies, mean ± sd (n)."""
    lines = [f"### {title}", "",
             "Test accuracy (%), mean ± sd (n runs): at the last epoch; at the epoch of best "
             "accuracy on the noisy validation labels (what a user without clean labels can "
             "keep); at the epoch of best test accuracy (an **oracle**: it peeks at the test "
             "set, no user can select this way).", "",
             "| baseline | AL2 | final | early-stopped (noisy validation) | epoch kept | "
             "oracle (peeks at test) |", "|---|---|---|---|---|---|"]
    sweep = len({r["level"] for r in rows}) > 1
    for key in dict.fromkeys((r["level"], r["baseline"], r["al2"]) for r in rows):
        sel = [r for r in rows if (r["level"], r["baseline"], r["al2"]) == key]
        cols = [fmt_mean_sd([r[c] for r in sel], 1 if c == "val_epoch" else 2) for c in
                ("final_test_acc", "early_stopped_test_acc", "val_epoch", "oracle_test_acc")]
        name = key[1].upper() + (f" ({key[0]:g}%)" if sweep else "")
        lines.append(f"| {name} | {'with' if key[2] else 'without'} | " + " | ".join(cols) + " |")
    return "\n".join(lines) + "\n"


def write_replicates(ev: "Evaluation", title: str, paired: bool = True) -> None:
    """selection.csv/.md and, with `paired` (a grid of replicates), paired.csv/.md where AL2
    and plain runs are paired, at Table 1's epoch columns."""
    runs = sorted(ev.runs, key=grid_order)
    rows = [selection(r) for r in runs]
    ev.save_csv(rows, "selection.csv", SELECTION_COLUMNS)
    ev.save_text(selection_markdown(rows, title), "selection.md")
    early = any(not math.isnan(r["val_epoch"]) for r in rows)
    epochs = [e for e, _ in table_columns(runs)]
    rows = paired_rows(runs, epochs, early) if paired else []
    if rows:
        ev.save_csv(rows, "paired.csv", PAIRED_COLUMNS)
        ev.save_text(paired_markdown(rows, title), "paired.md")
