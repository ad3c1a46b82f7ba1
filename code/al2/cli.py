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
