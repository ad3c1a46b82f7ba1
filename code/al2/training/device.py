"""Where a grid runs and in which number format: the device choice, TF32, cuDNN's algorithm
search, the environment recorded in config.json."""
from __future__ import annotations

import platform

import torch

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
    """Versions, platform, device and the number-format switches, for config.json."""
    import numpy
    env = {"python": platform.python_version(), "torch": torch.__version__,
           "numpy": numpy.__version__, "device": str(device), "platform": platform.platform(),
           "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
           "tf32_cudnn": torch.backends.cudnn.allow_tf32,
           "cudnn_benchmark": torch.backends.cudnn.benchmark}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env
