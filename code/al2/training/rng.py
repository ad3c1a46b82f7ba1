"""The randomness of a grid's runs, drawn from generators seeded by what a run is: its batch
order and its dropout masks do not depend on the other runs of its stack, and a resume at any
epoch or step repeats an uninterrupted run without saving generator states (only a signal's
stop inside an epoch saves the dropout streams' states). EpochDraws: all an epoch draws before
its first step."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..method.remedies import MixupDraws
from .config import RunSpec

ORDER_STREAM, DROPOUT_STREAM = 0, 1


def epoch_generator(seed: int, epoch: int, stream: int, device: torch.device,
                    key: int = 0, replicate_key: int = 0) -> torch.Generator:
    """A generator that depends only on (seed, epoch, stream, key, replicate_key): resuming at
    any epoch reproduces the batch order and dropout masks of an uninterrupted run without
    saving RNG states. replicate_key (< 2**32, config.replicate_key) tells replicates apart in
    the seed's low 32 bits; key (< 2**32, RunSpec.key) tells runs apart in its high 32 bits.
    Both are 0 for replicate 0's batch order: the seeds of a grid of one replicate.

    Devices read a seed differently: CUDA's generator takes all 64 bits, the CPU's Mersenne
    Twister only the low 32. So on the CPU the dropout runs of one replicate share their masks
    (a plain and an AL2 run: a paired comparison), on CUDA each run has its own; replicates
    differ on both."""
    base = (seed * 1_000_003 + epoch) * 2 + stream   # key 0: the grid's streams
    return torch.Generator(device=device).manual_seed((base ^ replicate_key) ^ (key << 32))


def dropout_generators(runs: list[RunSpec], seed: int, epoch: int,
                       device: torch.device) -> list[torch.Generator]:
    """One mask stream per run with dropout, keyed by the run itself and its replicate: its
    masks are the same in any grid, shard or stacking order that contains it."""
    return [epoch_generator(seed, epoch, DROPOUT_STREAM, device, r.key, r.replicate_key)
            for r in runs if r.dropout > 0]


@dataclass
class EpochDraws:
    """What an epoch draws before its first step (stack.Trainer.draws): each replicate's batch
    order (K, N), the dropout runs' mask streams (one generator per run, drawn from at each
    step), and mixup's lam and permutations (None without mixup runs)."""
    orders: torch.Tensor
    dropout: list[torch.Generator]
    mix: MixupDraws | None
    batch_size: int

    @property
    def samples(self) -> int:
        return self.orders.shape[1]

    def batches(self, start: int = 0):
        """(step, idx (K, b)) for steps start, start + 1, ...: the batch of each batch order,
        the last partial batch kept as a DataLoader would."""
        b = self.batch_size
        for step, i in enumerate(range(start * b, self.samples, b), start):
            yield step, self.orders[:, i:i + b]

    def mix_of(self, step: int, size: int):
        """Mixup's (lam (K,), perm (K, size)) of a step; None without mixup runs."""
        return None if self.mix is None else self.mix.step(step, size)
