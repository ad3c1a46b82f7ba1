"""Deprecated module path (al2.moved): its names are in the new modules below."""
from .training.config import *  # noqa: F401, F403
from .training.presets import *  # noqa: F401, F403
from .moved import deprecated

deprecated(__name__)
