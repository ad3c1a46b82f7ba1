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

import zlib
from dataclasses import asdict, dataclass, field

from ..errors import UserError
from ..method.remedies import DEFAULTS as REMEDY_DEFAULTS
from ..method.schedule import MAP_FAC1, MAP_FAC2, MAP_START, MAP_THRESHOLD
from .model import BN_INITS

BASELINES = ("bare", "bn", "do", "wd")          # Table 1's (paper Sec. 4)
# Beyond the paper (remedies.py): label smoothing, generalised and symmetric cross-entropy,
# mixup. Each a baseline of its own, trainable without and with AL2; not in Table 1.
REMEDIES = ("ls", "gce", "sce", "mixup")
GRID_BASELINES = BASELINES + REMEDIES
MNIST_TRAIN, MNIST_TEST = 60000, 10000   # MNIST's training and test images


@dataclass
class GridConfig:
    """Every setting of a grid. Defaults are the paper's Table 1 setting (Sec. 4)."""
    preset: str = "paper"
    baselines: list = field(default_factory=lambda: list(BASELINES))
    al2: str = "both"                 # off | on | both
    seeds: list = field(default_factory=lambda: [0])  # Table 1: every baseline, these seeds
    # baseline -> more seeds, trained beside Table 1's but not tabulated. Fig. 1 (Sec. 5.1)
    # compares 4 independently initialised Bare networks without and 4 with AL2: PRESETS
    # ["paper"] below sets {"bare": [1, 2, 3]}.
    extra_seeds: dict = field(default_factory=dict)
    epochs: int = 700                 # Table 1 reports epochs 100..700
    percent_corrupt: float | list = 75.0  # Table 1: 75% label noise; a list: one part per level
    corruption_seed: int = 0          # which labels are corrupted, shared by the grid
    order_seed: int = 0               # minibatch order, shared by the grid
    dropout_seed: int = 0             # dropout masks
    lr: float = 0.001                 # SGD learning rate
    momentum: float = 0.5
    batch_size: int = 64              # last partial batch kept
    weight_decay: float = 5e-4        # WD baseline (authors' help text: 5e-3 or 5e-4; README)
    dropout: float = 0.5              # DO baseline (authors' scripts)
    map_start: float = MAP_START      # get_map_weights(start, threshold, fac1, fac2): the
    map_threshold: float = MAP_THRESHOLD  # authors' defaults (schedule.py)
    map_fac1: float = MAP_FAC1
    map_fac2: float = MAP_FAC2
    subset: int | None = None         # first N training images (None: all 60,000)
    test_subset: int | None = None    # first N test images for the per-epoch test metrics
    checkpoint_every: int = 10        # checkpoints at epoch 0, every K epochs, and the last
    activation_images: int = 1000     # first N test images whose trunk outputs are saved
    bn_init: str = "uniform"          # BN gamma ~ U(0, 1) as in the authors' PyTorch 0.4/1.1
    tf32: bool = False                # CUDA: strict fp32 (the authors' 2019 GPUs had no TF32)
    # Beyond the paper: how sure a result is, and what a user without clean labels can do.
    replicates: int = 1               # independent repetitions of the whole grid (one: the paper)
    # the number of the first replicate: fresh replicates, never trained before, of a grid whose
    # first ones were used for a choice (code/studies/study_ramps.py's out-of-sample test)
    first_replicate: int = 0
    corruption_per_replicate: bool = False  # each replicate its own corrupted labels
    validation: int = 0               # held-out training images with their corrupted labels
    # The remedies' parameters (remedies.DEFAULTS: their papers' values and sources).
    label_smoothing: float = REMEDY_DEFAULTS["label_smoothing"][0]
    gce_q: float = REMEDY_DEFAULTS["gce_q"][0]
    sce_alpha: float = REMEDY_DEFAULTS["sce_alpha"][0]
    sce_beta: float = REMEDY_DEFAULTS["sce_beta"][0]
    sce_log_clip: float = REMEDY_DEFAULTS["sce_log_clip"][0]
    mixup_alpha: float = REMEDY_DEFAULTS["mixup_alpha"][0]

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


def replicate_seed(seed: int, replicate: int, what: str) -> int:
    """The seed of `what` in a replicate: `seed` itself in replicate 0 (a grid of one replicate
    is today's grid), a stable 32-bit number of (what, seed, replicate) in the others (CRC-32),
    so that replicates share no initialisation, labels or stream."""
    if replicate == 0:
        return seed
    return zlib.crc32(f"{what} seed {seed} replicate {replicate}".encode())


def replicate_key(replicate: int) -> int:
    """The key of a replicate's streams (rng.epoch_generator: its batch order and its runs'
    dropout masks): 0 for replicate 0, the grid's own streams; a stable 32-bit number for the
    others."""
    return 0 if replicate == 0 else zlib.crc32(f"streams of replicate {replicate}".encode())


@dataclass
class RunSpec:
    baseline: str
    use_al2: bool
    seed: int
    grid: GridConfig
    level: float = 75.0               # label noise (%) this run trains on
    replicate: int = 0                # which independent repetition of the grid

    @property
    def base_name(self) -> str:
        """The name without the replicate: what is the same run in every replicate."""
        name = f"{self.baseline}_{'al2' if self.use_al2 else 'plain'}_s{self.seed}"
        return name + (f"_n{self.level:g}" if len(self.grid.levels()) > 1 else "")

    @property
    def name(self) -> str:
        numbered = self.grid.replicates > 1 or self.grid.first_replicate > 0
        return self.base_name + (f"_r{self.replicate}" if numbered else "")

    @property
    def key(self) -> int:
        """A stable 32-bit number for this run (a CRC-32 of its name, without "_r0" in replicate
        0, so that replicate 0 draws what a grid of one replicate draws): keys its dropout
        stream."""
        return zlib.crc32((self.base_name + (f"_r{self.replicate}" if self.replicate else ""))
                          .encode())

    @property
    def init_seed(self) -> int:
        """The seed of this run's initial weights (its seed in replicate 0)."""
        return replicate_seed(self.seed, self.replicate, "init")

    @property
    def replicate_key(self) -> int:
        return replicate_key(self.replicate)

    @property
    def corruption_seed(self) -> int:
        """Which labels this run sees corrupted: the grid's, or its replicate's own."""
        seed = self.grid.corruption_seed
        return replicate_seed(seed, self.replicate, "corruption") \
            if self.grid.corruption_per_replicate else seed

    @property
    def fit(self) -> str:
        """The data term this run minimises (remedies.FITS): cross-entropy, Eq. 1's L_c, for
        Table 1's baselines; the remedy's loss for the others."""
        return "ce" if self.baseline in BASELINES else self.baseline

    @property
    def mixup(self) -> bool:
        return self.baseline == "mixup"

    @property
    def batch_norm(self) -> bool:
        return self.baseline == "bn"

    @property
    def dropout(self) -> float:
        return self.grid.dropout if self.baseline == "do" else 0.0

    @property
    def weight_decay(self) -> float:
        return self.grid.weight_decay if self.baseline == "wd" else 0.0

    @property
    def bn_init(self) -> str | None:
        return self.grid.bn_init if self.batch_norm else None

    @property
    def in_table(self) -> bool:
        """Whether Table 1 averages this run (a Table 1 baseline, its seed one of the grid's
        `seeds`; every replicate)."""
        return self.seed in self.grid.seeds and self.baseline in BASELINES

    def config(self) -> dict:
        """What rebuilds this run: its own settings plus the whole grid's."""
        return {"run": self.name, "baseline": self.baseline, "al2": self.use_al2,
                "seed": self.seed, "replicate": self.replicate, "init_seed": self.init_seed,
                "corruption_seed": self.corruption_seed, "fit": self.fit,
                "batch_norm": self.batch_norm, "dropout": self.dropout,
                "bn_init": self.bn_init, "weight_decay": self.weight_decay,
                "percent_corrupt": self.level,
                "in_table": self.in_table, "grid": asdict(self.grid)}


def full_grid(saved: dict) -> dict:
    """A saved grid (grid.json, a run's config) with the fields it predates at their defaults:
    a grid written before a field existed is the grid with that field's default, so that old run
    folders still resume and evaluate."""
    return {**asdict(GridConfig()), **saved}


class GridError(UserError):
    """A user-level problem with a grid, its output folder or the device; one-line message."""
