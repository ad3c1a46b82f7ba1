"""A grid's settings (paper Sec. 4, Table 1, Fig. 1): GridConfig, its runs, and the presets.

A grid is replicates x baselines x {without, with AL2} x seeds: Table 1 trains every baseline
over the same `seeds`; Fig. 1 (Sec. 5.1) compares independently initialised instances, so a
baseline may have `extra_seeds` (the paper preset: Bare x 4 instances). Within a replicate every
run sees the same corrupted labels and the same minibatches (a paired comparison); its seed sets
its initialisation. Replicates are independent repetitions of the whole grid: replicate k's runs
differ from replicate j's in initialisation, minibatch order and dropout masks (and, with
`corruption_per_replicate`, in which labels are corrupted). Replicate 0 is the grid of one
replicate: the same names, seeds and streams.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import UserError
from ..method.remedies import DEFAULTS as REMEDY_DEFAULTS
from ..method.schedule import MAP_FAC1, MAP_FAC2, MAP_START, MAP_THRESHOLD
from .model import BN_INITS
from .runspec import (BASELINES, GRID_BASELINES, REMEDIES, RunSpec,  # noqa: F401 (the
                      replicate_key, replicate_seed)                  # names' first home)

MNIST_TRAIN, MNIST_TEST = 60000, 10000   # MNIST's training and test images


def setting(default, meaning: str, shown: str | None = None):
    """A GridConfig field: its default and its meaning, which train.py's --help shows (as the
    flag --<name-with-dashes>, "shown" in place of the default where that reads better)."""
    made = {"default_factory": lambda: type(default)(default)} \
        if isinstance(default, (list, dict)) else {"default": default}
    return field(**made, metadata={"help": meaning, "shown": shown})


def remedy_setting(name: str, meaning: str):
    """A remedy's parameter: its default and source from remedies.DEFAULTS."""
    value, source = REMEDY_DEFAULTS[name]
    return setting(value, f"{meaning}; {source}")


@dataclass
class GridConfig:
    """Every setting of a grid, each with its meaning (train.py's flags read them). Defaults
    are the paper's Table 1 setting (Sec. 4)."""
    preset: str = "paper"
    baselines: list = setting(list(BASELINES), f"comma list from {','.join(BASELINES)} (Table "
                              f"1's) and {','.join(REMEDIES)} (remedies, below)", "Table 1's four")
    al2: str = setting("both", "train without AL2, with it, or both (Table 1)")
    seeds: list = setting([0], "Table 1's seeds, for every baseline; a seed sets a run's "
                               "initialisation")
    # Fig. 1 (Sec. 5.1) compares 4 independently initialised Bare networks without and 4 with
    # AL2: PRESETS["paper"] sets {"bare": [1, 2, 3]}.
    extra_seeds: dict = setting({}, "more instances of a baseline for Fig. 1's similarity, not "
                                    "in Table 1; repeatable; 'none': no extra runs",
                                "none; the paper preset's: bare=1,2,3, 4 Bare in all")
    epochs: int = setting(700, "training epochs (Table 1 reports epochs 100..700)")
    percent_corrupt: float | list = setting(
        75.0, "label noise in %; several levels (e.g. 15,25,50,75,85) make a noise sweep, one "
              "stack of runs per level, run names ending in _n<level>")
    corruption_seed: int = setting(0, "which labels are corrupted, shared by the grid")
    order_seed: int = setting(0, "minibatch order, shared by all runs")
    dropout_seed: int = setting(0, "dropout masks")
    lr: float = setting(0.001, "SGD learning rate")
    momentum: float = setting(0.5, "SGD momentum")
    batch_size: int = setting(64, "minibatch size, last partial batch kept")
    weight_decay: float = setting(5e-4, "WD baseline's weight decay; the authors' help text "
                                        "names 5e-3 and 5e-4 (README)")
    dropout: float = setting(0.5, "DO baseline's dropout rate, the authors' scripts")
    # get_map_weights(start, threshold, fac1, fac2): the authors' defaults (schedule.py)
    map_start: float = setting(MAP_START, "AL2 weight at epoch 0")
    map_threshold: float = setting(MAP_THRESHOLD, "growth slows once the weight reaches this")
    map_fac1: float = setting(MAP_FAC1, "growth per epoch below the threshold")
    map_fac2: float = setting(MAP_FAC2, "growth per epoch above the threshold")
    subset: int | None = setting(None, "train on the first N training images", "all 60,000")
    test_subset: int | None = setting(None, "per-epoch test metrics on the first N test images",
                                      "all 10,000")
    checkpoint_every: int = setting(10, "checkpoint at epoch 0, every K epochs and the last")
    activation_images: int = setting(1000, "first N test images whose trunk outputs are saved "
                                           "at each checkpoint")
    bn_init: str = setting("uniform", "BN baseline's initial gamma: uniform = U(0, 1), the "
                                      "authors' PyTorch 0.4/1.1; ones = PyTorch >= 1.2")
    tf32: bool = setting(False, "TF32 matmuls and cuDNN convolutions on CUDA, a departure from "
                                "the paper's fp32 (the authors' 2019 GPUs had none)",
                         "off, strict fp32; no effect on the CPU")
    portable: bool = setting(False, "CPU: pin the kernels (AVX2, ATen's convolutions, 2 "
                                    "threads) so that any x86-64 CPU gives the same bits, "
                                    "slower (al2/training/portable.py)",
                             "off")
    # Beyond the paper: how sure a result is, and what a user without clean labels can do.
    replicates: int = setting(1, "independent repetitions of the whole grid in one stack, each "
                                 "its own initialisation, batch order and dropout masks, runs "
                                 "named ..._r<k>; replicate 0 is the grid of one replicate")
    first_replicate: int = setting(0, "number the replicates from K: fresh replicates of a grid "
                                      "whose first K were used for a choice, e.g. an "
                                      "out-of-sample test (studies/study_ramps.py)")
    corruption_per_replicate: bool = setting(False, "each replicate its own corrupted labels "
                                                    "(and noisy validation labels)",
                                             "off: the grid's labels for every replicate")
    validation: int = setting(0, "hold out N training images with their corrupted labels, never "
                                 "trained on, for early stopping (metrics.csv: val_acc, "
                                 "val_loss): the N images after --subset's; without --subset "
                                 "they come out of the 60,000", "0, none")
    # The remedies' parameters (remedies.DEFAULTS: their papers' values and sources).
    label_smoothing: float = remedy_setting("label_smoothing", "label smoothing epsilon (ls)")
    gce_q: float = remedy_setting("gce_q", "generalised cross-entropy exponent q (gce)")
    sce_alpha: float = remedy_setting("sce_alpha", "symmetric cross-entropy: weight of CE "
                                                  "(sce)")
    sce_beta: float = remedy_setting("sce_beta", "symmetric cross-entropy: weight of the "
                                                "reverse CE (sce)")
    sce_log_clip: float = remedy_setting("sce_log_clip", "symmetric cross-entropy: log 0 := A "
                                                        "in the reverse CE (sce)")
    mixup_alpha: float = remedy_setting("mixup_alpha", "mixup: lam ~ Beta(alpha, alpha) "
                                                      "(mixup)")

    def validate(self) -> None:
        """Raise ValueError with a one-line message for settings no run can use."""
        unknown = [b for b in self.baselines if b not in GRID_BASELINES]
        checks = [
            (not unknown, f"unknown baseline(s) {unknown}; choose from {list(GRID_BASELINES)}"),
            (len(self.baselines) > 0, "no baselines given"),
            (len(set(self.baselines)) == len(self.baselines), "a baseline is repeated"),
            (self.al2 in ("off", "on", "both"), f"al2 must be off, on or both, not {self.al2!r}"),
            (len(self.seeds) > 0 and len(set(self.seeds)) == len(self.seeds),
             "seeds must be a non-empty list without repeats"),
            (all(b in self.baselines for b in self.extra_seeds),
             f"extra seeds for {sorted(set(self.extra_seeds) - set(self.baselines))}, "
             f"not among the baselines {self.baselines}"),
            (all(len(set(v)) == len(v) for v in self.extra_seeds.values()),
             "extra seeds of a baseline repeat a seed"),
            (self.bn_init in BN_INITS, f"bn init must be one of {list(BN_INITS)}"),
            (self.epochs >= 0, f"epochs must be >= 0, got {self.epochs}"),
            (all(0 <= p <= 100 for p in self.levels()) and len(self.levels()) > 0,
             f"percent corrupt must lie in 0..100, got {self.percent_corrupt}"),
            (len(set(self.levels())) == len(self.levels()), "a noise level is repeated"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (0 <= self.momentum < 1, f"momentum must lie in [0, 1), got {self.momentum}"),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
            (0 < self.dropout < 1, f"dropout must lie in (0, 1), got {self.dropout}"),
            (self.subset is None or 1 <= self.subset <= MNIST_TRAIN,
             f"subset must lie in 1..{MNIST_TRAIN}"),
            (self.test_subset is None or 1 <= self.test_subset <= MNIST_TEST,
             f"test subset must lie in 1..{MNIST_TEST}"),
            (self.checkpoint_every >= 1, "checkpoint interval must be >= 1"),
            (0 <= self.activation_images <= MNIST_TEST,
             f"activation images must lie in 0..{MNIST_TEST}"),
            (self.replicates >= 1, f"replicates must be >= 1, got {self.replicates}"),
            (self.first_replicate >= 0,
             f"the first replicate must be >= 0, got {self.first_replicate}"),
            (self.validation >= 0, f"validation images must be >= 0, got {self.validation}"),
            (self.train_images() >= 1 and self.train_images() + self.validation <= MNIST_TRAIN,
             f"{self.train_images()} training and {self.validation} validation images do not "
             f"fit in MNIST's {MNIST_TRAIN}"),
            (0 <= self.label_smoothing < 1, "label smoothing must lie in [0, 1)"),
            (0 < self.gce_q <= 1, "the GCE exponent q must lie in (0, 1]"),
            (self.sce_alpha >= 0 and self.sce_beta >= 0, "SCE's alpha and beta must be >= 0"),
            (self.sce_log_clip < 0, "SCE's log clip A must be < 0"),
            (self.mixup_alpha > 0, "mixup's alpha must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def levels(self) -> list[float]:
        """The label-noise levels (%): one, or several for a noise sweep."""
        p = self.percent_corrupt
        return [float(v) for v in p] if isinstance(p, (list, tuple)) else [float(p)]

    def seeds_of(self, baseline: str) -> list[int]:
        """Table 1's seeds, then the baseline's extra instances (Fig. 1)."""
        return self.seeds + [s for s in self.extra_seeds.get(baseline, []) if s not in self.seeds]

    def train_images(self) -> int:
        """Images trained on: the first `subset`, or all of MNIST's 60,000 but the validation
        images (they follow the training images; validation_range)."""
        return self.subset or MNIST_TRAIN - self.validation

    def validation_range(self) -> range:
        """Indices of the held-out images (their labels corrupted as the grid's): the
        `validation` images right after the training images, never trained on."""
        return range(self.train_images(), self.train_images() + self.validation)

    def runs(self) -> list["RunSpec"]:
        """Level, then replicate, then baseline, AL2 off/on and seed: a replicate's runs are
        contiguous (they read one batch order), its mixup runs last (they read it mixed)."""
        flags = {"off": [False], "on": [True], "both": [False, True]}[self.al2]
        baselines = sorted(self.baselines, key=lambda b: b == "mixup")
        return [RunSpec(b, a, s, self, level, k) for level in self.levels()
                for k in self.replicate_numbers() for b in baselines for a in flags
                for s in self.seeds_of(b)]

    def replicate_numbers(self) -> range:
        """The replicates' numbers: first_replicate, then the next replicates - 1."""
        return range(self.first_replicate, self.first_replicate + self.replicates)

    def remedy_params(self) -> dict:
        """The remedies' parameters (remedies.fit_loss reads them)."""
        return {k: getattr(self, k) for k in REMEDY_DEFAULTS}

    def checkpoint_epochs(self) -> list[int]:
        """Epoch 0 (the initialisation), 1 (the authors' `epoch_0` file is saved after the first
        epoch), every `checkpoint_every` epochs, and the last."""
        every = set(range(0, self.epochs + 1, self.checkpoint_every))
        return sorted(every | {min(1, self.epochs), self.epochs})


def full_grid(saved: dict) -> dict:
    """A saved grid (grid.json, a run's config) with the fields it predates at their defaults:
    a grid written before a field existed is the grid with that field's default, so that old run
    folders still resume and evaluate."""
    return {**asdict(GridConfig()), **saved}


class GridError(UserError):
    """A user-level problem with a grid, its output folder or the device; one-line message."""
