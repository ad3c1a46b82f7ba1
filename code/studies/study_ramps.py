"""Is AL2 incompatible with GCE and mixup, or is the quick preset's ramp too steep for them?
(results/ramps-quick). AL2 with cross-entropy (the control), GCE and mixup at the preset's ramp
and gentler ones, the ramp chosen on the noisy validation set as a user could, then tested on
fresh replicates that took no part in the choice.

    python code/studies/study_ramps.py        # -> results/runs/ramps-quick/, results/ramps-quick/

In sample: one grid per ramp (the remedies-quick setting: 8,000 images, 35 epochs, a
1,000-image noisy validation set; Bare (cross-entropy), GCE and mixup with AL2; replicates
0-2, so every ramp's replicate k has the same initialisation, batches and masks: paired), the
ramp's slow phase starting at --map-threshold T (the preset's 50, then lower: the weight stops
its fast growth sooner and ends smaller). The preset's ramp also trains the runs without AL2
(they do not depend on the ramp). A user without clean labels picks, per loss, the ramp whose
runs end with the best mean noisy-validation accuracy.

Out of sample: --fresh replicates numbered from --fresh-first (by default 5-9: after
remedies-quick's 0-4, so no run of them was trained before), each loss alone, with AL2 at the
preset's ramp and at its chosen ramp: AL2 - the loss alone at the last epoch and early-stopped
(the epoch of best noisy-validation accuracy), paired by replicate.

Writes ramps.csv/.md (the choice, in sample), out_of_sample.csv/.md (the fresh replicates) and
ramps_runs.csv (every run: the per-run rows every figure comes from). Each grid resumes where it
stopped (--resume semantics).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's al2 and svcca,
sys.path.insert(1, str(Path(__file__).resolve().parents[2]))  # not an installed checkout's

from al2.analyses.replicates import (fmt_mean_sd, interval_text, mean_sd, selection,
                                     t_interval)
from al2.analyses.runs import discover_runs
from al2.files import save_csv, save_text
from al2.paths import RESULTS_DIR, resolve, shown
from al2.training.config import GridConfig
from al2.training.presets import PRESETS, QUICK_RAMP
from al2.training.grid import train_grid
from al2.training.stopping import STOPPED_EXIT, StopOnSignal

PRESET = "remedies-quick"
THRESHOLDS = (QUICK_RAMP["map_threshold"], 15.0, 5.0)   # the quick preset's, then lower
FITS = {"bare": "cross-entropy", "gce": "GCE", "mixup": "mixup"}
COLUMNS = ["loss", "threshold", "al2", "replicates", "final_test_acc", "final_test_sd",
           "final_val_acc", "final_val_sd", "max_weight", "chosen"]
RUN_COLUMNS = ["sample", "loss", "baseline", "threshold", "al2", "replicate", "epoch",
               "final_test_acc", "final_val_acc", "val_epoch", "early_stopped_test_acc",
               "max_weight"]
OUT_COLUMNS = ["loss", "comparison", "threshold", "measure", "n", "mean_diff", "ci_low",
               "ci_high", "ahead"]
MEASURES = {"final": "final_test_acc", "early-stopped": "early_stopped_test_acc"}


class Stopped(Exception):
    """A signal stopped a grid; the same command continues it."""


def grid_for(threshold: float, replicates: int, epochs: int, subset: int, first: int = 0,
             baselines=tuple(FITS), both: bool | None = None) -> GridConfig:
    """A grid of the study: `baselines` with AL2 at ramp `threshold` (and without it at the
    preset's ramp), replicates first .. first + replicates - 1."""
    preset = PRESETS[PRESET]
    both = threshold == preset["map_threshold"] if both is None else both
    return GridConfig(**{**preset, "preset": PRESET, "baselines": list(baselines),
                         "replicates": replicates, "first_replicate": first,
                         "map_threshold": threshold, "epochs": epochs, "subset": subset,
                         "al2": "both" if both else "on"})


def train(grid: GridConfig, folder: Path, stop, label: str) -> list:
    """Train (or resume) one grid of the study; its runs read back."""
    summary = train_grid(grid, folder, device="cpu", resume=True, progress=False, stop=stop,
                         command=f"python code/studies/study_ramps.py ({label})")
    if summary["signal"]:
        raise Stopped(summary["signal"])
    print(f"{label}: {len(summary['runs'])} runs trained into {shown(folder)}", file=sys.stderr)
    return discover_runs(folder)


def run_rows(runs, sample: str, threshold: float) -> list[dict]:
    """ramps_runs.csv's rows of one grid: each run's last-epoch and early-stopped accuracy."""
    rows = []
    for r in sorted(runs, key=lambda r: (r.baseline, r.use_al2, r.replicate)):
        s = selection(r)
        rows.append({"sample": sample, "loss": FITS[r.baseline], "baseline": r.baseline,
                     "threshold": threshold if r.use_al2 else "", "al2": r.use_al2,
                     "replicate": r.replicate, "epoch": s["epoch"],
                     "final_test_acc": s["final_test_acc"],
                     "final_val_acc": r.metric("val_acc", r.epochs), "val_epoch": s["val_epoch"],
                     "early_stopped_test_acc": s["early_stopped_test_acc"],
                     "max_weight": r.metric("al2_weight", r.epochs) if r.use_al2 else 0.0})
    return rows


def values(rows: list[dict], loss: str, threshold, column: str, sample: str = "in") -> dict:
    """replicate -> `column` of the runs of `loss` at ramp `threshold` ("" = without AL2)."""
    return {r["replicate"]: r[column] for r in rows if r["sample"] == sample and
            r["loss"] == loss and r["threshold"] == threshold}


def paired(a: dict, b: dict) -> dict:
    """t_interval of b - a over the replicates both have."""
    return t_interval([b[k] - a[k] for k in sorted(a) if k in b])


def choose(rows: list[dict]) -> dict:
    """loss -> the ramp with the best mean last-epoch noisy-validation accuracy (in sample)."""
    chosen = {}
    for loss in FITS.values():
        val = {t: mean_sd(list(values(rows, loss, t, "final_val_acc").values()))[0]
               for t in THRESHOLDS}
        chosen[loss] = max(val, key=val.get)
    return chosen


def summarise(rows: list[dict], chosen: dict) -> tuple[list[dict], str]:
    """ramps.csv's rows and ramps.md's text: the in-sample study and its choice."""
    out, lines, default = [], [], max(THRESHOLDS)
    for loss in FITS.values():
        def cell(t, column="final_test_acc"):
            return list(values(rows, loss, t, column).values())
        for t in (*sorted(THRESHOLDS, reverse=True), ""):
            (test, test_sd, n) = mean_sd(cell(t))
            (val, val_sd, _) = mean_sd(cell(t, "final_val_acc"))
            weight = max(cell(t, "max_weight")) if t != "" else 0.0
            out.append({"loss": loss, "threshold": t, "al2": t != "", "replicates": n,
                        "final_test_acc": test, "final_test_sd": test_sd, "final_val_acc": val,
                        "final_val_sd": val_sd, "max_weight": weight,
                        "chosen": t == chosen[loss]})
        best, test = chosen[loss], (lambda t: values(rows, loss, t, "final_test_acc"))
        cells = " | ".join(fmt_mean_sd(cell(t)) for t in sorted(THRESHOLDS, reverse=True))
        lines.append(f"| {loss} | {fmt_mean_sd(cell(''))} | {cells} | {best:g} | "
                     f"{interval_text(paired(test(default), test(best)))} | "
                     f"{interval_text(paired(test(''), test(best)))} |")
    ramps = " | ".join(f"with AL2, T = {t:g}" + (" (preset)" if t == default else "")
                       for t in sorted(THRESHOLDS, reverse=True))
    head = ["# AL2's ramp and the loss beside it (remedies-quick setting, last epoch)", "",
            "Test accuracy (%) at the last epoch, mean ± sd (replicates). T: the ramp's "
            "threshold (--map-threshold). Chosen: the ramp with the best mean noisy-validation "
            "accuracy at the last epoch (what a user without clean labels can do). Differences "
            "are paired by replicate, with the 95% t-interval and in how many replicates the "
            "difference is > 0. In sample: the replicates that made the choice.", "",
            f"| loss | without AL2 | {ramps} | chosen T | chosen − preset | chosen − without |",
            "|---|---|" + "---|" * len(THRESHOLDS) + "---|---|---|"]
    return out, "\n".join(head + lines) + "\n"


def out_of_sample(rows: list[dict], chosen: dict) -> tuple[list[dict], str]:
    """out_of_sample.csv's rows and .md's text: on the fresh replicates, AL2 at the preset's
    and at the chosen ramp against the loss alone, at the last epoch and early-stopped."""
    out, lines, default = [], [], max(THRESHOLDS)
    for loss in FITS.values():
        best = chosen[loss]
        ramps = {default: "the preset ramp", best: "the chosen ramp"} if best != default \
            else {default: "the preset (and chosen) ramp"}
        cells = []
        for measure, column in MEASURES.items():
            alone = values(rows, loss, "", column, "out")
            cis = {t: paired(alone, values(rows, loss, t, column, "out")) for t in ramps}
            out += [{"loss": loss, "comparison": f"AL2 at {what} - alone", "threshold": t,
                     "measure": measure, "n": ci["n"], "mean_diff": ci["mean"],
                     "ci_low": ci["low"], "ci_high": ci["high"], "ahead": ci["positive"]}
                    for (t, what), ci in zip(ramps.items(), cis.values())]
            cells += [interval_text(cis[default]), interval_text(cis[best])]
        lines.append(f"| {loss} | {chosen[loss]:g} | " + " | ".join(cells) + " |")
    head = ["# The chosen ramp on fresh replicates (out of sample)", "",
            "AL2 − the loss alone, test accuracy (points), paired by replicate on replicates "
            "that took no part in the choice: the mean difference, its 95% t-interval and in "
            "how many replicates AL2 is ahead, at the preset's ramp (T = 50) and at the ramp "
            "chosen in sample (the same figure twice when that is the preset's). *final*: at "
            "the last epoch; *early-stopped*: at the epoch of best noisy-validation accuracy.",
            "", "| loss | chosen T | final, preset | final, chosen | early-stopped, preset | "
            "early-stopped, chosen |", "|---|---|---|---|---|---|"]
    return out, "\n".join(head + lines) + "\n"


def fresh_grids(chosen: dict, args) -> dict:
    """label -> (threshold, grid) of the out-of-sample grids: every loss without AL2 and with it
    at the preset's ramp; each chosen ramp that is not the preset's for the losses that chose
    it."""
    default = max(THRESHOLDS)
    grids = {f"fresh-threshold-{default:g}": (default, grid_for(
        default, args.fresh, args.epochs, args.subset, args.fresh_first))}
    for t in sorted(set(chosen.values()) - {default}, reverse=True):
        losses = [b for b, loss in FITS.items() if chosen[loss] == t]
        grids[f"fresh-threshold-{t:g}"] = (t, grid_for(t, args.fresh, args.epochs, args.subset,
                                                       args.fresh_first, losses, both=False))
    return grids


def run_study(args, stop) -> tuple[list[dict], dict]:
    """Train the in-sample grids, choose, train the fresh ones: (ramps_runs.csv's rows, the
    choice per loss)."""
    rows = []
    for t in THRESHOLDS:
        label = f"threshold-{t:g}"
        grid = grid_for(t, args.replicates, args.epochs, args.subset)
        rows += run_rows(train(grid, resolve(args.runs) / label, stop, label), "in", t)
    chosen = choose(rows)
    if args.fresh:
        for label, (t, grid) in fresh_grids(chosen, args).items():
            rows += run_rows(train(grid, resolve(args.runs) / label, stop, label), "out", t)
    return rows, chosen


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--runs", type=Path, default=RESULTS_DIR / "runs" / "ramps-quick")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "ramps-quick")
    parser.add_argument("--replicates", type=int, default=3,
                        help="in-sample replicates (0 .. N-1), which choose the ramp")
    parser.add_argument("--fresh", type=int, default=5,
                        help="out-of-sample replicates (0: none)")
    parser.add_argument("--fresh-first", type=int, default=5,
                        help="the number of the first fresh replicate (>= --replicates)")
    parser.add_argument("--epochs", type=int, default=PRESETS["quick"]["epochs"])
    parser.add_argument("--subset", type=int, default=PRESETS["quick"]["subset"],
                        help="training images (a smaller number: a smoke test)")
    args = parser.parse_args(argv)
    if args.replicates < 2 or args.epochs < 1 or args.subset < 64 or args.fresh == 1 \
            or args.fresh < 0 or args.fresh_first < args.replicates:
        parser.error("need --replicates >= 2 and --fresh 0 or >= 2 (an interval needs two), "
                     "--fresh-first >= --replicates, --epochs >= 1 and --subset >= 64")
    start = time.perf_counter()
    try:
        with StopOnSignal() as stop:
            rows, chosen = run_study(args, stop)
    except Stopped as e:
        parser.exit(STOPPED_EXIT, f"study_ramps.py: stopped by {e}; the same command "
                                  f"continues\n")
    out = resolve(args.out)
    save_csv(rows, out / "ramps_runs.csv", RUN_COLUMNS)
    summary, text = summarise(rows, chosen)
    save_csv(summary, out / "ramps.csv", COLUMNS)
    save_text(text, out / "ramps.md")
    written = ["ramps_runs.csv", "ramps.csv", "ramps.md"]
    if args.fresh:
        summary, text = out_of_sample(rows, chosen)
        save_csv(summary, out / "out_of_sample.csv", OUT_COLUMNS)
        save_text(text, out / "out_of_sample.md")
        written += ["out_of_sample.csv", "out_of_sample.md"]
    print(f"wrote {', '.join(written)} to {shown(out)} "
          f"({(time.perf_counter() - start) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
