"""argparse types shared by the scripts in code/ (train.py, evaluate.py): parsing only, no
settings of their own."""
from __future__ import annotations

import argparse


def int_list(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]."""
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def noise_levels(text: str) -> float | list[float]:
    """'75' -> 75.0; '25,50,75' -> [25.0, 50.0, 75.0] (a noise sweep)."""
    try:
        levels = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or comma-separated numbers "
                                         f"(percent), got {text!r}") from None
    if not levels:
        raise argparse.ArgumentTypeError("no noise level given")
    return levels[0] if len(levels) == 1 else levels


def str_list(text: str) -> list[str]:
    """'bare, bn' -> ['bare', 'bn']."""
    return [t.strip() for t in text.split(",") if t.strip()]


def baseline_seeds(text: str) -> tuple[str, list[int]] | None:
    """'bare=1,2,3' -> ('bare', [1, 2, 3]); 'none' -> None (no extra instances)."""
    if text.strip() == "none":
        return None
    name, sep, seeds = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected BASELINE=SEED,SEED,... or none, got {text!r}")
    return name.strip(), int_list(seeds)


def shard_spec(text: str) -> tuple[int, int]:
    """'1/4' -> (1, 4): shard K of N, 0 <= K < N."""
    k, sep, n = text.partition("/")
    try:
        k, n = int(k), int(n)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N (e.g. 0/4), got {text!r}") from None
    if not sep or n < 1 or not 0 <= k < n:
        raise argparse.ArgumentTypeError(f"--shard K/N needs N >= 1 and 0 <= K < N, got {text!r}")
    return k, n


def optimizer_name(value: str) -> str:
    """--optimizer's value; "auto" (older commands' default) is torch, what it always meant."""
    return "torch" if value == "auto" else value
