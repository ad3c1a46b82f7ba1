"""Deprecated module path (al2.moved): al2.method.regularizer."""
from .method.regularizer import *  # noqa: F401, F403  (for editors and type checkers)
from .moved import deprecated

deprecated(__name__)
