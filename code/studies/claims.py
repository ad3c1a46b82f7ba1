"""The paper's claims against the committed results: every figure of the README's claims table,
computed from per-run rows of the results folders (no training, no checkpoints), and the table
itself, written into the README between its two marker comments.

    python code/studies/claims.py          # results/* -> results/claims/, README.md's table
    python code/studies/claims.py --check  # exit 1 if the README's table, claims.csv or
                                           # claims.md is not what it writes

Comparisons are paired within a replicate (same initialisation, batch order and labels; only the
compared setting differs): mean difference, its 95% t-interval over the replicates, in how many
the first is ahead. Each verdict follows a rule stated in claims.md from its figures, and names
the measures under which it holds.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's al2 and svcca,
sys.path.insert(1, str(Path(__file__).resolve().parents[2]))  # not an installed checkout's

import claims_beyond
import claims_paper
from al2.analyses.evidence import Claims, signed
from al2.errors import UserError
from al2.files import save_csv, save_text
from al2.paths import REPO_ROOT, RESULTS_DIR, resolve, shown

COLUMNS = ["claim", "measure", "mean", "low", "high", "ahead", "n", "source"]
START = "<!-- claims table: written by code/studies/claims.py -->"
END = "<!-- end of claims table -->"


RULES = f"""## How the verdicts follow from the figures

- A difference *holds* when its 95% t-interval over paired replicates lies above 0 (*below 0*:
  the other way); an interval that contains 0 decides nothing.
- Memorisation, regularisers, probe: *holds* when it holds for every baseline compared; the
  regularisers' verdict says at which measures (last epoch, early-stopped) it holds. At paper
  scale (one draw, no interval) the largest gap to the paper's cell bounds the with-AL2 cells
  and the plain cells; a run trained at another weight decay than the default is said apart.
- Activations: WD *raises* them when WD − Bare holds; BN and DO *restrain* them when Bare's
  L_r over theirs is above 1 (interval of the paired ratio) and AL2's ratio lies above both.
- Similarity: *does not hold* when the AL2 pairs end less similar than the plain pairs and
  the ranges of the two kinds are apart from some epoch on (pairs share networks: ranges, no
  interval).
- Ablation: the verdict rests on the normalised readings (relative to the unablated accuracy,
  share of the above-chance accuracy kept), in each mode: AL2 is *more robust* by a reading
  when it keeps more for more baselines than it keeps less for, *less robust* when any
  baseline shows the opposite and no more show it keeping more. Raw points are listed after
  them, as confounded: AL2 networks start higher before anything is zeroed.
- Noise: *holds* when the last-epoch gain rises with every noise level, *up to* the level of
  the largest gain when it rises until there; the verdict says whether the early-stopped gain
  rises the same way, and names each level where AL2 is more than
  {claims_paper.LARGE_LOSS:g} points behind in a replicate, early-stopped.
- Early stopping: rests on the replicates that differ in every draw, the label corruption
  included (independent-quick): a gain when its interval lies above 0, a loss when below,
  else no gain shown and the interval's upper end bounds it. The earlier draws, which share
  one corruption, are listed beside it.
- Remedies: AL2 *helps* a remedy when its gain holds, *breaks* it when its loss holds, at the
  last epoch and early-stopped; cross-entropy alone is shown but not counted as a remedy.
- A row whose runs are another row's (the same selection rows, bit for bit) says so: it is
  the same evidence, not a replication.
"""


def markdown(c: Claims) -> str:
    lines = ["# The paper's claims: the figures", "",
             "Made by `python code/studies/claims.py` from the per-run rows of the results "
             "folders. Each line: the difference, its 95% t-interval over the replicates and in "
             "how many of them the first is ahead (paired within a replicate unless marked "
             "ratio); a single value where the source is one draw.", "", RULES]
    rows = {row[0]: row for row in c.table}
    for claim in dict.fromkeys(f["claim"] for f in c.figures):
        lines += [f"## {claim}", ""]
        if claim in rows:
            _, verdict, evidence, folders, _ = rows[claim]
            lines += [f"Verdict: {verdict} ({folders}). {evidence[0].upper()}{evidence[1:]}.", ""]
        for f in (f for f in c.figures if f["claim"] == claim):
            figure = signed({"n": f["n"] if f["low"] == f["low"] else 1, "mean": f["mean"],
                             "low": f["low"], "high": f["high"]}, 3)
            ahead = f", {f['ahead']} of {f['n']}" if f["ahead"] == f["ahead"] else ""
            lines.append(f"- {f['measure']}: **{figure}**{ahead} (n {f['n']}, `{f['source']}`)")
        lines.append("")
    return "\n".join(lines)


def table(c: Claims) -> str:
    """The README's table: each claim, its verdict, the one figure it rests on most; every
    other figure is in claims.md."""
    lines = [START, "", "| claim | verdict | headline figure | results/ |",
             "|---|---|---|---|"]
    lines += [f"| {claim} | {verdict} | {headline} | {folders} |"
              for claim, verdict, _, folders, headline in c.table]
    return "\n".join(lines + ["", END])


def with_table(readme: str, text: str) -> str:
    """The README with `text` between (and including) its two markers."""
    if START not in readme or END not in readme:
        raise UserError(f"README.md has no claims table markers ({START} ... {END})")
    head, rest = readme.split(START, 1)
    return head + text + rest.split(END, 1)[1]


def write(c: Claims, out: Path) -> None:
    save_csv(c.figures, out / "claims.csv", COLUMNS)
    save_text(markdown(c), out / "claims.md")


def check(c: Claims, updated: str, readme: Path, out: Path) -> int:
    """0 when the README's table, claims.csv and claims.md are what claims.py writes, else 1
    (each that differs named)."""
    with tempfile.TemporaryDirectory() as tmp:
        write(c, Path(tmp))
        differ = [shown(out / name) for name in ("claims.csv", "claims.md")
                  if not (out / name).exists() or
                  (out / name).read_bytes() != (Path(tmp) / name).read_bytes()]
    if updated != readme.read_text():
        differ.insert(0, f"{shown(readme)}'s claims table")
    print(f"NOT what claims.py writes: {', '.join(differ)}" if differ else
          f"{shown(readme)}'s claims table, {shown(out / 'claims.csv')} and claims.md are "
          f"what claims.py writes")
    return 1 if differ else 0


CLAIMS = claims_paper.CLAIMS[:4] + claims_beyond.CLAIMS[:1] + claims_paper.CLAIMS[4:] + \
    claims_beyond.CLAIMS[1:]   # the README's order: the representation rows together


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--results", type=Path, default=RESULTS_DIR, help="the results folder")
    p.add_argument("--out", type=Path, default=None, help="default: <results>/claims")
    p.add_argument("--readme", type=Path, default=REPO_ROOT / "README.md")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 when the README's table, claims.csv or "
                        "claims.md differs from what it would write")
    args = p.parse_args(argv)
    c = Claims(resolve(args.results))
    readme = resolve(args.readme)
    try:
        for claim in CLAIMS:
            claim(c)
        updated = with_table(readme.read_text(), table(c))
    except (UserError, OSError, KeyError, ValueError) as e:
        p.exit(2, f"claims.py: error: cannot read the results under {shown(c.results)}: {e}\n")
    out = resolve(args.out or c.results / "claims")
    if args.check:
        return check(c, updated, readme, out)
    write(c, out)
    save_text(updated, readme)
    print(f"wrote {shown(out / 'claims.md')}, claims.csv ({len(c.figures)} figures) and "
          f"{shown(readme)}'s claims table ({len(c.table)} claims)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
