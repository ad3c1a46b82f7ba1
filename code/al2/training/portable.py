"""The portable CPU mode (GridConfig.portable, train.py --portable; results/quick-portable):
meant to give the same bits on any x86-64 CPU with AVX2, Intel or AMD, with AVX-512 or not
(checked on one Intel Xeon against other start environments and thread counts:
tests/test_portable.py; not yet on an AMD CPU).

Beside the code and the seeds, what decides a CPU run's bits is which kernels compute it: ATen
picks its vectorised code for the CPU it finds (AVX2 or AVX-512), MKL its gemm branch, oneDNN its
convolution, and the thread count splits their sums. The mode pins all four:
- ATen, MKL, oneDNN and numpy's OpenBLAS to their AVX2 code (PINS), through environment
  variables each reads once, when it is first called or loaded. So they must be there before: a
  script that finds them missing starts itself again with them (restart_pinned), before it
  computes anything;
- the convolutions to ATen's own (im2col and MKL's gemm) instead of oneDNN's;
- PORTABLE_THREADS threads, whatever --threads asks.
It costs speed: 1.54x and 1.66x the training time of 5 quick-grid epochs on a 2-core Intel Xeon
(code/bench/bench_portable.py), so no preset uses it by default: their runs are bit-identical per
machine only."""
from __future__ import annotations

import os
import signal
import sys

PORTABLE_THREADS = 2   # the cores of the machines the quick preset is sized for
PINS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2",
        # numpy's OpenBLAS (the evaluation's reference SVD): its AVX2 kernels, its threads
        "OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_NUM_THREADS": str(PORTABLE_THREADS)}
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)   # train.py's (stopping.StopOnSignal)
PENDING_SIGNALS = "AL2_PENDING_STOP_SIGNALS"     # from a script to its restarted self


def pinned() -> bool:
    """Whether this process started with every pin in its environment."""
    return all(os.environ.get(name) == value for name, value in PINS.items())


def restart_pinned(argv: list[str], pending: list[str] | None = None) -> None:
    """Start this script again in this process (os.execve) with PINS in its environment, unless
    it has them already. A script that catches the stop signals (train.py) passes those already
    received, `pending`, by name: they go to the new process in PENDING_SIGNALS (not as
    signals: torch's threads would take a re-sent one and exec would drop it), and the stop
    signals stay blocked through exec until the new process has set its handlers and unblocks
    them (train.py's first lines). Without `pending` (evaluate.py) they keep their default
    action throughout."""
    if pinned():
        return
    carried = {}
    if pending is not None:
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        carried = {PENDING_SIGNALS: ",".join(pending)}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *argv], {**os.environ, **PINS, **carried})


def apply(threads: int | None = None) -> None:
    """Pin this process's convolutions and threads (config.json records them: recorded). Raises
    GridError when the environment's pins are missing (torch has started without them:
    restart_pinned, or set them before Python starts)."""
    import torch
    from .config import GridError
    if not pinned():
        missing = " ".join(f"{k}={v}" for k, v in PINS.items() if os.environ.get(k) != v)
        raise GridError(f"the portable CPU mode needs {missing} in the environment before torch "
                        f"starts (train.py and evaluate.py set them themselves)")
    if threads is not None and threads != PORTABLE_THREADS:
        print(f"note: the portable CPU mode computes with {PORTABLE_THREADS} threads, not the "
              f"{threads} asked for (another count rounds differently)", file=sys.stderr)
    torch.backends.mkldnn.enabled = False
    torch.set_num_threads(PORTABLE_THREADS)


def recorded() -> dict:
    """The switches that decide a CPU run's bits, as they are in this process (config.json)."""
    import torch
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "mkldnn": torch.backends.mkldnn.enabled,
            **{name.lower(): os.environ.get(name) for name in PINS}}
