"""AL2: Progressive Activation Loss (El Helou, Duembgen, Suesstrunk, ICASSP 2020), reproduced.

Four folders, in the order a reader meets them:
  method/    the method beside the paper
             loss         Eq. 1: L = L_c + w_e * L_r, L_r = mean(a**2) (al2_loss)
             schedule     the progressive weight w_e (get_map_weights, AL2Schedule)
             regularizer  AL2 on any PyTorch network: a hook on its trunk (AL2)
             remedies     beyond the paper: label smoothing, GCE, SCE, mixup (losses for any loop)
  training/  training a grid of runs at once
             config       GridConfig, RunSpec, PRESETS: a grid's settings
             data         MNIST (byte-exact), label corruption, the grid's data on the device
             model        smallNet: LeNet (trunk + head), StackedLeNet (R runs at once) and
                          ModelPlan (what it knows of each run)
             plan         StackPlan, the one per-run plan: input groups, labels, data terms,
                          AL2 weights, weight decay, the model's plan
             rng          each run's batch order and dropout streams, from its own seeds;
                          what an epoch draws (EpochDraws)
             sgd          the optimiser: torch.optim.SGD with each run's weight decay
             stack        Trainer: the stacked runs, the plain step, one epoch, the test pass
             grid         train_grid: the epoch loop (Part: one stack's epochs and stops)
             folder       GridFolder: a grid's folder, the one owner of its files
             records      what each epoch writes: metric rows, progress, checkpoints, resume
             shards, lock, stopping, inference   --shard K/N and the folder's split; its
                          locks; stopping on a signal; all runs' outputs
             device       device choice, threads, TF32, cuDNN's algorithm search, environment
  speed/     the variants around the plain step, installed on a trainer from outside
             (variants): graph (a CUDA graph), flat_sgd (one buffer), trunks (other kernels
             for the stacked trunk)
  analyses/  what code/evaluate.py computes from a folder of runs
             runs, checkpoints   the runs and their checkpoints read back (load_checkpoint)
             report       Table 1 beside the paper's
             similarity   Sec. 5.1: the authors' statistics between representations
             ablation     Sec. 5.2: cumulative ablation for any head
             replicates   how sure a result is: early stopping, paired t-intervals
             probe        beyond the paper: a linear probe of each trunk on clean labels
             comparison   the remedies side by side; plotting; evaluation (all of it: the
                          Evaluation that owns an output folder)
  errors, files, paths, cli   UserError; atomic writes, checked reads; paths; argparse types
  moved       the deprecated module paths of before the sub-packages (import al2.schedule, ...)

`import al2` loads the method, the training side and the checkpoint readers; the other analyses
(al2.similarity, al2.ablation, al2.replicates, al2.comparison, ...: they need svcca, scipy and
matplotlib) load on first use of their name.
"""
import importlib

from .analyses.checkpoints import CheckpointError, load_checkpoint, load_trunk
from .errors import UserError
from .method import remedies
from .method.loss import activation_loss, al2_loss
from .method.regularizer import AL2, trunk_outputs
from .method.schedule import AL2Schedule, get_map_weights
from .training.config import BASELINES, GridConfig, GridError, RunSpec
from .training.presets import PRESETS
from .training.data import DataError, corrupt_labels, load_mnist, normalize
from .training.grid import TrainOptions, train_grid
from .training.model import LeNet, StackedLeNet, lenet_from_seed
from .training.records import NonFiniteLoss
from .training.stack import Trainer

__all__ = ["AL2", "AL2Schedule", "BASELINES", "CheckpointError", "DataError", "GridConfig",
           "GridError", "LeNet",
           "NonFiniteLoss", "PRESETS", "RunSpec", "StackedLeNet", "TrainOptions", "Trainer",
           "UserError",
           "activation_loss", "al2_loss", "corrupt_labels", "get_map_weights",
           "lenet_from_seed", "load_checkpoint", "load_mnist", "load_trunk", "normalize",
           "remedies", "train_grid", "trunk_outputs"]

ANALYSES = ("similarity", "ablation", "replicates", "comparison", "evaluation", "plotting",
            "report", "runs", "probe")


def __getattr__(name: str):
    """al2.similarity, al2.ablation, ...: imported when first named (PEP 562)."""
    if name in ANALYSES:
        return importlib.import_module(f".analyses.{name}", __name__)
    raise AttributeError(f"module 'al2' has no attribute {name!r}")
