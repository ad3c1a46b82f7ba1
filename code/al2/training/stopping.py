"""Stopping on a signal without losing work: a cluster's time limit or preemption, Ctrl-C.

StopOnSignal catches SIGTERM (Slurm at a time limit and on preemption, `scancel`, `kill`),
SIGUSR1 (Slurm's warning before the time limit: `sbatch --signal=B:USR1@120`) and SIGINT
(Ctrl-C). A caught signal only sets `requested`. The trainer checks it before every step, so
the step under way finishes; then the grid's exact state (weights, momentum, BN statistics,
the position inside the epoch, the history) is written atomically to its resume file
(grid.train_grid) and train.py exits with STOPPED_EXIT. `--resume` continues from that
step and ends bit for bit where the uninterrupted grid ends (on the same machine).

A second Ctrl-C interrupts at once (KeyboardInterrupt): every file is written atomically, so
what is on disk is the previous complete state.
"""
from __future__ import annotations

import signal

# sysexits.h's EX_TEMPFAIL ("a temporary failure; try again later"): stopped by a signal, the
# state saved, resumable with --resume. 0: done or stopped by --time-budget; 1: a run's loss
# became non-finite; 2: a user error or a file that could not be read or written; 130: a
# second Ctrl-C.
STOPPED_EXIT = 75
SIGNALS = ("SIGTERM", "SIGUSR1", "SIGINT")


class StopOnSignal:
    """A context manager: while inside, SIGNALS set `requested` (the signal's name) instead of
    ending the process; the previous handlers come back on exit. Main thread only (Python
    delivers signals there)."""

    def __init__(self, signals=SIGNALS):
        self.signals = [getattr(signal, name) for name in signals if hasattr(signal, name)]
        self.requested: str | None = None
        self.previous = {}

    def __enter__(self) -> "StopOnSignal":
        # a signal the process was started to ignore (Ctrl-C in a background job, nohup)
        # stays ignored, as Python itself leaves it
        self.previous = {s: signal.signal(s, self.handle) for s in self.signals
                         if signal.getsignal(s) is not signal.SIG_IGN}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def handle(self, signum, frame) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: the user wants out now
        self.requested = self.requested or signal.Signals(signum).name

    def check(self) -> bool:
        """Whether to stop before the next step (a plain attribute read: no device sync)."""
        return self.requested is not None
