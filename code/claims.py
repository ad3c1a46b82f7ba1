"""The paper's claims against the committed results: the figures behind the README's claims
table, each computed from a results folder's CSV files (no training, no checkpoints).

    python code/claims.py                  # results/* -> results/claims/claims.md, claims.csv

Paired comparisons are within a replicate of results/replicates-quick (same initialisation
stream, batch order and labels; only the compared setting differs): mean difference, its 95%
t-interval over the replicates, and in how many the first is ahead. The ablation is also given
relative to each network's own unablated accuracy, which removes the confound that a network
that memorised starts lower.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from scipy import stats

from al2.errors import UserError
from al2.files import read_csv, save_csv, save_text
from al2.paths import RESULTS_DIR, resolve, shown
from al2.analyses.replicates import interval_text, t_interval

COLUMNS = ["claim", "measure", "mean", "low", "high", "ahead", "n", "source"]
CHANCE = 10.0   # test accuracy (%) of a constant prediction on MNIST's 10 classes


def read(path: Path, columns: list[str]) -> list[dict]:
    """A results CSV with the columns used here (files.read_csv: a FileError naming it)."""
    return read_csv(path, "results table", "regenerate it with the command its folder's "
                    "README names", columns)


def row(claim: str, measure: str, ci: dict, source: str) -> dict:
    return {"claim": claim, "measure": measure, "mean": ci["mean"], "low": ci["low"],
            "high": ci["high"], "ahead": ci["positive"], "n": ci["n"], "source": source}


def by_replicate(selection: list[dict], baseline: str, al2: bool, column: str) -> dict:
    """replicate -> value of the run (baseline, AL2) in selection.csv (the grid's first seed)."""
    rows = [r for r in selection if r["baseline"] == baseline and (r["al2"] == "True") == al2]
    seed = min(int(r["seed"]) for r in rows)
    return {int(r["replicate"]): float(r[column]) for r in rows if int(r["seed"]) == seed}


def paired(a: dict, b: dict) -> dict:
    """t_interval of a - b over the replicates both have."""
    return t_interval([a[k] - b[k] for k in sorted(a) if k in b])


def regularisers(folder: Path) -> list[dict]:
    """Bare + AL2 against BN, DO and WD alone; each regulariser with AL2 against it alone."""
    sel = read(folder / "selection.csv", ["baseline", "al2", "seed", "replicate",
                                          "final_test_acc", "early_stopped_test_acc"])
    source = shown(folder / "selection.csv")
    out = []
    for measure, column in (("final", "final_test_acc"),
                            ("early-stopped", "early_stopped_test_acc")):
        bare_al2 = by_replicate(sel, "bare", True, column)
        for other in ("bn", "do", "wd"):
            out.append(row("Bare + AL2 beats the common regularisers",
                           f"{measure} test acc., Bare + AL2 - {other.upper()}",
                           paired(bare_al2, by_replicate(sel, other, False, column)), source))
        for baseline in ("bare", "bn", "do", "wd"):
            out.append(row("AL2 prevents memorisation",
                           f"{measure} test acc., {baseline.upper()} + AL2 - {baseline.upper()}",
                           paired(by_replicate(sel, baseline, True, column),
                                  by_replicate(sel, baseline, False, column)), source))
    return out


def activations(folder: Path) -> list[dict]:
    """L_r at the last epoch column of Table 1 (mean and sd over the replicates): each
    regulariser against Bare (Welch's interval: the CSV holds means and sds, not the runs), and
    the ratio Bare / regulariser."""
    table = read(folder / "table1.csv", ["baseline", "metric", "al2", "epoch", "ours",
                                         "ours_std", "seeds"])
    source = shown(folder / "table1.csv")
    last = max(int(r["epoch"]) for r in table)
    lr = {(r["baseline"], r["al2"]): (float(r["ours"]), float(r["ours_std"]), int(r["seeds"]))
          for r in table if r["metric"] == "Lr" and int(r["epoch"]) == last}
    out = []
    bare = lr[("bare", "without")]
    for other, al2 in (("wd", "without"), ("bn", "without"), ("do", "without"),
                       ("bare", "with")):
        m, s, n = lr[(other, al2)]
        if al2 == "with":
            m, s = m / 100, s / 100       # Table 1 prints the with-AL2 L_r x 100
        ci = welch(m, s, n, *bare)
        name = f"{other.upper()}{' + AL2' if al2 == 'with' else ''}"
        out.append(row("trunk activations (L_r) against Bare", f"L_r at epoch {last}, {name} - "
                       f"Bare (Welch); ratio Bare / {name} {bare[0] / m:.3g}", ci, source))
    return out


def welch(m1: float, s1: float, n1: int, m2: float, s2: float, n2: int) -> dict:
    """m1 - m2 with Welch's 95% t-interval, from means, sds and counts."""
    v1, v2 = s1 ** 2 / n1, s2 ** 2 / n2
    df = (v1 + v2) ** 2 / (v1 ** 2 / (n1 - 1) + v2 ** 2 / (n2 - 1))
    half = stats.t.ppf(0.975, df) * math.sqrt(v1 + v2)
    d = m1 - m2
    return {"n": min(n1, n2), "mean": d, "low": d - half, "high": d + half,
            "positive": math.nan}


def ablation(folder: Path) -> list[dict]:
    """Cumulative ablation (unit mode, test images) at 50% and 90% of the channels zeroed: AL2 -
    plain in accuracy, in accuracy relative to the unablated network, and in the share of the
    accuracy above chance that is kept, paired by replicate."""
    rows = read(folder / "ablation.csv", ["run", "baseline", "al2", "mode", "fraction",
                                          "acc_test"])
    source = shown(folder / "ablation.csv")
    acc = {}
    for r in rows:
        if r["mode"] == "unit":
            acc[(r["run"], float(r["fraction"]))] = float(r["acc_test"])
    runs = {r["run"]: r for r in rows}
    out = []
    for baseline in ("bare", "bn", "do", "wd"):
        for fraction in (0.5, 0.9):
            values = {"accuracy": ({}, {}), "relative": ({}, {}), "above chance kept": ({}, {})}
            for name, r in runs.items():
                if r["baseline"] != baseline:
                    continue
                replicate = int(name.rsplit("_r", 1)[1]) if "_r" in name else 0
                a0, af = acc[(name, 0.0)], acc[(name, fraction)]
                side = 1 if r["al2"] == "True" else 0
                values["accuracy"][side][replicate] = af
                values["relative"][side][replicate] = af / a0
                values["above chance kept"][side][replicate] = (af - CHANCE) / (a0 - CHANCE)
            for what, (plain, al2) in values.items():
                out.append(row("AL2 networks are more robust to cumulative ablation",
                               f"{baseline.upper()}, {fraction:.0%} of channels zeroed, "
                               f"{what}: AL2 - plain", paired(al2, plain), source))
    return out


def similarity(folder: Path) -> list[dict]:
    """Fig. 1's mean CCA (the authors' statistic) of AL2 pairs and plain pairs at each compared
    epoch: their difference of means (pairs share networks, so no interval), with the ranges."""
    rows = [r for r in read(folder / "similarity_summary.csv",
                            ["epoch", "baseline", "pair", "statistic", "pairs", "mean", "min",
                             "max"])
            if r["baseline"] == "bare" and r["statistic"] == "mean_cca_authors"]
    source = shown(folder / "similarity_summary.csv")
    cell = {(int(r["epoch"]), r["pair"]): r for r in rows}
    out = []
    for epoch in sorted({e for e, _ in cell}):
        a, p = cell.get((epoch, "seeds_al2")), cell.get((epoch, "seeds_plain"))
        if a is None or p is None:
            continue
        separated = float(a["max"]) < float(p["min"]) or float(p["max"]) < float(a["min"])
        out.append({"claim": "AL2 learns more general (more similar) representations",
                    "measure": f"epoch {epoch}: mean CCA of AL2 pairs {float(a['mean']):.3f} "
                               f"[{float(a['min']):.3f}, {float(a['max']):.3f}] - plain pairs "
                               f"{float(p['mean']):.3f} [{float(p['min']):.3f}, "
                               f"{float(p['max']):.3f}]" + ("; ranges disjoint" if separated
                                                            else "; ranges overlap"),
                    "mean": float(a["mean"]) - float(p["mean"]), "low": math.nan,
                    "high": math.nan, "ahead": math.nan, "n": int(a["pairs"]), "source": source})
    return out


def noise(folder: Path) -> list[dict]:
    """AL2's gain at each label-noise level (mean over the sweep's seeds: one batch order)."""
    rows = read(folder / "noise.csv", ["baseline", "al2", "level", "seeds", "test_acc"])
    source = shown(folder / "noise.csv")
    cell = {(float(r["level"]), r["al2"]): r for r in rows if r["baseline"] == "bare"}
    out = []
    for level in sorted({lv for lv, _ in cell}):
        w, wo = cell[(level, "with")], cell[(level, "without")]
        out.append({"claim": "the effect across label-noise levels",
                    "measure": f"{level:g}% noise: test acc. Bare + AL2 - Bare (mean of "
                               f"{w['seeds']} seeds, one batch order)",
                    "mean": float(w["test_acc"]) - float(wo["test_acc"]), "low": math.nan,
                    "high": math.nan, "ahead": math.nan, "n": int(w["seeds"]),
                    "source": source})
    return out


def markdown(rows: list[dict]) -> str:
    lines = ["# The paper's claims: the figures", "",
             "Made by `python code/claims.py` from the results folders' CSV files. Each line: "
             "the difference, its 95% t-interval over the replicates and in how many of them "
             "the first is ahead (paired within a replicate unless marked Welch); without an "
             "interval where the source has none.", ""]
    for claim in dict.fromkeys(r["claim"] for r in rows):
        lines += [f"## {claim}", ""]
        for r in (r for r in rows if r["claim"] == claim):
            if math.isnan(r["low"]):
                figure = f"{r['mean']:+.3f} (n {r['n']})"
            elif math.isnan(r["ahead"]):
                figure = f"{r['mean']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}] (n {r['n']})"
            else:
                figure = interval_text({"n": r["n"], "mean": r["mean"], "low": r["low"],
                                        "high": r["high"], "positive": r["ahead"]}, 3)
            lines.append(f"- {r['measure']}: **{figure}** (`{r['source']}`)")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--results", type=Path, default=RESULTS_DIR, help="the results folder")
    p.add_argument("--out", type=Path, default=None, help="default: <results>/claims")
    args = p.parse_args(argv)
    results = resolve(args.results)
    out = resolve(args.out or results / "claims")
    replicates = results / "replicates-quick"
    try:
        rows = (regularisers(replicates) + activations(replicates) + ablation(replicates)
                + similarity(replicates) + noise(results / "noise-quick"))
    except (UserError, OSError, KeyError, ValueError) as e:
        p.exit(2, f"claims.py: error: cannot read the results under {shown(results)}: {e}\n")
    out.mkdir(parents=True, exist_ok=True)
    save_csv(rows, out / "claims.csv", COLUMNS)
    save_text(markdown(rows), out / "claims.md")
    print(f"wrote {shown(out / 'claims.md')} and claims.csv ({len(rows)} figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
