"""Finding and reading the run folders that code/train.py writes."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..files import read_csv, read_json
from ..paths import shown
from ..training.config import BASELINES, GRID_BASELINES, full_grid
from ..training.folder import GridFolder


class RunsError(UserError):
    """A problem with the runs folder; the message names the file and what to do."""


FIX = "retrain or resume that run, or move its folder out of the grid's"
REQUIRED_COLUMNS = ["epoch", "test_acc", "train_Lc", "train_Lr"]
CONFIG_KEYS = {"baseline": str, "al2": bool, "seed": int, "grid": dict}
OPTIONAL_KEYS = {"replicate": int, "corruption_seed": int}   # absent in grids that predate them
GRID_KEYS = ("epochs", "seeds", "preset", "subset", "test_subset", "percent_corrupt")


@dataclass
class Run:
    name: str
    path: Path
    config: dict
    metrics: list[dict]   # one dict per epoch, values as floats

    @property
    def baseline(self) -> str:
        return self.config["baseline"]

    @property
    def use_al2(self) -> bool:
        return self.config["al2"]

    @property
    def seed(self) -> int:
        return self.config["seed"]

    @property
    def replicate(self) -> int:
        """Which independent repetition of the grid (0 in a grid of one replicate)."""
        return int(self.config.get("replicate", 0))

    @property
    def corruption_seed(self) -> int:
        return int(self.config.get("corruption_seed", self.grid["corruption_seed"]))

    @property
    def grid(self) -> dict:
        """The grid's settings, fields it predates at their defaults (config.full_grid)."""
        return full_grid(self.config["grid"])

    @property
    def base_name(self) -> str:
        """The name without the replicate: the same run in every replicate."""
        suffix = f"_r{self.replicate}"
        return self.name.removesuffix(suffix) if self.grid["replicates"] > 1 else self.name

    @property
    def level(self) -> float:
        """The run's label noise (%); a noise sweep's runs each carry their own."""
        return float(self.config.get("percent_corrupt", self.grid["percent_corrupt"]))

    @property
    def in_table(self) -> bool:
        """Table 1 averages its baselines over the grid's `seeds`, every replicate; extra
        instances (Fig. 1) and the remedies are left out."""
        return self.seed in self.grid["seeds"] and self.baseline in BASELINES

    @property
    def epochs(self) -> int:
        return int(self.metrics[-1]["epoch"])

    def metric(self, column: str, epoch: int) -> float:
        row = self.metrics[epoch] if epoch < len(self.metrics) else None
        return row[column] if row and int(row["epoch"]) == epoch else math.nan

    @property
    def folder(self) -> GridFolder:
        """The grid folder the run is in."""
        return GridFolder(self.path.parent)

    def checkpoint(self, epoch: int) -> Path:
        return self.folder.checkpoint(self.name, epoch)

    def activations(self, epoch: int) -> Path:
        return self.folder.activations(self.name, epoch)



def grid_order(run: Run) -> tuple:
    """A key that sorts runs as a grid lists them for a reader: noise level, baseline (Table 1's,
    then the remedies), without before with AL2, replicate, seed."""
    baseline = GRID_BASELINES.index(run.baseline) if run.baseline in GRID_BASELINES else 99
    return run.level, baseline, run.use_al2, run.replicate, run.seed


def read_run(folder: Path) -> Run | None:
    """One run folder's config.json and metrics.csv, checked; None for a run with no epoch yet.
    RunsError or FileError naming the file when either is damaged or not a run's."""
    grid_folder = GridFolder(folder.parent)
    config_file, metrics_file = (grid_folder.config_file(folder.name),
                                 grid_folder.metrics_file(folder.name))
    config = read_json(config_file, "run config", FIX)
    kinds_ok = all(isinstance(config.get(k), t) for k, t in CONFIG_KEYS.items()) and \
        all(isinstance(config[k], t) for k, t in OPTIONAL_KEYS.items() if k in config)
    if not kinds_ok or not all(k in config["grid"] for k in GRID_KEYS):
        raise RunsError(f"run config {shown(config_file)} is not an AL2 run's config; {FIX}")
    rows = read_csv(metrics_file, "metrics file", FIX, REQUIRED_COLUMNS)
    try:
        metrics = [{k: float(v) for k, v in row.items()} for row in rows]
    except ValueError as e:
        raise RunsError(f"metrics file {shown(metrics_file)} holds a value that is not "
                        f"a number ({str(e).split(': ', 1)[-1][:40]}); {FIX}") from None
    if [int(m["epoch"]) for m in metrics] != list(range(len(metrics))):
        raise RunsError(f"metrics file {shown(metrics_file)} does not hold epochs 0, 1, "
                        f"2, ... in order; {FIX}")
    return Run(folder.name, folder, config, metrics) if metrics else None


def discover_runs(folder) -> list[Run]:
    """All runs under `folder` (one grid). Raises RunsError for a missing or empty folder,
    unreadable files, or runs from different grids."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise RunsError(f"runs folder {shown(folder)} {what}; train first (python code/train.py) "
                        f"or pass --runs")
    runs = [run for name in GridFolder(folder).run_names() if (run := read_run(folder / name))]
    if not runs:
        raise RunsError(f"runs folder {shown(folder)} holds no trained runs (no */config.json "
                        f"with metrics.csv); train first (python code/train.py)")
    grids = {json.dumps(r.grid, sort_keys=True) for r in runs}   # full_grid: old and new alike
    if len(grids) > 1:
        raise RunsError(f"runs folder {shown(folder)} mixes runs from different grids; evaluate "
                        f"one grid per folder")
    return runs
