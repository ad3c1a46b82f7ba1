"""Run checkpoints: one run as a plain LeNet state_dict with its config, written at the grid's
checkpoint epochs (training.records.EpochRecorder into training.folder's files) and read back
here, keys checked strictly."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import UserError
from ..files import FileError, read_torch
from ..paths import shown
from ..training.config import GridConfig
from ..training.model import LeNet, StackedLeNet, lenet_from_seed
from .runs import grid_config

FIX = "retrain or resume that run"


class CheckpointError(UserError):
    """A checkpoint that cannot be used; the message names the file."""


def read_checkpoint(path, map_location="cpu", run: str | None = None,
                    grid: GridConfig | dict | None = None) -> dict:
    """The checkpoint dict {"model", "config", "epoch", "metrics"}; CheckpointError when it is
    missing, damaged, not a run checkpoint, or (run, grid given) another run's or grid's."""
    path = Path(path)
    try:
        ckpt = read_torch(path, "checkpoint", FIX, map_location)
    except FileError as e:
        raise CheckpointError(str(e)) from None
    config = ckpt.get("config") if isinstance(ckpt, dict) else None
    if not isinstance(config, dict) or not isinstance(ckpt.get("model"), dict) or \
            not {"batch_norm", "dropout", "run", "grid"} <= set(config):
        raise CheckpointError(f"checkpoint {shown(path)} is not an AL2 run checkpoint; {FIX}")
    if isinstance(grid, dict):
        grid = grid_config(grid)
    if (run is not None and config["run"] != run) or \
            (grid is not None and grid_config(config["grid"]) != grid):
        raise CheckpointError(f"checkpoint {shown(path)} belongs to run {config['run']} of "
                              f"another grid than this folder's; {FIX}")
    return ckpt


def load_checkpoint(path, map_location="cpu", run: str | None = None,
                    grid: GridConfig | dict | None = None):
    """A run checkpoint -> (al2.LeNet in eval mode, config dict). Keys are checked strictly."""
    ckpt = read_checkpoint(path, map_location, run, grid)
    model = model_for(ckpt["config"])
    try:
        model.load_state_dict(ckpt["model"], strict=True)
    except (RuntimeError, ValueError) as e:
        what = "holds the trunk alone; this analysis needs the whole network" \
            if not any(k.startswith("head.") for k in ckpt["model"]) else \
            f"does not fit its run's network ({str(e).splitlines()[0][:120]})"
        raise CheckpointError(f"checkpoint {shown(path)} {what}; {FIX}") from None
    return model.eval(), ckpt["config"]


def load_trunk(path, map_location="cpu", run: str | None = None,
               grid: GridConfig | dict | None = None):
    """The trunk of a run checkpoint -> (al2.LeNet in eval mode, config dict), for analyses that
    read the trunk's outputs alone (the similarity, Sec. 5.1). The checkpoint may hold the whole
    network or its trunk alone; the returned model's head is filled with NaN either way, so that
    any use of it shows."""
    ckpt = read_checkpoint(path, map_location, run, grid)
    model = model_for(ckpt["config"])
    trunk = {k[len("trunk."):]: v for k, v in ckpt["model"].items() if k.startswith("trunk.")}
    try:
        model.trunk.load_state_dict(trunk, strict=True)
    except (RuntimeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {shown(path)}: its trunk does not fit its run's network "
                              f"({str(e).splitlines()[0][:120]}); {FIX}") from None
    with torch.no_grad():
        for p in model.head.parameters():
            p.fill_(float("nan"))
    return model.eval(), ckpt["config"]


def model_for(config: dict) -> LeNet:
    try:  # a fixed seed: building the model leaves the global RNG alone
        return lenet_from_seed(0, bool(config["batch_norm"]), float(config["dropout"]))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"a checkpoint's config is not a run's ({e})") from None


def stack_checkpoints(runs: list, epoch, problems: list, device="cpu",
                      trunk_only: bool = False):
    """Every run's checkpoint stacked into one StackedLeNet in eval mode on `device`, for the
    analyses (comparison, similarity, ablation): `epoch` an int, or a function of the run (e.g.
    its own last epoch). A checkpoint that cannot be used is recorded in `problems` (naming the
    file) and its run left out. trunk_only: load_trunk (the head filled with NaN) for analyses
    that read trunk outputs alone. Returns (the stack, the runs it holds), (None, []) when no
    checkpoint could be used."""
    load = load_trunk if trunk_only else load_checkpoint
    models, kept = [], []
    for r in runs:
        at = epoch(r) if callable(epoch) else epoch
        try:
            models.append(load(r.checkpoint(at), run=r.name, grid=r.grid)[0])
            kept.append(r)
        except CheckpointError as e:
            problems.append(str(e))
    if not models:
        return None, []
    return StackedLeNet(models).to(device).eval(), kept
