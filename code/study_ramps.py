"""Is AL2 incompatible with GCE and mixup, or is the quick preset's ramp too steep for them?
(results/ramps-quick). AL2 with cross-entropy (the control), GCE and mixup at the preset's ramp
and gentler ones, 3 replicates each, the ramp chosen on the noisy validation set as a user could.

    python code/study_ramps.py                     # -> results/runs/ramps-quick/, results/ramps-quick/

One grid per ramp (the remedies-quick setting: 8,000 images, 35 epochs, a 1,000-image noisy
validation set; Bare (cross-entropy), GCE and mixup with AL2; replicates 0-2, so every ramp's
replicate k has the same initialisation, batches and masks: paired), the ramp's slow phase
starting at --map-threshold T (the preset's 50, then lower: the weight stops its fast growth
sooner and ends smaller). The preset's ramp also trains the runs without AL2 (they do not depend
on the ramp). A user without clean labels picks, per loss, the ramp whose runs end with the best
mean noisy-validation accuracy; ramps.md gives each ramp's final test accuracy (mean ± sd over
the replicates), the chosen one, and the chosen ramp minus the preset's and minus the loss alone
with paired 95% t-intervals and k of n. Each grid resumes where it stopped (--resume semantics).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from al2.training.config import PRESETS, GridConfig
from al2.files import save_csv, save_text
from al2.paths import RESULTS_DIR, resolve, shown
from al2.analyses.replicates import fmt_mean_sd, interval_text, mean_sd, t_interval
from al2.analyses.runs import discover_runs
from al2.training.stopping import STOPPED_EXIT, StopOnSignal
from al2.training.grid import train_grid

THRESHOLDS = (50.0, 15.0, 5.0)      # the quick preset's slow phase starts at 50
FITS = {"bare": "cross-entropy", "gce": "GCE", "mixup": "mixup"}
COLUMNS = ["loss", "threshold", "al2", "replicates", "final_test_acc", "final_test_sd",
           "final_val_acc", "final_val_sd", "max_weight", "chosen"]


def grid_for(threshold: float, replicates: int, epochs: int, subset: int) -> GridConfig:
    preset = PRESETS["remedies-quick"]
    return GridConfig(**{**preset, "preset": "remedies-quick", "baselines": list(FITS),
                         "replicates": replicates, "map_threshold": threshold,
                         "epochs": epochs, "subset": subset,
                         "al2": "both" if threshold == preset["map_threshold"] else "on"})


def final(runs, baseline: str, use_al2: bool, column: str) -> list[float]:
    """The metric at each replicate's last epoch, in replicate order."""
    chosen = sorted((r for r in runs if r.baseline == baseline and r.use_al2 == use_al2),
                    key=lambda r: r.replicate)
    return [r.metric(column, r.epochs) for r in chosen]


def ramp_row(loss: str, threshold, al2: bool, test: list, val: list, weight: float,
             chosen: bool) -> dict:
    """A row of ramps.csv: the runs' final test and noisy-validation accuracy, mean and sd."""
    (test_mean, test_sd, _), (val_mean, val_sd, _) = mean_sd(test), mean_sd(val)
    return {"loss": loss, "threshold": threshold, "al2": al2, "replicates": len(test),
            "final_test_acc": test_mean, "final_test_sd": test_sd, "final_val_acc": val_mean,
            "final_val_sd": val_sd, "max_weight": weight, "chosen": chosen}


def summarise(grids: dict) -> tuple[list[dict], str]:
    """grids: threshold -> its runs. Returns the rows of ramps.csv and ramps.md's text."""
    rows, lines = [], []
    default = max(grids)
    for baseline, loss in FITS.items():
        val = {t: mean_sd(final(runs, baseline, True, "val_acc"))[0] for t, runs in grids.items()}
        chosen = max(val, key=val.get)
        for t, runs in sorted(grids.items(), reverse=True):
            weight = max(r.metric("al2_weight", r.epochs) for r in runs if r.use_al2)
            rows.append(ramp_row(loss, t, True, final(runs, baseline, True, "test_acc"),
                                 final(runs, baseline, True, "val_acc"), weight, t == chosen))
        alone = final(grids[default], baseline, False, "test_acc")
        rows.append(ramp_row(loss, "", False, alone,
                             final(grids[default], baseline, False, "val_acc"), 0.0, False))
        best = final(grids[chosen], baseline, True, "test_acc")
        preset = final(grids[default], baseline, True, "test_acc")
        cells = " | ".join(fmt_mean_sd(final(grids[t], baseline, True, "test_acc"))
                           for t in sorted(grids, reverse=True))
        lines.append(f"| {loss} | {fmt_mean_sd(alone)} | {cells} | {chosen:g} | "
                     f"{interval_text(t_interval([b - a for a, b in zip(preset, best)]))} | "
                     f"{interval_text(t_interval([b - a for a, b in zip(alone, best)]))} |")
    ramps = " | ".join(f"with AL2, T = {t:g}" + (" (preset)" if t == default else "")
                       for t in sorted(grids, reverse=True))
    head = ["# AL2's ramp and the loss beside it (remedies-quick setting, last epoch)", "",
            "Test accuracy (%) at the last epoch, mean ± sd (replicates). T: the ramp's "
            "threshold (--map-threshold). Chosen: the ramp with the best mean noisy-validation "
            "accuracy at the last epoch (what a user without clean labels can do). Differences "
            "are paired by replicate, with the 95% t-interval and in how many replicates the "
            "difference is > 0.", "",
            f"| loss | without AL2 | {ramps} | chosen T | chosen − preset | chosen − without |",
            "|---|---|" + "---|" * len(grids) + "---|---|---|"]
    return rows, "\n".join(head + lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--runs", type=Path, default=RESULTS_DIR / "runs" / "ramps-quick")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "ramps-quick")
    parser.add_argument("--replicates", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=PRESETS["quick"]["epochs"])
    parser.add_argument("--subset", type=int, default=PRESETS["quick"]["subset"],
                        help="training images (a smaller number: a smoke test)")
    args = parser.parse_args(argv)
    if args.replicates < 2 or args.epochs < 1 or args.subset < 64:
        parser.error("need --replicates >= 2 (an interval needs two), --epochs >= 1 and "
                     "--subset >= 64")
    grids, start = {}, time.perf_counter()
    with StopOnSignal() as stop:
        for t in THRESHOLDS:
            folder = resolve(args.runs) / f"threshold-{t:g}"
            grid = grid_for(t, args.replicates, args.epochs, args.subset)
            summary = train_grid(grid, folder, device="cpu",
                                 resume=True, progress=False, stop=stop,
                                 command=f"python code/study_ramps.py (threshold {t:g})")
            if summary["signal"]:
                parser.exit(STOPPED_EXIT, f"study_ramps.py: stopped by {summary['signal']}; "
                                          f"the same command continues\n")
            print(f"threshold {t:g}: {len(summary['runs'])} runs trained into {shown(folder)}",
                  file=sys.stderr)
            grids[t] = discover_runs(folder)
    rows, text = summarise(grids)
    out = resolve(args.out)
    save_csv(rows, out / "ramps.csv", COLUMNS)
    save_text(text, out / "ramps.md")
    print(f"wrote ramps.csv, ramps.md to {shown(out)} ({(time.perf_counter() - start) / 60:.1f} "
          f"min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
