"""Representation similarity (paper Sec. 5.1, Fig. 1): trunk outputs as svcca's (neurons,
datapoints), the authors' statistics between two of them, and, for a grid, which runs are
compared at which epochs, written to similarity.csv / similarity.png.

For any trunk/head model: `datapoints(features)` lays out trunk outputs as the authors did
(every spatial position of every image a datapoint for convolutional features), `compare(a, b)`
gives the statistics the authors reported, plus the published-formula variants, and
`compare_models(model_a, model_b, trunk, inputs)` does both for two models.
"""
from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

import torch

import svcca

from ..files import FileError, read_torch, significant
from ..method.regularizer import trunk_outputs
from ..paths import shown
from ..training.inference import trunk_features
from ..training.model import CHANNELS, FEATURES
from . import plotting
from .checkpoints import CheckpointError
from .replicates import mean_sd
from .runs import Run

if TYPE_CHECKING:
    from .output import Evaluation, Settings

# Our column name -> svcca.pairwise's statistic. The first three are what the authors'
# evaluate.py reports (google/svcca, epsilon 1e-10): the truncated mean CCA (threshold 0.98),
# SVCCA on the top 10 SVD directions with the same truncated mean, and the public PWCCA code.
# The rest are the published formulas' variants and linear CKA, kept beside them.
AUTHORS_STATISTICS = {"mean_cca_authors": "mean_cca", "svcca_authors": "svcca_truncated",
                      "pwcca_authors": "pwcca_reference"}
EXTRA_STATISTICS = {"mean_cca_all": "mean_cca_all", "svcca_all": "svcca",
                    "pwcca_morcos": "pwcca", "cka": "cka"}
SIMILARITY_STATISTICS = {**AUTHORS_STATISTICS, **EXTRA_STATISTICS}
AUTHORS_EPSILON, AUTHORS_SVD_DIMS = 1e-10, 10
SIMILARITY_COLUMNS = ["epoch", "pair", "run_a", "run_b", "statistic", "value", "datapoints"]


def datapoints(features: torch.Tensor) -> torch.Tensor:
    """Trunk outputs -> (neurons, datapoints), float32. Convolutional features (n, C, H, W):
    each of the H x W positions of each image is a datapoint, C neurons x n*H*W datapoints in
    (image, row, column) order, as the authors' evaluate.py lays them out (their
    permute(0, 2, 3, 1)). Flat features (n, D): D neurons x n datapoints."""
    f = features.detach().float()
    if f.dim() == 4:
        n, c, h, w = f.shape
        return f.permute(1, 0, 2, 3).reshape(c, n * h * w)
    if f.dim() == 2:
        return f.T
    raise ValueError(f"trunk outputs must be (n, C, H, W) or (n, D), got shape {tuple(f.shape)}")


def spatial_points(features: torch.Tensor) -> torch.Tensor:
    """LeNet trunk outputs (n, 800) -> (50 neurons, 16 n datapoints): datapoints() of the
    (n, 50, 4, 4) maps they flatten (Sec. 5.1)."""
    return datapoints(features.view(len(features), CHANNELS, 4, 4))


def compare(a: torch.Tensor, b: torch.Tensor, statistics=None) -> dict[str, float]:
    """Similarity statistics of two representations (neurons, datapoints) of the same
    datapoints, as the authors computed them (epsilon 1e-10, 10 SVD directions) and beside
    them the published formulas: name (SIMILARITY_STATISTICS) -> value."""
    names = list(statistics or SIMILARITY_STATISTICS)
    values = svcca.pairwise([a, b], statistics=tuple(SIMILARITY_STATISTICS[s] for s in names),
                            pairs=[(0, 1)], keep_dims=AUTHORS_SVD_DIMS, epsilon=AUTHORS_EPSILON)
    return {s: float(values[SIMILARITY_STATISTICS[s]][0]) for s in names}


def compare_models(model_a, model_b, trunk, inputs, statistics=None,
                   batch_size: int = 256) -> dict[str, float]:
    """The similarity of two models' representations of the same inputs (e.g. two checkpoints,
    or a network trained without and with AL2): their trunk outputs (trunk: a module name both
    share, or a pair of modules), laid out by datapoints(), compared by compare()."""
    trunk_a, trunk_b = trunk if isinstance(trunk, tuple) else (trunk, trunk)
    a = datapoints(trunk_outputs(model_a, trunk_a, inputs, batch_size))
    b = datapoints(trunk_outputs(model_b, trunk_b, inputs, batch_size))
    return compare(a, b, statistics)


def random_floor(shape, seed: int, epoch: int, index: int, device=None) -> torch.Tensor:
    """Uniform [0, 1) activations of `shape` (float64), the authors' floor
    (np.random.uniform of the compared shape), drawn from (seed, epoch, index)."""
    gen = torch.Generator(device=device or "cpu").manual_seed((seed * 100_003 + epoch) * 1009
                                                             + index)
    return torch.rand(shape, generator=gen, dtype=torch.float64, device=device or "cpu")


def similarity_rows(reps: dict, pairs: list[tuple], epoch: int, seed: int = 0) -> list[dict]:
    """Statistics (SIMILARITY_STATISTICS) for named pairs of representations at one epoch, all
    from one Gram matrix (svcca.pairwise).

    reps: name -> (neurons, datapoints) tensor. pairs: (kind, name_a, name_b), where name_b
    may be "random:<name_a>": uniform random activations of the same shape (the floor).
    """
    names = list(reps)
    tensors = [reps[k] for k in names]
    for kind, a, b in pairs:
        if b.startswith("random:") and b not in reps:
            names.append(b)
            tensors.append(random_floor(reps[a].shape, seed, epoch, len(names),
                                        reps[a].device))
    index = {k: i for i, k in enumerate(names)}
    # Dead representations (every neuron constant) have no CCA: record NaN for their pairs.
    alive = {k: bool((t.std(1) > 0).any()) for k, t in zip(names, tensors)}
    ok = [pair for pair in pairs if alive[pair[1]] and alive[pair[2]]]
    values = svcca.pairwise(tensors, statistics=tuple(SIMILARITY_STATISTICS.values()),
                            pairs=[(index[a], index[b]) for _, a, b in ok],
                            keep_dims=AUTHORS_SVD_DIMS, epsilon=AUTHORS_EPSILON) if ok else {}
    pos = {pair: i for i, pair in enumerate(ok)}
    rows = []
    for pair in pairs:
        kind, a, b = pair
        for stat, measure in SIMILARITY_STATISTICS.items():
            value = values[measure][pos[pair]] if pair in pos else math.nan
            rows.append({"epoch": epoch, "pair": kind, "run_a": a,
                         "run_b": "random" if b.startswith("random:") else b,
                         "statistic": stat, "value": float(value)})
    return rows


def similarity_pairs(runs: list[Run]) -> list[tuple]:
    """(kind, run_a, run_b): every pair of independently initialised instances within a
    (baseline, AL2) group (seeds and replicates: n(n-1)/2 pairs of n instances), without vs
    with AL2 at the same baseline, seed and replicate, and each run against random activations
    (the floor)."""
    pairs = []
    groups = {}
    for r in runs:  # a noise sweep compares runs of one level
        groups.setdefault((r.level, r.baseline, r.use_al2), []).append(r)
    for (_, _, use_al2), group in groups.items():
        ordered = sorted(group, key=lambda r: (r.replicate, r.seed))
        for a, b in itertools.combinations(ordered, 2):
            pairs.append(("seeds_al2" if use_al2 else "seeds_plain", a.name, b.name))
    by_key = {(r.level, r.baseline, r.seed, r.replicate, r.use_al2): r for r in runs}
    for (level, baseline, seed, replicate, use_al2), r in sorted(by_key.items()):
        twin = by_key.get((level, baseline, seed, replicate, True))
        if not use_al2 and twin is not None:
            pairs.append(("plain_vs_al2", r.name, twin.name))
    for r in runs:
        pairs.append(("random_al2" if r.use_al2 else "random_plain", r.name, f"random:{r.name}"))
    return pairs


def similarity_epochs(runs: list[Run]) -> list[int]:
    """The checkpoint epochs every run has. For grids of 100 epochs or more, the authors'
    choice (their evaluate.py: epochs 0, 100, ..., 500), extended to the run's end: 0, 1 (the
    authors' `epoch_0` file is written after the first epoch), then every 100th."""
    planned = set.intersection(*(set(r.saved_config.get("checkpoint_epochs", [])) for r in runs))
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
        feats = read_torch(path, "activations", "retrain or resume that run")
    except FileError as e:
        raise CheckpointError(str(e)) from None
    if not isinstance(feats, torch.Tensor) or feats.dim() != 2 or feats.shape[1] != FEATURES:
        raise CheckpointError(f"activations {shown(path)} are not a run's saved trunk outputs "
                              f"(n, 800); retrain or resume that run")
    return spatial_points(feats[:images] if images else feats)


def recomputed_representations(ev: "Evaluation", epoch: int, test_x: torch.Tensor) -> dict:
    """name -> (50, 16 n) representations of every run at `epoch` on the images `test_x`,
    recomputed from the checkpoints' trunks: all runs in one StackedLeNet on test_x's device."""
    model, kept = ev.stack(ev.runs, epoch, trunk_only=True)
    if model is None:
        return {}
    feats = trunk_features(model, test_x)                                   # (R, n, 800)
    return {r.name: spatial_points(f) for r, f in zip(kept, feats)}


def representations(ev: "Evaluation", epoch: int, images: int | None, test_x) -> dict:
    """name -> (50, 16 n) representation of every run at `epoch`: recomputed on test_x (the
    normalised test images, when more are asked for than were saved), else the saved ones."""
    if test_x is not None:
        return recomputed_representations(ev, epoch, test_x[:images])
    reps = {}
    for r in ev.runs:
        try:
            reps[r.name] = saved_representation(r, epoch, images).to(ev.device)
        except CheckpointError as e:
            ev.problems.append(str(e))
    return reps


VALUE_DIGITS = 6   # similarity values in the CSVs: a BLAS's last bits never show as a change


def write_similarity(ev: "Evaluation", s: "Settings") -> None:
    """similarity.csv/.png (Sec. 5.1), and for a grid of replicates similarity_summary.csv/.md
    (over its instance pairs), at s.similarity_epochs (default: similarity_epochs) on
    s.similarity_images test images (recomputed from the checkpoints when more than were saved
    during training)."""
    runs, images, test_x = ev.runs, s.similarity_images, None
    if images and images > min(r.saved_config.get("activation_images", 0) for r in runs):
        test_x = ev.images("test", images)[0]
    pairs, rows = similarity_pairs(runs), []
    for epoch in s.similarity_epochs or similarity_epochs(runs):
        reps = representations(ev, epoch, images, test_x)
        usable = [p for p in pairs if p[1] in reps and (p[2].startswith("random:")
                                                         or p[2] in reps)]
        for row in similarity_rows(reps, usable, epoch, s.seed):
            rows.append({**row, "value": significant(row["value"], VALUE_DIGITS),
                         "datapoints": next(iter(reps.values())).shape[1]})
    if not rows:
        return
    ev.save_csv(rows, "similarity.csv", SIMILARITY_COLUMNS)
    baseline_of = {r.name: r.baseline for r in runs}
    ev.save_png("similarity.png",
                lambda path: plotting.similarity_png(figure_rows(rows, baseline_of), path))
    if ev.grid.replicates > 1:
        table = similarity_summary(rows, baseline_of)
        ev.save_csv([{k: significant(v, VALUE_DIGITS) if isinstance(v, float) else v
                      for k, v in row.items()} for row in table],
                    "similarity_summary.csv", SUMMARY_COLUMNS)
        ev.save_text(summary_markdown(table), "similarity_summary.md")


FIG1_BASELINE = "bare"   # Fig. 1 compares Bare instances (Sec. 5.1)
SUMMARY_COLUMNS = ["epoch", "baseline", "pair", "statistic", "pairs", "mean", "sd", "min", "max"]


def figure_rows(rows: list[dict], baseline_of: dict) -> list[dict]:
    """The rows similarity.png shows: all of them, or when several baselines have pairs of
    instances (a grid of replicates) Fig. 1's, Bare's; similarity.csv keeps them all."""
    with_instances = {baseline_of[r["run_a"]] for r in rows if r["pair"].startswith("seeds")}
    if len(with_instances) > 1 and FIG1_BASELINE in with_instances:
        return [r for r in rows if baseline_of[r["run_a"]] == FIG1_BASELINE]
    return rows


def similarity_summary(rows: list[dict], baseline_of: dict) -> list[dict]:
    """Per epoch, baseline, pair kind and statistic: the number of pairs and the mean, sample
    sd, min and max of their values (NaN values, a dead representation's, left out)."""
    groups = {}
    for r in rows:
        key = (r["epoch"], baseline_of[r["run_a"]], r["pair"], r["statistic"])
        groups.setdefault(key, []).append(r["value"])
    out = []
    for (epoch, baseline, pair, stat), values in groups.items():
        v = [x for x in values if not math.isnan(x)]
        mean, sd, n = mean_sd(v)
        out.append({"epoch": epoch, "baseline": baseline, "pair": pair, "statistic": stat,
                    "pairs": n, "mean": mean, "sd": sd,
                    "min": min(v, default=math.nan), "max": max(v, default=math.nan)})
    return out


SUMMARY_KINDS = {"seeds_plain": "instances without AL2", "seeds_al2": "instances with AL2",
                 "random_plain": "random floor"}


def summary_markdown(summary: list[dict]) -> str:
    """Fig. 1 as numbers: for the Bare baseline (or the first with instance pairs), each of the
    authors' statistics per epoch over its pairs: mean ± sd (pairs), range min–max (a range,
    not an interval: the pairs share networks)."""
    with_pairs = [r["baseline"] for r in summary if r["pair"] == "seeds_plain"]
    if not with_pairs:
        return "No baseline has two instances of one type: no pairs to summarise.\n"
    baseline = FIG1_BASELINE if FIG1_BASELINE in with_pairs else with_pairs[0]
    index = {(r["epoch"], r["pair"], r["statistic"]): r for r in summary
             if r["baseline"] == baseline}
    epochs = sorted({r["epoch"] for r in summary if r["baseline"] == baseline})
    lines = [f"### Representation similarity of independently trained {baseline.upper()} "
             f"networks (Sec. 5.1, Fig. 1)", "",
             "Each cell: mean ± sd (number of pairs), then the range min–max over every pair of "
             "instances of a type (pairs share networks: no interval); the floor is each run "
             "against uniform random activations of its shape.",
             ""]
    for stat in AUTHORS_STATISTICS:
        lines += [f"**{stat}**", "", "| epoch | " + " | ".join(SUMMARY_KINDS.values()) + " |",
                  "|---|" + "---|" * len(SUMMARY_KINDS)]
        for e in epochs:
            cells = []
            for kind in SUMMARY_KINDS:
                r = index.get((e, kind, stat))
                cells.append("–" if r is None or not r["pairs"] else
                             f"{r['mean']:.3f}" + (f" ± {r['sd']:.3f}" if r["pairs"] > 1 else "")
                             + f" ({r['pairs']}), {r['min']:.3f}–{r['max']:.3f}")
            lines.append(f"| {e} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)

