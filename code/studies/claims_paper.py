"""The paper's claims (code/studies/claims.py): Table 1's, the abstract's, the authors' README's,
Sec. 5.1's, Sec. 5.2's and the noise levels', each a row of the README's claims table with its
figures, computed from per-run rows of the results folders."""
from __future__ import annotations

import math

from al2.analyses.evidence import (Claims, above_zero, below_zero, k_of_n, k_of_n_each, paired,
                                   ratio, signed, span)
from al2.files import read_csv
from al2.paths import REPO_ROOT, shown
from al2.training.data import CHANCE

TABLE1 = ("bare", "bn", "do", "wd")
NAME = {"bare": "Bare", "bn": "BN", "do": "DO", "wd": "WD"}


SELECTION = ["baseline", "al2", "replicate", "final_test_acc", "early_stopped_test_acc"]


def memorisation(c: Claims) -> None:
    claim = "AL2 prevents memorisation of corrupted labels (Table 1)"
    sel = c.rows("replicates-quick", "selection.csv", SELECTION)
    gains = {b: c.figure(claim, f"final test acc., {NAME[b]} + AL2 - {NAME[b]}", paired(
        sel.by_replicate("final_test_acc", baseline=b, al2=True),
        sel.by_replicate("final_test_acc", baseline=b, al2=False)), sel.source) for b in TABLE1}
    worst, epochs, trained = paper_scale(c, claim)
    holds = all(above_zero(ci) for ci in gains.values())
    c.row(claim, "**holds**" if holds else "**not in every baseline**",
          "last-epoch test accuracy, AL2 − plain: " + ", ".join(
              f"{NAME[b]} {signed(ci)}" for b, ci in gains.items()) +
          f", {k_of_n_each(gains.values())}; paper scale (one draw, trained to epoch {trained} "
          f"of 700): with-AL2 test accuracy within {within(worst)} points of the paper's at "
          f"epochs {' and '.join(map(str, epochs))}", "replicates-quick, paper")


def within(gap: float) -> str:
    """A bound on |gap| to one decimal, rounded up (1.52 -> "1.6"), so that "within" is true."""
    return f"{math.ceil(round(abs(gap), 9) * 10) / 10:.1f}"


def paper_scale(c: Claims, claim: str) -> tuple[float, list[int], int]:
    """The largest |ours - paper| of the with-AL2 test accuracies of results/paper's runs at
    Table 1's epochs they reached (one draw: no interval)."""
    paper = {(r["baseline"], int(r["epoch"])): float(r["with_al2"]) for r in read_csv(
        REPO_ROOT / "code" / "al2" / "paper" / "table1.csv", "Table 1", "restore it",
        ["baseline", "metric", "epoch", "with_al2"]) if r["metric"] == "TA"}
    gaps, reached, trained = [], set(), 0
    for b in TABLE1:
        path = c.results / "paper" / "runs" / f"{b}_al2_s0" / "metrics.csv"
        metrics = read_csv(path, "metrics file", "restore it", ["epoch", "test_acc"])
        trained = max(trained, int(metrics[-1]["epoch"]))
        for r in metrics:
            if (b, int(r["epoch"])) in paper:
                reached.add(int(r["epoch"]))
                gaps.append(c.figure(claim, f"paper scale, {NAME[b]} + AL2 test acc. at epoch "
                                     f"{r['epoch']} - the paper's", {"n": 1, "mean": float(
                                         r["test_acc"]) - paper[(b, int(r["epoch"]))]},
                                     shown(path))["mean"])
    return max(abs(g) for g in gaps), sorted(reached), trained


def regularisers(c: Claims) -> None:
    claim = "AL2 beats the common regularisers BN, DO, WD (abstract)"
    sel = c.rows("replicates-quick", "selection.csv", SELECTION)
    out = {}
    for measure, column in (("final", "final_test_acc"), ("early-stopped",
                                                          "early_stopped_test_acc")):
        mine = sel.by_replicate(column, baseline="bare", al2=True)
        out[measure] = {b: c.figure(claim, f"{measure} test acc., Bare + AL2 - {NAME[b]}",
                                    paired(mine, sel.by_replicate(column, baseline=b, al2=False)),
                                    sel.source) for b in TABLE1[1:]}
    final, early = (all(above_zero(ci) for ci in out[m].values()) for m in out)
    some = [NAME[b] for b, ci in out["early-stopped"].items() if above_zero(ci)]
    verdict = "**holds**" if final and early else \
        f"**holds at the last epoch; early-stopped, against {', '.join(some)} only**" if \
        final and some else "**holds at the last epoch only**" if final else "**does not hold**"
    text = "; ".join(f"{m}: " + ", ".join(f"− {NAME[b]} {signed(ci)} ({k_of_n(ci)})"
                                          for b, ci in out[m].items()) for m in out)
    c.row(claim, verdict, f"Bare + AL2 {text} (early-stopped: each kept at its best "
          f"noisy-validation epoch)", "replicates-quick")


def activations(c: Claims) -> None:
    claim = ("weight decay raises the trunk's activations; BN and DO restrain them more than "
             "WD, far less than AL2 (authors' README)")
    runs = c.rows("replicates-quick", "runs.csv", ["baseline", "al2", "replicate", "epoch",
                                                    "train_Lr"])
    last = max(int(r["epoch"]) for r in runs.rows)
    lr = {(b, a): runs.by_replicate("train_Lr", baseline=b, al2=a, epoch=last)
          for b in TABLE1 for a in (False, True)}
    bare = lr[("bare", False)]
    wd = c.figure(claim, f"L_r at epoch {last}, WD - Bare", paired(lr[("wd", False)], bare),
                  runs.source)
    ratios = {name: c.figure(claim, f"L_r at epoch {last}, Bare / {name} (paired ratio)",
                             ratio(bare, lr[key]), runs.source)
              for name, key in (("BN", ("bn", False)), ("DO", ("do", False)),
                                ("Bare + AL2", ("bare", True)))}
    raised = above_zero(wd)
    restrained = all(r["low"] > 1 for r in ratios.values()) and \
        ratios["Bare + AL2"]["low"] > max(ratios["BN"]["high"], ratios["DO"]["high"])
    verdict = "**holds**" if raised and restrained else "**in part**" if restrained else \
        "**does not hold**"
    wd_text = "raised" if raised else "lowered" if below_zero(wd) else "not raised"
    c.row(claim, verdict, f"per-run L_r at epoch {last}, paired: WD − Bare {signed(wd, 2)} "
          f"({wd_text}); Bare's divided by " + ", ".join(
              f"{name} {r['mean']:.3g} [{r['low']:.3g}, {r['high']:.3g}] ({k_of_n(r)})"
              for name, r in ratios.items()), "replicates-quick")


def similarity(c: Claims) -> None:
    claim = "AL2 learns more general representations (Sec. 5.1, Fig. 1), read as more similar " \
            "across initialisations"
    sim = c.rows("replicates-quick", "similarity.csv", ["epoch", "pair", "run_a", "statistic",
                                                        "value"])
    cca = {}
    for r in sim.rows:
        if r["run_a"].startswith("bare_") and r["statistic"] == "mean_cca_authors" and \
                r["pair"] in ("seeds_al2", "seeds_plain"):
            cca.setdefault((int(r["epoch"]), r["pair"]), []).append(float(r["value"]))
    epochs = sorted({e for e, _ in cca})
    stats = {e: (span(cca[(e, "seeds_al2")]), span(cca[(e, "seeds_plain")])) for e in epochs}
    for e, (a, p) in stats.items():
        c.figure(claim, f"epoch {e}: mean CCA of AL2 pairs - of plain pairs (means; ranges "
                 f"{a[1]:.3f}–{a[2]:.3f} and {p[1]:.3f}–{p[2]:.3f})",
                 {"n": len(cca[(e, "seeds_al2")]), "mean": a[0] - p[0]}, sim.source)
    apart = [e for e in epochs if all(stats[x][0][2] < stats[x][1][1] or stats[x][1][2] <
                                      stats[x][0][1] for x in epochs if x >= e)]
    runs = c.rows("replicates-quick", "runs.csv", ["baseline", "al2", "replicate", "epoch",
                                                    "test_acc"])
    accuracy = {e: paired(runs.by_replicate("test_acc", baseline="bare", al2=True, epoch=e),
                          runs.by_replicate("test_acc", baseline="bare", al2=False, epoch=e))
                for e in epochs if e > 0}
    # the last compared epoch at which the two kinds' test accuracies are alike (the interval
    # of AL2 - plain contains 0): similarity there is not a difference of accuracy
    first = max(e for e, ci in accuracy.items() if not above_zero(ci) and not below_zero(ci)
                and all(not above_zero(accuracy[x]) for x in accuracy if x < e))
    equal = c.figure(claim, f"test acc. at epoch {first}, Bare + AL2 - Bare", accuracy[first],
                     runs.source)
    (a, p), n = stats[epochs[-1]], len(cca[(epochs[-1], "seeds_al2")])
    less = a[0] < p[0] and bool(apart)
    c.row(claim, "**does not hold**" if less else "**holds**" if a[0] > p[0] and apart else
          "**undecided**",
          f"mean CCA at epoch {epochs[-1]}: {n} AL2 pairs {a[0]:.3f} (range {a[1]:.3f}–"
          f"{a[2]:.3f}), {n} plain pairs {p[0]:.3f} ({p[1]:.3f}–{p[2]:.3f})" +
          (f", ranges apart from epoch {apart[0]}" if apart else ", ranges overlap") +
          f"; at epoch {first}, where test accuracy is alike (AL2 − plain {signed(equal)}, "
          f"{k_of_n(equal)}), {stats[first][0][0]:.3f} vs {stats[first][1][0]:.3f}",
          "replicates-quick")


READINGS = {"points": lambda a0, a: a, "relative": lambda a0, a: a / a0,
            "share above chance": lambda a0, a: (a - CHANCE) / (a0 - CHANCE)}


def ablation(c: Claims, fraction: float = 0.5) -> None:
    claim = "AL2 networks are more robust to cumulative ablation (Sec. 5.2)"
    rows = c.rows("replicates-quick", "ablation.csv", ["run", "baseline", "al2", "mode",
                                                       "fraction", "acc_test"])
    acc = {}
    for r in rows.rows:
        replicate = int(r["run"].rsplit("_r", 1)[1])
        acc[(r["mode"], r["baseline"], r["al2"] == "True", replicate, float(r["fraction"]))] = \
            float(r["acc_test"])
    replicates = sorted({key[3] for key in acc})
    more, less, parts = [], [], []
    for mode in ("element", "unit"):
        for reading, f in READINGS.items():
            found = {}
            for b in TABLE1:
                side = {a: {k: f(acc[(mode, b, a, k, 0.0)], acc[(mode, b, a, k, fraction)])
                            for k in replicates} for a in (True, False)}
                found[b] = c.figure(claim, f"{mode} mode, {fraction:.0%} zeroed, {reading}: "
                                    f"{NAME[b]} + AL2 - {NAME[b]}",
                                    paired(side[True], side[False]), rows.source)
            up = [NAME[b] for b, ci in found.items() if above_zero(ci)]
            down = [NAME[b] for b, ci in found.items() if below_zero(ci)]
            (more if len(up) > len(down) else less if down else []).append(f"{mode} {reading}")
            parts.append(f"{mode} {reading}: " + ("+ " + ", ".join(up) if up else "") +
                         (" " if up and down else "") + ("− " + ", ".join(down) if down else "")
                         + ("none apart" if not up and not down else ""))
    verdict = "**holds**" if not less and len(more) == 6 else "**does not hold**" if not more \
        else "**depends on the reading**"
    c.row(claim, verdict, f"test accuracy with {fraction:.0%} of the trunk's outputs zeroed, "
          f"AL2 − plain, paired; + / − : the baselines where AL2 keeps more / less, 5 replicates "
          f"(intervals in claims.md): " + "; ".join(parts) +
          f". More robust by {', '.join(more) or 'no reading'}; less by "
          f"{', '.join(less) or 'no reading'}", "replicates-quick")


def noise(c: Claims) -> None:
    claim = "the effect grows with label noise (label randomisation tests)"
    sel = c.rows("noise-quick", "selection.csv", SELECTION + ["level"])
    levels = sorted({float(r["level"]) for r in sel.rows})
    gains = {}
    for measure, column in (("final", "final_test_acc"), ("early-stopped",
                                                          "early_stopped_test_acc")):
        gains[measure] = [c.figure(claim, f"{level:g}% noise, {measure} test acc., Bare + AL2 - "
                                          f"Bare", paired(
            sel.by_replicate(column, baseline="bare", al2=True, level=level),
            sel.by_replicate(column, baseline="bare", al2=False, level=level)), sel.source)
            for level in levels]
    final = [ci["mean"] for ci in gains["final"]]
    peak = final.index(max(final))
    rising = all(a < b for a, b in zip(final[:peak], final[1:peak + 1]))
    verdict = "**holds**" if rising and peak == len(levels) - 1 else \
        f"**holds up to {levels[peak]:g}% noise**" if rising else "**does not hold**"
    c.row(claim, verdict, "Bare + AL2 − Bare, last epoch: " + ", ".join(
        f"{signed(ci)} ({level:g}%)" for level, ci in zip(levels, gains["final"])) +
        f" ({k_of_n_each(gains['final'])}); early-stopped: " + ", ".join(
        f"{signed(ci)} ({level:g}%)" for level, ci in zip(levels, gains["early-stopped"])),
        "noise-quick")


CLAIMS = (memorisation, regularisers, activations, similarity, ablation, noise)
