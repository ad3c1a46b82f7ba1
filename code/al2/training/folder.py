"""A grid's output folder: the one place that knows its layout (README, "Outputs").

    <root>/grid.json                                 the grid's settings
    <root>/split.json                                N of the --shard K/N the folder is split into
    <root>/corruption[-n<level>][-r<k>].pt           the noisy labels of a noise level (replicate)
    <root>/resume[-shard-K-of-N][-n<level>].pt       the newest complete state of a stack of runs
    <root>/shards/<whole|shard-K-of-N>.json          that part of the grid has finished
    <root>/.lock-<name>                              held by the process training that part
    <root>/carry.json                                the GPU job's record of what it exported
    <root>/<run>/config.json, metrics.csv            every setting; the metrics of every epoch
    <root>/<run>/checkpoints/epoch_<E>.pt            the run as a plain LeNet after epoch E
    <root>/<run>/activations/epoch_<E>.pt            its trunk outputs on the first test images

Every file is written atomically; every file read back is checked first (files.py), and a
resume reads all it needs before it writes anything.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch

from ..files import FileError, read_json, read_torch, save_csv, save_json, save_torch
from ..paths import shown
from .config import GridConfig, GridError, RunSpec, full_grid
from .data import corrupt_labels
from .lock import LOCK_PREFIX, FolderLock
from .shards import Split, shard_label

AFRESH = "delete the folder to train afresh, or choose another --out"
# the names of the folder's files, each spelt here alone (the layout above)
GRID_FILE, SPLIT_FILE, CARRY_FILE = "grid.json", "split.json", "carry.json"
CORRUPTION, RESUME, SHARDS = "corruption", "resume", "shards"
CONFIG_FILE, METRICS_FILE = "config.json", "metrics.csv"
CHECKPOINTS, ACTIVATIONS = "checkpoints", "activations"
# val_*: the held-out images against their corrupted labels (NaN without a validation set);
# train_fit: the data term a run minimised (train_Lc for cross-entropy runs, a remedy's loss).
METRIC_COLUMNS = ["epoch", "test_acc", "test_loss", "train_Lc", "train_Lr", "train_acc_noisy",
                  "train_acc_clean", "al2_weight", "wall_time_s", "val_acc", "val_loss",
                  "train_fit"]
PARTIAL_KEYS = {"epoch_index", "steps", "sums", "dropout_rng"}   # Trainer.position's


class GridFolder:
    """The folder of one grid's runs: its paths, its checks and lock, and what it writes."""

    def __init__(self, root):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"GridFolder({str(self.root)!r})"

    # --- the grid's own files -------------------------------------------------------------
    @property
    def grid_file(self) -> Path:
        return self.root / GRID_FILE

    @property
    def split_file(self) -> Path:
        return self.root / SPLIT_FILE

    @property
    def carry_file(self) -> Path:
        return self.root / CARRY_FILE

    def corruption_file(self, grid: GridConfig, level: float, replicate: int = 0) -> Path:
        """corruption.pt, or corruption-n<level>.pt for each level of a noise sweep; with labels
        per replicate (corruption_per_replicate) one file per replicate, -r<k> added."""
        name = CORRUPTION + ("" if len(grid.levels()) == 1 else f"-n{level:g}")
        return self.root / (name + (f"-r{replicate}" if grid.corruption_per_replicate else "")
                            + ".pt")

    def resume_file(self, shard: tuple[int, int] | None, level: float | None = None) -> Path:
        """resume.pt, or one per shard (shards never write each other's files) and per noise
        level of a sweep (each level trains as its own stack)."""
        name = RESUME if shard is None else f"{RESUME}-{shard_label(shard)}"
        return self.root / (name + ("" if level is None else f"-n{level:g}") + ".pt")

    def resume_files(self, shard: tuple[int, int] | None = None, every: bool = False) -> list:
        """The resume files of a part of the grid (every level), or of every part."""
        stem = RESUME if every else self.resume_file(shard).stem
        return sorted(self.root.glob(stem + "*.pt"))

    def done_file(self, part) -> Path:
        """The completion mark of a part: a shard (K, N), None (the whole grid) or its label."""
        return self.root / SHARDS / f"{part if isinstance(part, str) else shard_label(part)}.json"

    # --- a run's files ----------------------------------------------------------------------
    def config_file(self, run: str) -> Path:
        return self.root / run / CONFIG_FILE

    def metrics_file(self, run: str) -> Path:
        return self.root / run / METRICS_FILE

    def checkpoint(self, run: str, epoch: int) -> Path:
        return self.root / run / CHECKPOINTS / f"epoch_{epoch}.pt"

    def activations(self, run: str, epoch: int) -> Path:
        return self.root / run / ACTIVATIONS / f"epoch_{epoch}.pt"

    def run_names(self) -> list[str]:
        """The runs that have a config.json, in name order."""
        return [p.parent.name for p in sorted(self.root.glob(f"*/{CONFIG_FILE}"))]

    def checkpoints(self) -> list[tuple[str, int, Path]]:
        """(run, epoch, path) of every checkpoint in the folder."""
        return [(p.parent.parent.name, int(p.stem.split("_")[1]), p)
                for p in sorted(self.root.glob(f"*/{CHECKPOINTS}/epoch_*.pt"))]

    def small_files(self) -> list[Path]:
        """Every file but checkpoints, activations, resume files, locks and temporary files:
        the grid's and the runs' records."""
        keep = []
        for p in sorted(self.root.rglob("*")):
            rel = p.relative_to(self.root)
            if p.is_dir() or p.name.startswith(LOCK_PREFIX) or p.suffix == ".tmp" \
                    or (len(rel.parts) == 1 and p.name.startswith(RESUME)) \
                    or (len(rel.parts) > 1 and rel.parts[1] in (CHECKPOINTS, ACTIVATIONS)):
                continue
            keep.append(p)
        return keep

    def is_trained(self) -> bool:
        return any(self.root.glob(f"*/{METRICS_FILE}"))

    # --- checks, the lock and the split -----------------------------------------------------
    def check(self, grid: GridConfig, resume: bool, shard: tuple[int, int] | None = None) -> bool:
        """Refuse a path that is not a folder, a folder that holds another grid, or this grid
        (this shard of it) without --resume; reads only. Returns whether this grid's (shard's)
        resume state is there."""
        out = self.root
        if out.exists() and not out.is_dir():
            raise GridError(f"--out {shown(out)} is a file, not a folder; choose another --out")
        if not self.grid_file.exists():
            if out.exists() and any(not p.name.startswith(LOCK_PREFIX) for p in out.iterdir()) \
                    and not resume:
                raise GridError(f"{shown(out)} is not empty and holds no grid; choose another "
                                f"--out")
            return False
        saved, wanted = self.saved_grid(), asdict(grid)
        diff = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
        # a longer grid continues this one: the schedule of an epoch depends on it alone
        extended = diff == ["epochs"] and resume and wanted["epochs"] > saved["epochs"]
        if diff and not extended:
            flag = "--portable" if saved["portable"] else "--no-portable"
            more = " (a grid can be extended by --epochs N --resume, not shortened or changed)" \
                if "epochs" in diff else f" (it was trained with {flag})" \
                if diff == ["portable"] else ""
            raise GridError(f"{shown(out)} holds a different grid (differs in {', '.join(diff)})"
                            f"{more}; choose another --out")
        self.split.check(shard)
        part = "" if shard is None else f" (shard {shard[0]}/{shard[1]})"
        states = self.resume_files(shard)
        trained = states or (shard is None and self.is_trained())
        if trained and not resume:
            raise GridError(f"{shown(out)} already holds this grid{part}; pass --resume to "
                            f"continue it or choose another --out")
        if trained and not states:
            raise GridError(f"{shown(out)} holds this grid's runs but no "
                            f"{self.resume_file(shard).name} to continue from; {AFRESH}")
        return bool(states)

    def saved_grid(self) -> dict:
        """grid.json, with the fields it predates at their defaults (config.full_grid)."""
        return full_grid(read_json(self.grid_file, "grid file", AFRESH))

    def lock(self, name: str, wait: bool, busy: str = "") -> "FolderLock":
        return FolderLock(self.root, name, wait, busy)

    def lock_part(self, shard: tuple[int, int] | None) -> "FolderLock":
        """The lock of a part of the grid: a second process on it is refused."""
        what = "the whole grid" if shard is None else f"shard {shard[0]}/{shard[1]}"
        return self.lock(shard_label(shard), wait=False, busy=what)

    @property
    def split(self) -> "Split":
        """The folder's split into parts (shards.Split: split.json, completion marks)."""
        return Split(self)

    # --- reading a resume -------------------------------------------------------------------
    def read_resume(self, state_file: Path, runs: list[RunSpec]) -> dict:
        """A resume file, checked: {"epoch", "model", "momentum", "history" (one list per run),
        "wall_time_s", "runs" (their names), "partial" (where a signal stopped inside the next
        epoch, or None; absent in older files)}; a FileError or GridError naming the file when
        it is damaged or not these runs' state."""
        state = read_torch(state_file, "resume file", AFRESH)
        keys = {"epoch", "model", "momentum", "history", "wall_time_s", "runs"}
        if not isinstance(state, dict) or not keys <= set(state):
            raise GridError(f"resume file {shown(state_file)} is not a grid's resume state; "
                            f"{AFRESH}")
        if state["runs"] != [r.name for r in runs] or len(state["history"]) != len(runs):
            raise GridError(f"resume file {shown(state_file)} holds other runs than this grid's "
                            f"(another grid's?); {AFRESH}")
        partial = state.get("partial")
        if partial is not None and not (isinstance(partial, dict) and PARTIAL_KEYS <= set(partial)
                                        and partial["epoch_index"] == state["epoch"]):
            raise GridError(f"resume file {shown(state_file)} is damaged (its partial epoch does "
                            f"not follow its epoch {state['epoch']}); {AFRESH}")
        return state

    def read_run_configs(self, runs: list[RunSpec]) -> dict:
        """run name -> its config.json (read before a resume writes anything)."""
        return {r.name: read_json(self.config_file(r.name), "run config", AFRESH)
                for r in runs if self.config_file(r.name).exists()}

    # --- writing ----------------------------------------------------------------------------
    def prepare(self, grid: GridConfig, shard, data, level: float, runs: list[RunSpec]) -> None:
        """The grid's own files (grid.json, split.json, the corruption files), written once by
        whichever process comes first (under a folder lock, so concurrent shards neither race
        nor rewrite each other's files). data: the grid's data.GridData."""
        with self.lock("grid-files", wait=True):
            self.split.check(shard, write=True)
            if not self.grid_file.exists() or self.saved_grid()["epochs"] < grid.epochs:
                save_json(asdict(grid), self.grid_file)   # a new grid, or one extended
            for replicate in dict.fromkeys(r.replicate for r in runs):
                seed = next(r.corruption_seed for r in runs if r.replicate == replicate)
                path = self.corruption_file(grid, level, replicate)
                if not path.exists():
                    i = data.label_seeds.index(seed)
                    save_torch({"noisy_labels": data.noisy_full[i], "corrupted": data.mask_full[i],
                                "percent_corrupt": level, "seed": seed}, path)

    def write_run_configs(self, runs: list[RunSpec], command: str, env: dict, data,
                          saved: dict, after_epoch: int) -> None:
        """config.json of every run. A fresh start writes it; a resume (`saved`: the configs
        read before, read_run_configs) keeps the original command and environment and appends
        its own under "resumes", with the epoch it continued after."""
        started = time.strftime("%Y-%m-%dT%H:%M:%S")
        for r in runs:
            if r.name in saved:
                config = saved[r.name]
                resume = {"command": command, "environment": env, "started": started,
                          "after_epoch": after_epoch}
                if config["grid"]["epochs"] != r.grid.epochs:   # extended (--epochs N --resume)
                    resume["epochs_before"] = config["grid"]["epochs"]
                    config["grid"] = r.config()["grid"]
                    config["checkpoint_epochs"] = sorted(
                        set(config["checkpoint_epochs"]) | set(r.grid.checkpoint_epochs()))
                config.setdefault("resumes", []).append(resume)
            else:
                val = r.grid.validation_range()
                config = {**r.config(), "command": command, "environment": env,
                          "started": started, "train_images": len(data.train_x),
                          "test_images": len(data.test_x),
                          "validation_images": [val.start, val.stop] if len(val) else None,
                          "activation_images": min(r.grid.activation_images, len(data.test_x)),
                          "checkpoint_epochs": r.grid.checkpoint_epochs(),
                          "metrics_columns": METRIC_COLUMNS, "resumes": []}
            save_json(config, self.config_file(r.name))

    def write_metrics(self, run: str, history: list[dict]) -> None:
        save_csv(history, self.metrics_file(run), METRIC_COLUMNS)

    def write_checkpoint(self, run: RunSpec, epoch: int, state_dict: dict, metrics: dict,
                         activations: torch.Tensor) -> None:
        """The run after `epoch` as a plain LeNet state_dict with its config and that epoch's
        metrics (checkpoints.read_checkpoint reads it), and its saved trunk outputs."""
        save_torch({"model": state_dict, "config": run.config(), "epoch": epoch,
                    "metrics": metrics}, self.checkpoint(run.name, epoch))
        save_torch(activations, self.activations(run.name, epoch))

    def write_resume(self, state_file: Path, state: dict) -> None:
        save_torch(state, state_file)

    # --- reading the labels back ------------------------------------------------------------
    def noisy_labels(self, grid, run, train_y, problems: list) -> torch.Tensor:
        """The corrupted training labels (60000,) that `run` (a runs.Run) trained on, from the
        corruption file of its level (and replicate, with labels per replicate); recomputed from
        its corruption seed if the file is missing, damaged or another grid's (a problem is
        recorded)."""
        path = self.corruption_file(grid, run.level, run.replicate)
        recomputed = corrupt_labels(train_y, run.level, run.corruption_seed)[0]
        fix = "its noisy labels were recomputed from the grid's corruption seed"
        try:
            saved = read_torch(path, "corruption file", fix)
            labels = saved.get("noisy_labels") if isinstance(saved, dict) else None
            if not isinstance(labels, torch.Tensor) or labels.shape != recomputed.shape:
                raise FileError(f"corruption file {shown(path)} is not this grid's; {fix}")
            if not torch.equal(labels, recomputed):
                raise FileError(f"corruption file {shown(path)} holds other labels than the "
                                f"grid's corruption seed gives (another grid's?); {fix}")
            return labels
        except FileError as e:
            problems.append(str(e))
            return recomputed
