"""AL2: Progressive Activation Loss (El Helou, Duembgen, Suesstrunk, ICASSP 2020), reproduced.

Modules, one idea each, in the order a reader meets them:
  loss        Eq. 1: L = L_c + w_e * L_r, L_r = mean(a**2)     (al2_loss, activation_loss)
  schedule    the progressive weight w_e                        (get_map_weights, AL2Schedule)
  regularizer AL2 on any PyTorch network: a hook on its trunk   (AL2, trunk_outputs)
  model       smallNet: LeNet (trunk + head), StackedLeNet (R runs at once)
  data        MNIST (byte-exact), label corruption, the grid's data on the device
  config      GridConfig, RunSpec, PRESETS: a grid's settings (replicates, validation images)
  remedies    beyond the paper: label smoothing, GCE, SCE, mixup (losses for any loop)
  plan        what each run of a stack does: input groups, labels, data terms, weight decay
  trainer     Trainer: the stacked runs, their momentum, the step (eager or a CUDA graph),
              one epoch, the test pass
  inference   test metrics and trunk outputs of all runs
  training    train_grid: the epoch loop and its files
  outputs     run folders, metrics, checkpoints, resume
  shards      a grid split over processes (--shard K/N), locks, completion files
  device      device choice, TF32, cuDNN's algorithm search, environment
  files       atomic writes, checked reads (FileError)
  checkpoints load_checkpoint, load_trunk
  similarity  Sec. 5.1: representations as datapoints, the authors' statistics, a grid's pairs
  ablation    Sec. 5.2: cumulative ablation for any head, a grid's ablation
  replicates  how sure a result is: early stopping, paired AL2 - plain t-intervals
  comparison  the remedies side by side, without and with AL2
  runs, report, evaluation, plotting   what code/evaluate.py uses
  errors, paths, cli   UserError; repository paths; argparse types for the scripts

`import al2` loads the training side; the analyses (al2.similarity, al2.ablation, al2.replicates,
al2.comparison: they need svcca, scipy and matplotlib) load on first use of their name.
"""
import importlib

from .checkpoints import CheckpointError, load_checkpoint, load_trunk
from .config import BASELINES, PRESETS, GridConfig, GridError, RunSpec
from .data import DataError, corrupt_labels, load_mnist, normalize
from .errors import UserError
from .loss import activation_loss, al2_loss
from .model import LeNet, StackedLeNet, lenet_from_seed
from . import remedies
from .outputs import NonFiniteLoss
from .regularizer import AL2, trunk_outputs
from .schedule import AL2Schedule, get_map_weights
from .trainer import Trainer
from .training import train_grid

__all__ = ["AL2", "AL2Schedule", "BASELINES", "CheckpointError", "DataError", "GridConfig",
           "GridError", "LeNet",
           "NonFiniteLoss", "PRESETS", "RunSpec", "StackedLeNet", "Trainer", "UserError",
           "activation_loss", "al2_loss", "corrupt_labels", "get_map_weights",
           "lenet_from_seed", "load_checkpoint", "load_mnist", "load_trunk", "normalize",
           "remedies", "train_grid", "trunk_outputs"]

ANALYSES = ("similarity", "ablation", "replicates", "comparison", "evaluation", "plotting",
            "report", "runs")


def __getattr__(name: str):
    """al2.similarity, al2.ablation, ...: imported when first named (PEP 562)."""
    if name in ANALYSES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'al2' has no attribute {name!r}")
