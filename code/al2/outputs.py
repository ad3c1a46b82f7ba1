"""Deprecated module path (al2.moved): its names are in the new modules below."""
from .training.records import *  # noqa: F401, F403
from .training.folder import *  # noqa: F401, F403
from .analyses.runs import *  # noqa: F401, F403
from .moved import deprecated

deprecated(__name__)
