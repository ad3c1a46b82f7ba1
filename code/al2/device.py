"""Where a grid runs and in which number format: the device choice, TF32, the environment
recorded in config.json."""
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


def environment(device: torch.device) -> dict:
    """Versions, platform, device and the TF32 switches, for config.json."""
    import numpy
    env = {"python": platform.python_version(), "torch": torch.__version__,
           "numpy": numpy.__version__, "device": str(device), "platform": platform.platform(),
           "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
           "tf32_cudnn": torch.backends.cudnn.allow_tf32}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env
