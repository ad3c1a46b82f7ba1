"""Representation similarity over training (paper Sec. 5.1, Fig. 1): which runs are compared,
at which epochs, on which representations, written to similarity.csv / similarity.png."""
from __future__ import annotations

import itertools
from pathlib import Path

import torch

from . import plotting
from .analysis import similarity_rows, spatial_points
from .checkpoints import CheckpointError, load_checkpoint, save_csv
from .inference import trunk_features
from .model import StackedLeNet
from .runs import Run

SIMILARITY_COLUMNS = ["epoch", "pair", "run_a", "run_b", "statistic", "value", "datapoints"]


def similarity_pairs(runs: list[Run]) -> list[tuple]:
    """(kind, run_a, run_b): seed pairs within a (baseline, AL2) group, without vs with AL2 at
    the same baseline and seed, and each run against random activations (the floor)."""
    pairs = []
    groups = {}
    for r in runs:  # a noise sweep compares runs of one level
        groups.setdefault((r.level, r.baseline, r.use_al2), []).append(r)
    for (_, _, use_al2), group in groups.items():
        for a, b in itertools.combinations(sorted(group, key=lambda r: r.seed), 2):
            pairs.append(("seeds_al2" if use_al2 else "seeds_plain", a.name, b.name))
    by_key = {(r.level, r.baseline, r.seed, r.use_al2): r for r in runs}
    for (level, baseline, seed, use_al2), r in sorted(by_key.items()):
        if not use_al2 and (level, baseline, seed, True) in by_key:
            pairs.append(("plain_vs_al2", r.name, by_key[(level, baseline, seed, True)].name))
    for r in runs:
        pairs.append(("random_al2" if r.use_al2 else "random_plain", r.name, f"random:{r.name}"))
    return pairs


def similarity_epochs(runs: list[Run]) -> list[int]:
    """The checkpoint epochs every run has. For grids of 100 epochs or more, the authors'
    choice (their evaluate.py: epochs 0, 100, ..., 500), extended to the run's end: 0, 1 (the
    authors' `epoch_0` file is written after the first epoch), then every 100th."""
    planned = set.intersection(*(set(r.config.get("checkpoint_epochs", [])) for r in runs))
    trained = min(r.epochs for r in runs)   # less than planned when --time-budget stopped it
    common = sorted(e for e in planned if e <= trained)
    if all(r.checkpoint(trained).exists() for r in runs):
        common = sorted(set(common) | {trained})  # the stop checkpoint of a budgeted grid
    if max(common, default=0) >= 100:
        return [e for e in common if e in (0, 1) or e % 100 == 0 or e == trained]
    return common


def saved_representation(run: Run, epoch: int, images: int | None) -> torch.Tensor:
    """(50, 16 n) representation at `epoch` from the activations saved during training."""
    path = run.activations(epoch)
    try:
        feats = torch.load(path, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"activations {path} are missing; retrain or resume that run") \
            from None
    except Exception as e:
        raise CheckpointError(f"activations {path} are damaged ({type(e).__name__}); "
                              f"retrain or resume that run") from None
    return spatial_points(feats[:images] if images else feats)


def recomputed_representations(runs: list[Run], epoch: int, test_x: torch.Tensor,
                               problems: list) -> dict:
    """name -> (50, 16 n) representations of every run at `epoch` on the images `test_x`,
    recomputed from the checkpoints: all runs in one StackedLeNet on test_x's device."""
    models, names = [], []
    for r in runs:
        try:
            models.append(load_checkpoint(r.checkpoint(epoch), trunk_only_ok=True)[0])
            names.append(r.name)
        except CheckpointError as e:
            problems.append(str(e))
    if not models:
        return {}
    feats = trunk_features(StackedLeNet(models).to(test_x.device), test_x)    # (R, n, 800)
    return {name: spatial_points(f) for name, f in zip(names, feats)}


def write_similarity(runs, out: Path, images: int | None, epochs: list[int] | None,
                     problems: list, test_x, seed: int, device: torch.device) -> list[dict]:
    """similarity.csv/.png (Sec. 5.1). test_x: the normalised test images on `device` when the
    representations are recomputed from checkpoints (more images than were saved), else None."""
    pairs = similarity_pairs(runs)
    rows = []
    for epoch in epochs or similarity_epochs(runs):
        if test_x is not None:
            reps = recomputed_representations(runs, epoch, test_x[:images], problems)
        else:
            reps = {}
            for r in runs:
                try:
                    reps[r.name] = saved_representation(r, epoch, images).to(device)
                except CheckpointError as e:
                    problems.append(str(e))
        usable = [p for p in pairs if p[1] in reps and (p[2].startswith("random:")
                                                         or p[2] in reps)]
        for row in similarity_rows(reps, usable, epoch, seed):
            row["datapoints"] = next(iter(reps.values())).shape[1]
            rows.append(row)
    if rows:
        save_csv(rows, out / "similarity.csv", SIMILARITY_COLUMNS)
        plotting.similarity_png(rows, out / "similarity.png")
    return rows
