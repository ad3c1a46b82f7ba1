"""Checkpoints, metrics files and run configs, all written atomically (temporary name, rename)."""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

import torch

from .model import LeNet


def atomic_write(path: Path, write) -> None:
    """Call write(file) on a temporary file beside `path` (binary), then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_torch(obj, path: Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def save_json(obj, path: Path) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


def save_csv(rows: list[dict], path: Path, columns: list[str] | None = None) -> None:
    """rows -> CSV with a header (columns default to the first row's keys)."""
    columns = columns or (list(rows[0]) if rows else [])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, lambda f: f.write(buf.getvalue().encode()))


def load_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read; the message names the file."""


def slim_checkpoint(ckpt: dict) -> dict:
    """The checkpoint with the trunk alone (conv1, conv2, BN): what the similarity analysis reads,
    a sixteenth of the size. code/carry.py sends these home from a GPU lease."""
    return {**ckpt, "model": {k: v for k, v in ckpt["model"].items() if k.startswith("trunk.")},
            "trunk_only": True}


def load_checkpoint(path, map_location="cpu", trunk_only_ok: bool = False):
    """A run checkpoint -> (al2.LeNet in eval mode, config dict). Keys are checked strictly; a
    trunk-only checkpoint (slim_checkpoint) is accepted only with trunk_only_ok, and its model's
    head is then left as initialised: use its trunk alone."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
        config = ckpt["config"]
        model = LeNet(batch_norm=config["batch_norm"], dropout=config["dropout"])
        if ckpt.get("trunk_only"):
            if not trunk_only_ok:
                raise CheckpointError(f"checkpoint {path} holds the trunk alone (sent home from "
                                      f"a GPU lease); this analysis needs the whole network")
            missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
            if unexpected or any(k.startswith("trunk.") for k in missing):
                raise KeyError("trunk keys")
        else:
            model.load_state_dict(ckpt["model"], strict=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} is damaged or not an AL2 run checkpoint "
                              f"({type(e).__name__}); retrain or resume that run") from None
    return model.eval(), config
