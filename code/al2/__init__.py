"""AL2: Progressive Activation Loss (El Helou, Duembgen, Suesstrunk, ICASSP 2020), reproduced.

Modules, one idea each: data (MNIST, label corruption), model (LeNet trunk + head, the stacked
runs), schedule (get_map_weights, the AL2 loss), training (the grid trainer), checkpoints (files).
"""
from .checkpoints import CheckpointError, load_checkpoint
from .data import DataError, corrupt_labels, load_mnist, normalize
from .model import LeNet, StackedLeNet, lenet_from_seed
from .schedule import activation_loss, al2_loss, get_map_weights
from .training import BASELINES, GridConfig, GridError, NonFiniteLoss, train_grid

__all__ = ["BASELINES", "CheckpointError", "DataError", "GridConfig", "GridError", "LeNet",
           "NonFiniteLoss", "StackedLeNet", "activation_loss", "al2_loss", "corrupt_labels",
           "get_map_weights", "lenet_from_seed", "load_checkpoint", "load_mnist", "normalize",
           "train_grid"]
