"""Training a grid of runs at once (paper Sec. 4, Table 1): its settings (config), MNIST and the
label noise (data), the network and its stacked form (model), what each run of a stack does
(plan), its randomness (rng), the optimiser (sgd), the stack's step and epoch (stack), the epoch
loop (grid), the grid's folder (folder), what each epoch writes (records), shards and stops
(shards, lock, stopping), inference for all runs (inference), the device (device).

`from al2.training import train_grid`, as when this was one module, still works."""
import importlib

OLD_NAMES = {"train_grid": "grid", "TrainOptions": "grid", "Part": "grid", "start_part": "grid",
             "epoch_rows": "records", "progress_summary": "records"}


def __getattr__(name: str):
    """The names of the former module al2.training, from their homes (PEP 562)."""
    if name in OLD_NAMES:
        return getattr(importlib.import_module(f".{OLD_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
