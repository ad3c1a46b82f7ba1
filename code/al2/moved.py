"""The library's module paths from before its sub-packages (method, training, speed, analyses;
2026-12-04), still importable: a user's `import al2.similarity` or `from al2.schedule import
get_map_weights` gives the very objects of their new homes.

A module that moved whole (MOVED) is its new module under the old name as well; a module whose
names went to several new ones (SPLIT) is a module that finds each name in its new home. Names
that are gone (functions that became methods of training.folder.GridFolder) are not kept.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types

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


def split_module(name: str, homes: tuple[str, ...]) -> types.ModuleType:
    """A module `name` whose attributes are looked up in `homes`, in order."""
    module = types.ModuleType(name, f"Moved: its names are in {', '.join(homes)}.")

    def __getattr__(attr: str):
        for home in homes:
            found = getattr(importlib.import_module(f"al2.{home}"), attr, module)
            if found is not module:
                return found
        raise AttributeError(f"module {name!r} has no attribute {attr!r} (moved to "
                             f"{', '.join('al2.' + h for h in homes)})")
    module.__getattr__ = __getattr__
    return module


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds al2.<old> for the old paths above (after every real module: it is asked last)."""

    def find_spec(self, fullname, path=None, target=None):
        old = fullname[len("al2."):] if fullname.startswith("al2.") else None
        if old in MOVED or old in SPLIT:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        old = spec.name[len("al2."):]
        if old in MOVED:
            return importlib.import_module(f"al2.{MOVED[old]}")
        return split_module(spec.name, SPLIT[old])

    def exec_module(self, module) -> None:
        """Nothing to run: the module is its new home, or finds its names there."""


def install() -> None:
    if not any(isinstance(f, MovedModules) for f in sys.meta_path):
        sys.meta_path.append(MovedModules())
