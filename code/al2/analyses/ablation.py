"""Cumulative ablation (paper Sec. 5.2): zero a growing fraction of a representation and measure
the head's accuracy on what is left. A network that memorised is more fragile (Morcos et al.
2018, "On the importance of single directions for generalization").

For any trunk/head model: `cumulative_ablation(head, features, labels)`. For a grid:
`write_ablation`, every run's head in one stacked pass with the same masks (ablation.csv/.png).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..training.inference import trunk_chunk, trunk_features
from ..training.model import CHANNELS, POSITIONS, StackedLeNet
from . import plotting
from .runs import label_groups

if TYPE_CHECKING:
    from .output import Evaluation, Settings

MODES = ("element", "unit")
ABLATION_COLUMNS = ["run", "baseline", "al2", "seed", "epoch", "mode", "fraction", "draws",
                    "images", "acc_train_noisy", "acc_train_clean", "acc_test"]


def ablation_fractions(step: float = 0.1) -> np.ndarray:
    """0, 0.1, ..., 1: the fractions of the representation zeroed."""
    return np.round(np.arange(0.0, 1.0 + 1e-9, step), 10)


@torch.no_grad()
def ablation_masks(mode: str, fractions: torch.Tensor, draws: int, n: int, shape: tuple,
                   generator: torch.Generator) -> torch.Tensor:
    """Keep-masks (F, draws, n or 1, *shape) for each ablation fraction; shape = (C, *rest), the
    units C (channels) and their positions.

    element: each activation is zeroed independently with probability `fraction` (the authors'
    code); a fraction of 0 keeps everything and 1 zeroes everything, exactly.
    unit: round(fraction * C) whole units (all their positions) are zeroed, chosen at random per
    draw and shared by all samples (Morcos et al. 2018).
    """
    F_, dev = len(fractions), generator.device
    if mode == "element":
        u = torch.rand(F_, draws, n, *shape, generator=generator, device=dev)
        return u >= fractions.view(F_, 1, 1, *[1] * len(shape))
    if mode == "unit":
        units = shape[0]
        ranks = torch.rand(F_, draws, units, generator=generator, device=dev).argsort(-1)
        k = torch.round(fractions * units).long().view(F_, 1, 1)
        keep = ranks >= k                                                   # (F, draws, C)
        return keep.view(F_, draws, 1, units, *[1] * (len(shape) - 1))
    raise ValueError(f"unknown ablation mode {mode!r}; choose element or unit")


@torch.no_grad()
def cumulative_ablation(head, features: torch.Tensor, labels: dict, mode: str = "element",
                        fractions=None, draws: int = 3, seed: int = 0, shared_dims: int = 0,
                        vectors: int = 100_000) -> dict:
    """Accuracy (%) of `head` on ablated features, for every fraction, averaged over draws.

    features (n, *shared, C, *rest): n samples' trunk outputs, e.g. (n, C, H, W) for a
    convolutional trunk or (n, D) for a flat one; the `shared_dims` dimensions after n get the
    same masks (stacked runs: a paired comparison); C are the units that unit mode zeroes.
    head: ablated features (b, *shared, C, *rest) -> logits (..., b, classes).
    labels: name -> (n,) targets on the features' device.
    Returns name -> array (..., F) (the head's leading output dimensions, then the fractions).
    Vectorised over fractions and draws; `vectors` bounds F * draws * chunk * prod(shared).
    """
    fractions = ablation_fractions() if fractions is None else fractions
    dev, n = features.device, features.shape[0]
    shared = features.shape[1:1 + shared_dims]
    shape = tuple(features.shape[1 + shared_dims:])
    fractions = torch.as_tensor(fractions, dtype=torch.float32, device=dev)
    F_ = len(fractions)
    gen = torch.Generator(device=dev).manual_seed(seed)
    masks = ablation_masks(mode, fractions, draws, 1, shape, gen) if mode == "unit" else None
    expand = (slice(None),) * 3 + (None,) * shared_dims            # masks over the shared dims
    chunk = max(1, vectors // (F_ * draws * math.prod(shared)))
    correct = {}
    for s in range(0, n, chunk):
        f = features[s:s + chunk]                                   # (c, *shared, C, *rest)
        c = f.shape[0]
        m = masks if masks is not None else ablation_masks(mode, fractions, draws, c, shape, gen)
        ablated = (m[expand] * f).flatten(0, 2)                     # (F*draws*c, *shared, ...)
        pred = head(ablated).argmax(-1)                             # (..., F*draws*c)
        pred = pred.view(*pred.shape[:-1], F_, draws, c)
        for k, y in labels.items():
            hits = (pred == y[s:s + chunk]).float().sum((-2, -1))   # (..., F)
            correct[k] = hits if k not in correct else correct[k] + hits
    return {k: (100.0 * v / (draws * n)).cpu().numpy() for k, v in correct.items()}


def stacked_ablation(model: StackedLeNet, features: torch.Tensor, labels: dict, mode: str,
                     fractions, draws: int, seed: int) -> dict:
    """cumulative_ablation of every run of a StackedLeNet at once, the same masks for all runs.
    features (R, n, 800): the runs' trunk outputs. Returns name -> (R, F) array."""
    R, n, _ = features.shape
    maps = features.transpose(0, 1).reshape(n, R, CHANNELS, POSITIONS)   # (n, R, 50, 16)
    model.eval()
    return cumulative_ablation(lambda f: model.head(f.flatten(-2)), maps, labels, mode,
                               fractions, draws, seed, shared_dims=1)


def write_ablation(ev: "Evaluation", s: "Settings") -> None:
    """ablation.csv/.png: every run at its last epoch (or s.ablation_epochs), element and unit
    mode, on the first s.ablation_images training images (noisy and clean labels) and as many
    test images."""
    n, grid = s.ablation_images, ev.grid
    (train_x, train_y), (test_x, test_y) = (ev.images("train", min(n, grid.subset or n)),
                                            ev.images("test", min(n, grid.test_subset or n)))
    rows = []
    # each noise level (and with labels per replicate, each replicate) has its own labels
    for (level, _), group in label_groups(ev.runs).items():
        noisy = ev.noisy_labels(group[0])[:len(train_y)].to(ev.device)
        sets = {"train": (train_x, {"acc_train_noisy": noisy, "acc_train_clean": train_y}),
                "test": (test_x, {"acc_test": test_y})}
        rows += ablation_rows(ev, group, s.ablation_epochs, sets, s.ablation_draws, s.seed)
    if rows:
        ev.save_csv(rows, "ablation.csv", ABLATION_COLUMNS)
        names = {r.name: r.base_name for r in ev.runs}
        ev.save_png("ablation.png", lambda path: plotting.ablation_png(rows, path, names))


def ablation_rows(ev: "Evaluation", runs, epochs, sets: dict, draws: int,
                  seed: int) -> list[dict]:
    """Ablation rows of runs that share their labels: at each run's last epoch (or `epochs`),
    all runs' heads in one stacked pass. sets: name -> (images, {column: labels})."""
    fractions = ablation_fractions()
    rows = []
    for epoch in (epochs or sorted({r.epochs for r in runs})):
        due = [r for r in runs if epochs is not None or r.epochs == epoch]
        # by default each run is ablated at its own last epoch
        model, group = ev.stack(due, epoch)
        if model is None:
            continue
        chunk = trunk_chunk(ev.device, model.runs)
        feats = {k: trunk_features(model, x, chunk) for k, (x, _) in sets.items()}  # (R, n, 800)
        for mode in MODES:
            acc = {}
            for k, (_, labels) in sets.items():
                acc.update(stacked_ablation(model, feats[k], labels, mode, fractions, draws,
                                            seed))
            for j, r in enumerate(group):
                for i, frac in enumerate(fractions):
                    rows.append({"run": r.name, "baseline": r.baseline, "al2": r.use_al2,
                                 "seed": r.seed, "epoch": epoch, "mode": mode,
                                 "fraction": float(frac), "draws": draws,
                                 "images": len(sets["train"][0]),
                                 **{k: float(v[j, i]) for k, v in acc.items()}})
    return rows
