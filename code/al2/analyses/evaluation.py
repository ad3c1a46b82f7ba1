"""Everything code/evaluate.py regenerates from a folder of trained runs: Table 1, training
curves, the per-run rows, representation similarity (Sec. 5.1, similarity.py), a linear probe
of the trunks (probe.py), the noise sweep, cumulative ablation (Sec. 5.2, ablation.py), and for
grids of replicates or remedies how sure each difference is (replicates.py, comparison.py).

evaluate_runs drives one evaluation (output.Evaluation: the one owner of the output folder's
files). Each analysis writes what it can; a missing or damaged file is recorded as a problem
(naming the file) and the rest goes on, so that a partial grid still yields its table.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..files import significant
from ..paths import shown
from ..training.config import REMEDIES
from . import plotting, report
from .ablation import write_ablation
from .comparison import write_comparison
from .output import Evaluation, Settings
from .probe import write_probe
from .replicates import write_replicates
from .runs import Run, grid_order
from .similarity import write_similarity

class Laps:
    """Seconds per analysis: lap(name) books the time since the previous lap under name."""

    def __init__(self):
        self.seconds, self.last = {}, time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self.last
        self.last = now


@dataclass
class Result:
    written: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)

    def __getitem__(self, key):
        """result["written"]: the dict it used to be, deprecated (goes in al2 0.3)."""
        warnings.warn(f'result["{key}"] is deprecated (goes in al2 0.3): use result.{key}',
                      DeprecationWarning, stacklevel=2)
        return getattr(self, key)


def evaluate_runs(runs: list[Run], runs_dir: Path, out: Path, settings: Settings | None = None,
                  device: str = "cpu", **options) -> Result:
    """Run the analyses `settings` ask for (or Settings(**options)) on the grid's runs, writing
    into `out`; returns the files written, the problems (also in MISSING.md), the seconds in all
    and per analysis."""
    s = settings if settings is not None else Settings(**options)
    start, lap = time.perf_counter(), Laps()
    out.mkdir(parents=True, exist_ok=True)
    ev = Evaluation(runs, runs_dir, out, device)
    ev.problems += missing(ev)
    g, table = ev.grid, report.table_runs(runs)
    if s.table:
        report.write_table1(ev, s.title or report.title(ev.runs))
    if s.curves:
        ev.save_png("curves.png", lambda path: plotting.curves_png(table or runs, path))
    write_run_rows(ev)
    lap("table, curves and runs")
    if g.replicates > 1 or g.validation:  # seeds are not replicates: none for them
        write_replicates(ev, report.scale(runs), paired=g.replicates > 1)
        lap("replicates")
    if any(r.baseline in REMEDIES for r in runs):
        write_comparison(ev, f"Remedies at {report.table_level(runs):g}% label noise, "
                             f"{report.scale(runs)}")
        lap("remedies")
    for name, wanted, analysis in (("similarity", s.similarity, write_similarity),
                                   ("probe", s.probe, write_probe),
                                   ("noise", len(g.levels()) > 1,
                                    lambda e, _: report.write_noise(e)),
                                   ("ablation", s.ablation, write_ablation)):
        if wanted:
            analysis(ev, s)
            lap(name)
    if ev.problems:
        ev.save_text("Missing from this evaluation:\n" + "".join(f"- {p}\n" for p in ev.problems),
                     "MISSING.md")
    elif ev.path("MISSING.md").exists():
        ev.path("MISSING.md").unlink()
    return Result(ev.written, ev.problems, time.perf_counter() - start, lap.seconds)


def missing(ev: Evaluation) -> list[str]:
    """The grid's runs that the folder lacks (a shard not trained yet), and the parts of its
    split that have not finished; each a line of MISSING.md."""
    have, trained = {r.name for r in ev.runs}, min(r.epochs for r in ev.runs)
    problems = [f"run {r.name} of this grid is missing from {shown(ev.runs_dir)} (train its "
                f"shard)" for r in ev.grid.runs() if r.name not in have]
    problems += [f"{label.replace('-', ' ')} of {shown(ev.runs_dir)} has not finished (no "
                 f"{ev.folder.done_file(label).relative_to(ev.runs_dir)} of its epochs; its runs "
                 f"are at epoch {trained} of {ev.grid.epochs} or still training): continue it "
                 f"with --resume" for label in ev.folder.split.unfinished()]
    return problems


RUN_COLUMNS = ["run", "baseline", "al2", "seed", "replicate", "level", "epoch", "test_acc",
               "test_loss", "train_Lc", "train_Lr", "train_acc_noisy", "train_acc_clean",
               "al2_weight", "val_acc", "val_loss", "train_fit"]
RUN_DIGITS = 7   # float32's: what the metrics hold


def write_run_rows(ev: Evaluation) -> None:
    """runs.csv: every run's metrics at every epoch, one row each, float32's 7 significant
    digits: the per-run rows from which every figure of the results can be recomputed."""
    rows = []
    for r in sorted(ev.runs, key=grid_order):
        for m in r.metrics:
            rows.append({"run": r.name, "baseline": r.baseline, "al2": r.use_al2, "seed": r.seed,
                         "replicate": r.replicate, "level": r.level, "epoch": int(m["epoch"]),
                         **{c: significant(m.get(c, math.nan), RUN_DIGITS)
                            for c in RUN_COLUMNS[7:]}})
    ev.save_csv(rows, "runs.csv", RUN_COLUMNS)
