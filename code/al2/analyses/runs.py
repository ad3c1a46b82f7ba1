"""Finding and reading the run folders that code/train.py writes."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import UserError
from ..files import read_csv, read_json
from ..paths import shown
from ..training.config import GRID_BASELINES, GridConfig, RunSpec, full_grid
from ..training.folder import GridFolder


class RunsError(UserError):
    """A problem with the runs folder; the message names the file and what to do."""


FIX = "retrain or resume that run, or move its folder out of the grid's"
REQUIRED_COLUMNS = ["epoch", "test_acc", "train_Lc", "train_Lr"]
CONFIG_KEYS = {"baseline": str, "al2": bool, "seed": int, "grid": dict}
OPTIONAL_KEYS = {"replicate": int, "corruption_seed": int}   # absent in grids that predate them
GRID_KEYS = ("epochs", "seeds", "preset", "subset", "test_subset", "percent_corrupt")


@dataclass
class Run(RunSpec):
    """A trained run read back from its folder: the run type training builds from the grid
    (config.RunSpec), rebuilt from its config.json, with the folder, that config.json as saved
    (saved_config; RunSpec.config() is what training writes into it) and the metrics of every
    epoch (one dict per epoch, values as floats)."""
    path: Path | None = None
    saved_config: dict = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)

    @classmethod
    def read_back(cls, path: Path, config: dict, metrics: list[dict]) -> "Run":
        """The run of a checked config.json: the grid's fields it predates at their defaults
        (config.full_grid), those it does not know left out."""
        grid = grid_config(config["grid"])
        return cls(config["baseline"], config["al2"], config["seed"], grid,
                   float(config.get("percent_corrupt", grid.percent_corrupt)),
                   int(config.get("replicate", 0)), path, config, metrics)

    @property
    def name(self) -> str:
        return self.path.name

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



def grid_config(saved: dict) -> GridConfig:
    """A saved grid (grid.json, a run's config) as a GridConfig: the fields it predates at
    their defaults (config.full_grid), keys it does not know left out."""
    return GridConfig(**{k: v for k, v in full_grid(saved).items()
                         if k in GridConfig.__dataclass_fields__})


def label_groups(runs) -> dict:
    """(level, corruption seed) -> the runs that trained on those labels."""
    groups = {}
    for r in runs:
        groups.setdefault((r.level, r.corruption_seed), []).append(r)
    return dict(sorted(groups.items()))


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
    return Run.read_back(folder, config, metrics) if metrics else None


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
    grids = {json.dumps(asdict(r.grid), sort_keys=True) for r in runs}  # old and new alike
    if len(grids) > 1:
        raise RunsError(f"runs folder {shown(folder)} mixes runs from different grids; evaluate "
                        f"one grid per folder")
    return runs
