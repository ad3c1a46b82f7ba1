"""Shared fixtures and helpers: the real MNIST files (provisioned once into data/ if missing),
evaluate.py as a user runs it, CSV reading."""
import csv
import subprocess
import sys

import pytest

import al2
from al2.paths import REPO_ROOT


@pytest.fixture(scope="session")
def mnist():
    """(train_images, train_labels, test_images, test_labels) from the repository's data/."""
    return al2.load_mnist()


def evaluate(*args):
    """code/evaluate.py as a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, str(REPO_ROOT / "code" / "evaluate.py"), *args],
                          capture_output=True, text=True, timeout=600)


def read(path):
    """A CSV file as a list of dicts (strings)."""
    with open(path) as f:
        return list(csv.DictReader(f))
