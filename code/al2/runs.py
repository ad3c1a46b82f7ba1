"""Finding and reading the run folders that code/train.py writes."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from .checkpoints import load_csv


class RunsError(RuntimeError):
    """A problem with the runs folder; the message names the file and what to do."""


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
    def grid(self) -> dict:
        return self.config["grid"]

    @property
    def level(self) -> float:
        """The run's label noise (%); a noise sweep's runs each carry their own."""
        return float(self.config.get("percent_corrupt", self.grid["percent_corrupt"]))

    @property
    def in_table(self) -> bool:
        """Table 1 averages the grid's `seeds`; extra instances (Fig. 1) are left out."""
        return self.seed in self.grid["seeds"]

    @property
    def epochs(self) -> int:
        return int(self.metrics[-1]["epoch"])

    def metric(self, column: str, epoch: int) -> float:
        row = self.metrics[epoch] if epoch < len(self.metrics) else None
        return row[column] if row and int(row["epoch"]) == epoch else math.nan

    def checkpoint(self, epoch: int) -> Path:
        return self.path / "checkpoints" / f"epoch_{epoch}.pt"

    def activations(self, epoch: int) -> Path:
        return self.path / "activations" / f"epoch_{epoch}.pt"



def discover_runs(folder) -> list[Run]:
    """All runs under `folder` (one grid). Raises RunsError for a missing or empty folder,
    unreadable files, or runs from different grids."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RunsError(f"runs folder {folder} does not exist; train first (python code/train.py) "
                        f"or pass --runs")
    runs = []
    for cfg in sorted(folder.glob("*/config.json")):
        metrics_file = cfg.parent / "metrics.csv"
        try:
            config = json.loads(cfg.read_text())
            rows = [{k: float(v) for k, v in row.items()} for row in load_csv(metrics_file)]
        except (OSError, ValueError) as e:
            raise RunsError(f"cannot read run {cfg.parent.name} ({type(e).__name__} in "
                            f"{metrics_file if cfg.exists() else cfg}); retrain or resume it") from None
        if rows:
            runs.append(Run(cfg.parent.name, cfg.parent, config, rows))
    if not runs:
        raise RunsError(f"runs folder {folder} holds no trained runs (no */config.json with "
                        f"metrics.csv); train first (python code/train.py)")
    grids = {json.dumps(r.grid, sort_keys=True) for r in runs}
    if len(grids) > 1:
        raise RunsError(f"runs folder {folder} mixes runs from different grids; evaluate one grid "
                        f"per folder")
    return runs
