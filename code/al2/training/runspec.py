"""A run of a grid (RunSpec): its baseline (one of Table 1's, or a remedy), AL2 or not, its
seed and replicate, and what those decide (its name, its initialisation, its labels'
corruption, its streams' keys), beside the grid's settings (config.GridConfig). Replicate 0 is
the grid of one replicate: the same names, seeds and streams; the others draw their own
(replicate_seed, replicate_key)."""
from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass

BASELINES = ("bare", "bn", "do", "wd")          # Table 1's (paper Sec. 4)
# Beyond the paper (remedies.py): label smoothing, generalised and symmetric cross-entropy,
# mixup. Each a baseline of its own, trainable without and with AL2; not in Table 1.
REMEDIES = ("ls", "gce", "sce", "mixup")
GRID_BASELINES = BASELINES + REMEDIES


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
    grid: "GridConfig"  # noqa: F821  (config.GridConfig: config imports this module)
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
