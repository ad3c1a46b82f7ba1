"""The paper's claims (code/studies/claims.py): Table 1's, the abstract's, the authors' README's,
Sec. 5.1's, Sec. 5.2's and the noise levels', each a row of the README's claims table with its
figures, computed from per-run rows of the results folders."""
from __future__ import annotations

import math

from al2.analyses.evidence import (Claims, above_zero, below_zero, differences, headline,
                                   k_of_n, k_of_n_each, paired, ratio, signed, span)
from al2.files import read_csv, read_json
from al2.paths import REPO_ROOT, shown
from al2.training.config import GridConfig
from al2.training.data import CHANCE
from al2.training.folder import CONFIG_FILE, METRICS_FILE

TABLE1 = ("bare", "bn", "do", "wd")
DEFAULT_DECAY = GridConfig().weight_decay   # the WD baseline's, the paper's setting
NAME = {"bare": "Bare", "bn": "BN", "do": "DO", "wd": "WD"}


SELECTION = ["baseline", "al2", "replicate", "final_test_acc", "early_stopped_test_acc"]


def memorisation(c: Claims) -> None:
    claim = "AL2 prevents memorisation of corrupted labels (Table 1)"
    sel = c.rows("replicates-quick", "selection.csv", SELECTION)
    gains = {b: c.figure(claim, f"final test acc., {NAME[b]} + AL2 - {NAME[b]}",
                         sel.al2_gain("final_test_acc", baseline=b), sel.source) for b in TABLE1}
    fresh = c.rows("independent-quick", "selection.csv", SELECTION)
    draws = c.figure(claim, "final test acc., Bare + AL2 - Bare: replicates each with its own "
                     "label corruption", fresh.al2_gain("final_test_acc", baseline="bare"),
                     fresh.source)
    holds = all(above_zero(ci) for ci in gains.values())
    c.row(claim, "**holds**" if holds else "**not in every baseline**",
          "last-epoch test accuracy, AL2 − plain: " + ", ".join(
              f"{NAME[b]} {signed(ci)}" for b, ci in gains.items()) +
          f", {k_of_n_each(gains.values())}; Bare over {draws['n']} replicates that differ in "
          f"every draw, the label corruption included: {signed(draws)} ({k_of_n(draws)}); "
          f"paper scale: {paper_scale(c, claim)}",
          "replicates-quick, independent-quick, paper",
          headline(gains, "last epoch, {b} + AL2 − {b}", NAME))


def within(gap: float) -> str:
    """A bound on |gap| to one decimal, rounded up (1.52 -> "1.6"), so that "within" is true."""
    return f"{math.ceil(round(abs(gap), 9) * 10) / 10:.1f}"


def paper_scale(c: Claims, claim: str) -> str:
    """results/paper's runs beside the paper's Table 1 (one draw: no interval): the largest
    |ours - paper| of the with-AL2 and of the plain test accuracies at the epochs reached; a
    run whose weight decay is not the paper's default is said apart, with its gap."""
    paper = {(r["baseline"], int(r["epoch"]), al2): float(r[f"{al2}_al2"]) for r in read_csv(
        REPO_ROOT / "code" / "al2" / "paper" / "table1.csv", "Table 1", "restore it",
        ["baseline", "metric", "epoch", "with_al2", "without_al2"]) for al2 in ("with",
                                                                                 "without")
        if r["metric"] == "TA"}
    gaps, reached, trained, odd = {}, set(), 0, {}
    for b in TABLE1:
        for al2, kind in (("with", "al2"), ("without", "plain")):
            folder = c.results / "paper" / "runs" / f"{b}_{kind}_s0"
            config = read_json(folder / CONFIG_FILE, "run config", "restore it")
            if config["weight_decay"] and config["weight_decay"] != DEFAULT_DECAY:
                odd[b] = config["weight_decay"]
            metrics = read_csv(folder / METRICS_FILE, "metrics file", "restore it",
                               ["epoch", "test_acc"])
            trained, planned = max(trained, int(metrics[-1]["epoch"])), config["grid"]["epochs"]
            for r in metrics:
                if (b, int(r["epoch"]), al2) in paper:
                    reached.add(int(r["epoch"]))
                    gaps[(b, al2, int(r["epoch"]))] = c.figure(
                        claim, f"paper scale, {NAME[b]}{' + AL2' if al2 == 'with' else ''} test "
                               f"acc. at epoch {r['epoch']} - the paper's",
                        {"n": 1, "mean": float(r["test_acc"]) - paper[(b, int(r["epoch"]),
                                                                       al2)]},
                        shown(folder / METRICS_FILE))["mean"]
    worst = {al2: max(abs(g) for (b, a, _), g in gaps.items() if a == al2 and
                      (al2 == "with" or b not in odd)) for al2 in ("with", "without")}
    apart = "".join(f"; plain {NAME[b]}, trained at weight decay {decay:g} (the default "
                    f"{DEFAULT_DECAY:g}), " + ", ".join(
                        f"{g:+.1f} at epoch {e}" for (bb, a, e), g in gaps.items()
                        if bb == b and a == "without") for b, decay in odd.items())
    plain = ", ".join(NAME[b] for b in TABLE1 if b not in odd)
    return (f"one draw, trained to epoch {trained} of {planned}, test accuracy within "
            f"{within(worst['with'])} points of the paper's with AL2 and within "
            f"{within(worst['without'])} without ({plain}) at epochs "
            f"{' and '.join(map(str, sorted(reached)))}{apart}")


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
          f"noisy-validation epoch)", "replicates-quick",
          headline(out["early-stopped"], "early-stopped, Bare + AL2 − {b}", NAME))


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
              for name, r in ratios.items()), "replicates-quick",
          f"L_r at epoch {last}, WD − Bare: {signed(wd, 2)}, {k_of_n(wd)}")


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
    accuracy = {e: runs.al2_gain("test_acc", baseline="bare", epoch=e) for e in epochs if e > 0}
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
          "replicates-quick", f"mean CCA at epoch {epochs[-1]}: AL2 pairs {a[0]:.3f} "
          f"({a[1]:.3f}–{a[2]:.3f}), plain pairs {p[0]:.3f} ({p[1]:.3f}–{p[2]:.3f})")


# normalised readings first: AL2 networks start higher, which raw points carry along
READINGS = {"relative": lambda a0, a: a / a0,
            "share above chance": lambda a0, a: (a - CHANCE) / (a0 - CHANCE),
            "points": lambda a0, a: a}
NORMALISED = ("relative", "share above chance")


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
    start = {b: c.figure(claim, f"unablated test acc., {NAME[b]} + AL2 - {NAME[b]}", paired(
        *({k: acc[("element", b, a, k, 0.0)] for k in replicates} for a in (True, False))),
        rows.source)["mean"] for b in TABLE1}
    more, less, parts, figures = [], [], {}, {}
    for reading, f in READINGS.items():
        for mode in ("element", "unit"):
            found = {}
            for b in TABLE1:
                side = {a: {k: f(acc[(mode, b, a, k, 0.0)], acc[(mode, b, a, k, fraction)])
                            for k in replicates} for a in (True, False)}
                found[b] = figures[(mode, reading, b)] = c.figure(
                    claim, f"{mode} mode, {fraction:.0%} zeroed, {reading}: {NAME[b]} + AL2 - "
                           f"{NAME[b]}", paired(side[True], side[False]), rows.source)
            up = [NAME[b] for b, ci in found.items() if above_zero(ci)]
            down = [NAME[b] for b, ci in found.items() if below_zero(ci)]
            if reading in NORMALISED:
                (more if len(up) > len(down) else less if down else []).append(
                    f"{mode} {reading}")
            parts[(mode, reading)] = (f"{mode} {reading}: " + ("+ " + ", ".join(up) if up
                                                                else "") +
                                      (" " if up and down else "") +
                                      ("− " + ", ".join(down) if down else "") +
                                      ("none apart" if not up and not down else ""))
    normalised = 2 * len(NORMALISED)
    verdict = "**holds**" if len(more) == normalised else \
        "**does not hold once normalised**" if not more else \
        f"**depends on the reading; normalised, less robust by {len(less)} of {normalised}**" \
        if len(less) > len(more) else \
        f"**depends on the reading; normalised, more robust by {len(more)} of {normalised}**"
    c.row(claim, verdict, f"test accuracy with {fraction:.0%} of the trunk's outputs zeroed, "
          f"AL2 − plain, paired, {len(replicates)} replicates; + / − : the baselines where AL2 "
          f"keeps more / less (intervals in claims.md). Normalised: " + "; ".join(
              t for (m, r), t in parts.items() if r in NORMALISED) +
          f"; more robust by {', '.join(more) or 'no reading'}, less by "
          f"{', '.join(less) or 'no reading'}. Raw points, confounded (unablated, AL2 networks "
          f"start {min(start.values()):.0f}–{max(start.values()):.0f} points higher): " +
          "; ".join(t for (m, r), t in parts.items() if r not in NORMALISED),
          "replicates-quick", headline({b: figures[("element", "relative", b)] for b in TABLE1},
                                       f"element relative, {fraction:.0%} zeroed, {{b}} + AL2 "
                                       f"− {{b}}", NAME, 3))


LARGE_LOSS = 5.0   # points: an early-stopped replicate in which AL2 is this far behind is named


def rises_to_peak(means: list[float]) -> tuple[int, bool]:
    """(the index of the largest mean, whether the means rise at every level up to it)."""
    peak = means.index(max(means))
    return peak, all(a < b for a, b in zip(means[:peak], means[1:peak + 1]))


def noise(c: Claims) -> None:
    claim = "the effect grows with label noise (label randomisation tests)"
    sel = c.rows("noise-quick", "selection.csv", SELECTION + ["level"])
    levels = sorted({float(r["level"]) for r in sel.rows})
    gains, losses = {}, []
    for measure, column in (("final", "final_test_acc"), ("early-stopped",
                                                          "early_stopped_test_acc")):
        gains[measure] = []
        for level in levels:
            al2, plain = (sel.by_replicate(column, baseline="bare", al2=a, level=level)
                          for a in (True, False))
            gains[measure].append(c.figure(claim, f"{level:g}% noise, {measure} test acc., "
                                                  f"Bare + AL2 - Bare", paired(al2, plain),
                                           sel.source))
            behind = sorted(d for d in differences(al2, plain)["values"] if d < -LARGE_LOSS)
            if measure == "early-stopped" and behind:
                losses.append(f"at {level:g}% AL2 is more than {LARGE_LOSS:g} points behind in "
                              f"{len(behind)} of {len(al2)} replicates (" +
                              ", ".join(f"{d:+.1f}" for d in behind) + ")")
    peak, rising = rises_to_peak([ci["mean"] for ci in gains["final"]])
    early_peak, early_rising = rises_to_peak([ci["mean"] for ci in gains["early-stopped"]])
    grows_early = early_rising and early_peak == peak
    verdict = ("**holds**" if peak == len(levels) - 1 else
               f"**holds up to {levels[peak]:g}% noise**") if rising else "**does not hold**"
    if rising:
        verdict = verdict[:-2] + (", at the last epoch and early-stopped**" if grows_early
                                  else ", at the last epoch; early-stopped, no trend**")
    c.row(claim, verdict, "Bare + AL2 − Bare, last epoch: " + ", ".join(
        f"{signed(ci)} ({level:g}%)" for level, ci in zip(levels, gains["final"])) +
        f" ({k_of_n_each(gains['final'])}); early-stopped: " + ", ".join(
        f"{signed(ci)} ({level:g}%, {k_of_n(ci)})"
        for level, ci in zip(levels, gains["early-stopped"])) +
        "".join(f"; {loss}" for loss in losses) + same_runs(c, sel, "75.0"), "noise-quick",
        f"{levels[peak]:g}% noise, Bare + AL2 − Bare: last epoch {signed(gains['final'][peak])},"
        f" early-stopped {signed(gains['early-stopped'][peak])}, "
        f"{k_of_n(gains['early-stopped'][peak])}")


def same_runs(c: Claims, sel, level: str) -> str:
    """'; 75%: the memorisation row's Bare runs, bit for bit' when the sweep's runs at that
    level have the replicates grid's Bare selection rows exactly (the same runs, not a
    replication)."""
    ours = {(r["al2"], r["replicate"]): (r["final_test_acc"], r["early_stopped_test_acc"])
            for r in sel.select(baseline="bare", level=level)}
    theirs = {(r["al2"], r["replicate"]): (r["final_test_acc"], r["early_stopped_test_acc"])
              for r in c.rows("replicates-quick", "selection.csv", SELECTION).select(
                  baseline="bare")}
    return f"; {float(level):g}%: the memorisation row's Bare runs, bit for bit (not a " \
           f"replication)" if ours and ours == theirs else ""


CLAIMS = (memorisation, regularisers, activations, similarity, ablation, noise)
