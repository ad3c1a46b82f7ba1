"""Deprecated module path (al2.moved): its names are in the new modules below."""
from .training.shards import *  # noqa: F401, F403
from .training.lock import *  # noqa: F401, F403
from .moved import deprecated

deprecated(__name__)
