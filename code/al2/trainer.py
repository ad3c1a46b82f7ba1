"""Deprecated module path (al2.moved): its names are in the new modules below."""
from .training.stack import *  # noqa: F401, F403
from .training.rng import *  # noqa: F401, F403
from .speed.flat_sgd import *  # noqa: F401, F403
from .speed.graph import *  # noqa: F401, F403
from .moved import deprecated

deprecated(__name__)
