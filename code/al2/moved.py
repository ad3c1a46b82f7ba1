"""The library's module paths from before its sub-packages (method, training, speed, analyses;
2026-12-04), deprecated, still importable until al2 0.3: `import al2.similarity` or
`from al2.schedule import get_map_weights` gives the very objects of their new homes, with a
DeprecationWarning naming the new path.

Each old path is a file of its own (al2/similarity.py, ...), as Python users know them: it
star-imports its new home(s), so that editors, type checkers and grep resolve its names, then
calls deprecated(), which warns and, for a module that moved whole (MOVED), puts the new module
itself under the old name (one module object: `importlib.reload` and identity checks behave).
A module whose names went to several new ones (SPLIT) stays the thin module, holding them.
`al2.similarity`, `al2.ablation`, ... as attributes of `import al2` are not deprecated (README).
"""
from __future__ import annotations

import importlib
import sys
import warnings

REMOVAL = "al2 0.3"
MOVED = {  # old module -> new module, under al2
    "ablation": "analyses.ablation", "checkpoints": "analyses.checkpoints",
    "comparison": "analyses.comparison", "evaluation": "analyses.evaluation",
    "plotting": "analyses.plotting", "replicates": "analyses.replicates",
    "report": "analyses.report", "runs": "analyses.runs", "similarity": "analyses.similarity",
    "loss": "method.loss", "regularizer": "method.regularizer", "remedies": "method.remedies",
    "schedule": "method.schedule",
    "data": "training.data", "device": "training.device",
    "inference": "training.inference", "model": "training.model", "plan": "training.plan",
    "stopping": "training.stopping",
}
SPLIT = {  # old module -> the new modules that hold its names, under al2
    "config": ("training.config", "training.presets"),
    "outputs": ("training.records", "training.folder", "analyses.runs"),
    "trainer": ("training.stack", "training.rng", "speed.flat_sgd", "speed.graph"),
    "shards": ("training.shards", "training.lock"),
}


def deprecated(name: str) -> None:
    """Called by the old module `name` ("al2.<old>") as it is imported: a DeprecationWarning
    attributed to the import statement that named it, then (MOVED) the new module in its
    place."""
    old = name[len("al2."):]
    homes = (MOVED[old],) if old in MOVED else SPLIT[old]
    level, frame = 2, sys._getframe(1)
    while frame.f_back is not None and (frame.f_globals.get("__name__") == name or
                                        frame.f_code.co_filename.startswith("<frozen")):
        frame, level = frame.f_back, level + 1      # past the old module and importlib
    warnings.warn(f"the module path {name} is deprecated and goes in {REMOVAL}: import "
                  f"{' or '.join('al2.' + h for h in homes)}", DeprecationWarning,
                  stacklevel=level)
    if old in MOVED:
        sys.modules[name] = importlib.import_module(f"al2.{MOVED[old]}")
