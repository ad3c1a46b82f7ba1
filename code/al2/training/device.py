"""Where a grid runs and in which number format: the device choice, the CPU threads, TF32,
cuDNN's algorithm search, the environment recorded in config.json."""
from __future__ import annotations

import os
import platform

import torch

from . import portable
from .config import GridError


def select_device(device: str) -> torch.device:
    """'auto' (CUDA when available), 'cpu' or 'cuda'; a CUDA request without a GPU is a
    user error (GridError, one line)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise GridError("--device cuda was asked for but no CUDA GPU is available; "
                        "use --device cpu or auto")
    if device not in ("cpu", "cuda"):
        raise GridError(f"unknown device {device!r}; choose auto, cpu or cuda")
    return torch.device(device)


def set_threads(threads: int | None = None) -> int:
    """The CPU threads this process computes with: `threads` (train.py --threads), else Slurm's
    CPUs per task (SLURM_CPUS_PER_TASK) inside a Slurm job, else torch's default, every core it
    sees. Processes sharing a machine should divide its cores: two quick-grid shards on 2 cores
    side by side took 1.7x the time of the two one after another with every core each, 0.86x
    with one thread each (code/bench/bench_threads.py; README, "Scaling out"). The count is part
    of what makes a CPU run bit-identical: another count splits the kernels' sums differently
    (measured: those shards with 1 thread differ from the same with 2 in every metric), so
    config.json records it and a resume should keep it. Returns the number in use."""
    if threads is None:
        slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
        threads = int(slurm) if slurm.isdigit() and int(slurm) > 0 else None
    if threads is not None:
        if threads < 1:
            raise GridError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def set_tf32(tf32: bool) -> None:
    """TF32 for CUDA matmuls and cuDNN convolutions (10-bit mantissa inputs, fp32 accumulation).
    Both switches are set explicitly: PyTorch's own default lets cuDNN convolutions use TF32,
    and the paper's fp32 needs both off. No effect on CPU arithmetic."""
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def set_cudnn_benchmark(on: bool) -> None:
    """cuDNN times its convolution algorithms on the first call of each shape and keeps the
    fastest. It may pick Winograd or FFT algorithms, whose fp32 rounding differs from the default
    choice's; off by default, a named option (train.py --cudnn-benchmark). No effect on the CPU."""
    torch.backends.cudnn.benchmark = on


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def environment(device: torch.device) -> dict:
    """Versions, platform, device and the switches that decide the bits, for config.json."""
    import numpy
    env = {"python": platform.python_version(), "torch": torch.__version__,
           "numpy": numpy.__version__, "device": str(device), "platform": platform.platform(),
           "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
           "tf32_cudnn": torch.backends.cudnn.allow_tf32,
           "cudnn_benchmark": torch.backends.cudnn.benchmark,
           "threads": torch.get_num_threads(), **portable.recorded()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env
