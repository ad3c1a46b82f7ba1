"""Beyond the paper (code/studies/claims.py): a linear probe of the trunks, AL2 against early
stopping, AL2 beside the remedies for noisy labels; each a row of the README's claims table with
its figures, computed from per-run rows of the results folders."""
from __future__ import annotations

from al2.analyses.evidence import (Claims, above_zero, below_zero, headline,
                                   k_of_n, paired, signed)

TABLE1 = ("bare", "bn", "do", "wd")
NAME = {"bare": "Bare", "bn": "BN", "do": "DO", "wd": "WD"}
SELECTION = ["baseline", "al2", "replicate", "final_test_acc", "early_stopped_test_acc"]


def probe(c: Claims) -> None:
    claim = "*beyond the paper:* more general representations, read as a linear probe " \
            "fitted on 1,000 clean labels"
    rows = c.rows("replicates-quick", "probe.csv", ["baseline", "al2", "replicate", "epoch",
                                                    "test_acc"])
    last = max(int(r["epoch"]) for r in rows.rows)
    gains = {b: c.figure(claim, f"probe test acc. at epoch {last}, {NAME[b]} + AL2 - "
                                f"{NAME[b]}", rows.al2_gain("test_acc", baseline=b, epoch=last),
                         rows.source) for b in TABLE1}
    ahead = [NAME[b] for b, ci in gains.items() if above_zero(ci)]
    behind = [NAME[b] for b, ci in gains.items() if below_zero(ci)]
    verdict = "**holds**" if len(ahead) == len(TABLE1) else "**does not hold**" if not ahead \
        else "**in part**"
    c.row(claim, verdict, f"probe test accuracy at epoch {last}, AL2 − plain: " + ", ".join(
        f"{NAME[b]} {signed(ci, 2)} ({k_of_n(ci)})" for b, ci in gains.items()) +
        f"; AL2 ahead for {', '.join(ahead) or 'none'}, behind for {', '.join(behind) or 'none'}",
        "replicates-quick",
        headline(gains, f"epoch {last}, {{b}} + AL2 − {{b}}", NAME, 2, top=True))


def early_stopping(c: Claims) -> None:
    """Rests on independent-quick: replicates that differ in every draw, the label corruption
    included. The earlier draws, which share one corruption, are listed beside it."""
    claim = "*beyond the paper:* AL2 against early stopping on 1,000 noisy held-out labels"
    col = "early_stopped_test_acc"
    fresh = c.rows("independent-quick", "selection.csv", SELECTION)
    main = c.figure(claim, "Bare, early-stopped test acc., AL2 - plain: replicates each with "
                           "its own label corruption", fresh.al2_gain(col, baseline="bare"),
                    fresh.source)
    last = fresh.al2_gain("final_test_acc", baseline="bare")  # the memorisation row's figure
    sets = {}
    for name, folder in (("A", "replicates-quick"), ("B", "remedies-quick"),
                         ("C", "replicates-quick-amd")):
        sel = c.rows(folder, "selection.csv", SELECTION)
        sets[name] = (sel.by_replicate(col, baseline="bare", al2=True),
                      sel.by_replicate(col, baseline="bare", al2=False), sel.source)
    ramps = c.rows("ramps-quick", "ramps_runs.csv", ["sample", "loss", "threshold", "replicate",
                                                     col])
    sets["D"] = (ramps.by_replicate(col, sample="out", loss="cross-entropy", threshold="50.0"),
                 ramps.by_replicate(col, sample="out", loss="cross-entropy", threshold=""),
                 ramps.source)
    k = {name: replicate_range(sorted(al2)) for name, (al2, _, _) in sets.items()}
    what = {"A": f"replicates {k['A']}, this CPU", "B": f"the remedies study, {k['B']}",
            "C": f"replicates {k['C']}, another CPU (AMD)", "D": f"fresh replicates {k['D']}"}
    ci = {n: c.figure(claim, f"Bare, early-stopped test acc., AL2 - plain: {what[n]}, one "
                             f"corruption", paired(al2, plain), src)
          for n, (al2, plain, src) in sets.items()}
    same = sets["A"][:2] == sets["B"][:2]
    # the same replicate on two CPUs: the same initialisation and batches, so paired
    machines = {side: c.figure(claim, f"Bare {side}, early-stopped test acc., this CPU - the "
                               f"AMD CPU, replicates {k['C']}", paired(sets["A"][i], sets["C"][i]),
                               f"{sets['A'][2]}, {sets['C'][2]}")
                for i, side in enumerate(("with AL2", "plain"))}
    sel = c.rows("replicates-quick", "selection.csv", SELECTION)
    others = {b: c.figure(claim, f"{NAME[b]}, early-stopped test acc., AL2 - plain",
                          sel.al2_gain(col, baseline=b), sel.source) for b in TABLE1[1:]}
    verdict = f"**a small gain: {signed(main)}**" if above_zero(main) else \
        f"**a loss: {signed(main)}**" if below_zero(main) else \
        f"**no gain shown: at most {main['high']:+.1f} points**"
    c.row(claim, verdict, f"Bare, early-stopped AL2 − plain over {main['n']} replicates that "
          f"differ in every draw, the label corruption included: {signed(main)} "
          f"({k_of_n(main)}); at the last epoch {signed(last)} ({k_of_n(last)}, the same runs "
          f"as the memorisation row's). The earlier draws share one corruption: replicates "
          f"{k['A']} {signed(ci['A'])} "
          f"({k_of_n(ci['A'])}{', the remedies study: the same runs, bit for bit' if same else ''})"
          f", {k['D']} {signed(ci['D'])} ({k_of_n(ci['D'])}); on another CPU {k['C']} gave "
          f"{signed(ci['C'])} ({k_of_n(ci['C'])}; this CPU − that one, paired by replicate: "
          f"{signed(machines['plain'])} plain, {signed(machines['with AL2'])} with AL2). "
          f"BN {signed(others['bn'])}, DO {signed(others['do'])}, WD {signed(others['wd'])} "
          f"(replicates {replicate_range(sorted(sel.by_replicate(col, baseline='bn', al2=True)))})",
          "independent-quick, replicates-quick, ramps-quick, replicates-quick-amd",
          f"Bare, early-stopped, AL2 − plain: {signed(main)}, {k_of_n(main)}")


REMEDIES = {"bare": "cross-entropy", "ls": "label smoothing", "sce": "SCE", "gce": "GCE",
            "mixup": "mixup"}


def rescued(broken: list[str], fresh: dict) -> str:
    """What the ramp chosen in sample does, out of sample, for each loss AL2 broke: rescues it
    (its gain over the loss alone holds final and early-stopped), at the last epoch only, or not."""
    said = []
    for loss in (b for b in broken if (b, "final") in fresh):    # the ramp study's losses
        final, early = (above_zero(fresh[(loss, m)][1]) for m in ("final", "early-stopped"))
        said.append(f"rescues {loss}" if final and early else
                    f"rescues {loss} at the last epoch only" if final else f"not {loss}")
    return ", ".join(said) or "nothing to rescue"


def remedies(c: Claims) -> None:
    claim = "*beyond the paper:* AL2 beside each remedy for noisy labels"
    sel = c.rows("remedies-quick", "selection.csv", SELECTION)
    preset = {(b, measure): c.figure(
        claim, f"{measure} test acc., {name} + AL2 - {name} (preset ramp)",
        sel.al2_gain(column, baseline=b), sel.source)
        for measure, column in MEASURES.items() for b, name in REMEDIES.items()}
    fresh, samples = out_of_sample(c, claim)
    said = []
    for measure in MEASURES:
        helps = [REMEDIES[b] for b in REMEDIES if b != "bare" and above_zero(preset[(b, measure)])]
        breaks = [REMEDIES[b] for b in REMEDIES if b != "bare" and
                  below_zero(preset[(b, measure)])]
        said.append(f"{'at the last epoch' if measure == 'final' else measure} helps "
                    f"{len(helps)} of {len(REMEDIES) - 1}" +
                    (f" ({', '.join(helps)})" if helps else "") + f", breaks {len(breaks)}" +
                    (f" ({', '.join(breaks)})" if breaks else ""))
        if measure == "final":
            broken = breaks
    ce = sel.select(baseline="bare")
    same = sorted((r["al2"], r["replicate"], r["final_test_acc"]) for r in ce) == sorted(
        (r["al2"], r["replicate"], r["final_test_acc"]) for r in c.rows(
            "replicates-quick", "selection.csv", SELECTION).select(baseline="bare"))
    c.row(claim, f"**{'; '.join(said)}; a gentler ramp, out of sample: "
          f"{rescued(broken, fresh)}**",
          "AL2 − the remedy alone, preset ramp, " + "; ".join(
              f"{measure}: " + ", ".join(f"{REMEDIES[b]} {signed(preset[(b, measure)])} "
                                         f"({k_of_n(preset[(b, measure)])})"
                                         for b in REMEDIES if b != "bare")
              for measure in MEASURES) +
          f" (cross-entropy alone, no remedy: {signed(preset[('bare', 'final')])} final, "
          f"{signed(preset[('bare', 'early-stopped')])} early-stopped" +
          (", the memorisation row's Bare runs, bit for bit" if same else "") +
          f"); the ramp chosen on noisy validation labels (replicates "
          f"{replicate_range(samples['in'])}), tested on fresh replicates "
          f"{replicate_range(samples['out'])}, AL2 − the loss alone: " + ", ".join(
              f"{loss} (T = {float(t):g}) {signed(ci)} final ({k_of_n(ci)}), "
              f"{signed(fresh[(loss, 'early-stopped')][1])} early-stopped "
              f"({k_of_n(fresh[(loss, 'early-stopped')][1])})"
              for (loss, m), (t, ci) in fresh.items() if m == "final"),
          "remedies-quick, ramps-quick",
          headline({b: preset[(b, "early-stopped")] for b in REMEDIES if b != "bare"},
                   "early-stopped, {b} + AL2 − {b}", REMEDIES))


MEASURES = {"final": "final_test_acc", "early-stopped": "early_stopped_test_acc"}


def out_of_sample(c: Claims, claim: str) -> tuple[dict, dict]:
    """The ramp study read out of sample: {(loss, measure): (the threshold chosen in sample by
    mean final noisy-validation accuracy, its gain over the loss alone on the fresh
    replicates)}, and {sample: its replicates}."""
    ramps = c.rows("ramps-quick", "ramps_runs.csv", ["sample", "loss", "threshold", "replicate",
                                                     "final_val_acc", "final_test_acc",
                                                     "early_stopped_test_acc"])
    samples = {sample: sorted({int(r["replicate"]) for r in ramps.select(sample=sample)})
               for sample in ("in", "out")}
    fresh = {}
    for loss in ("cross-entropy", "GCE", "mixup"):
        val = {}
        for r in ramps.select(sample="in", loss=loss):
            if r["threshold"]:
                val.setdefault(r["threshold"], []).append(float(r["final_val_acc"]))
        chosen = max(val, key=lambda t: sum(val[t]) / len(val[t]))
        for measure, col in MEASURES.items():
            fresh[(loss, measure)] = chosen, c.figure(
                claim, f"fresh replicates, {measure} test acc., {loss} + AL2 at the ramp chosen "
                       f"in sample (T = {float(chosen):g}) - {loss}", paired(
                    ramps.by_replicate(col, sample="out", loss=loss, threshold=chosen),
                    ramps.by_replicate(col, sample="out", loss=loss, threshold="")),
                ramps.source)
    return fresh, samples


def replicate_range(k: list[int]) -> str:
    """'0–2': replicates as a range (or a list where they are not consecutive)."""
    return f"{k[0]}–{k[-1]}" if k == list(range(k[0], k[-1] + 1)) else ", ".join(map(str, k))


CLAIMS = (probe, early_stopping, remedies)
