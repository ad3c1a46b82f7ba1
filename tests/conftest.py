"""Shared fixtures and helpers: the real MNIST files (provisioned once into data/ if missing),
the scripts of code/ as a user runs them (in this process, or as a subprocess of this
interpreter), CSV reading."""
import contextlib
import csv
import importlib.util
import io
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

import al2
from al2.paths import REPO_ROOT


@pytest.fixture
def float64():
    """Default dtype float64 for the test, float32 again after."""
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


@pytest.fixture(scope="session")
def mnist():
    """(train_images, train_labels, test_images, test_labels) from the repository's data/."""
    return al2.load_mnist()


def script(path):
    """A script of the repository as a module (scripts import the library, not each other)."""
    path = REPO_ROOT / path
    if str(path.parent) not in sys.path:  # as Python runs a script: its folder first
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPTS = {}


def script_path(name):
    """code/<name>.py, code/bench/<name>.py or code/studies/<name>.py: where the script is."""
    return next(f"{room}/{name}.py" for room in ("code", "code/bench", "code/studies", "scripts")
                if (REPO_ROOT / room / f"{name}.py").exists())


def main(name, *args):
    """A script's main(argv) in this process (name: its file's stem, script_path), as the
    command line would call it: (returncode, stdout, stderr), SystemExit's code included."""
    module = SCRIPTS.setdefault(name, script(script_path(name)))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = module.main(list(args))
        except SystemExit as e:
            code = e.code
    return SimpleNamespace(returncode=code or 0, stdout=out.getvalue(), stderr=err.getvalue())


def evaluate(*args):
    """code/evaluate.py with these arguments, in this process."""
    return main("evaluate", *args)


def evaluate_subprocess(*args):
    """code/evaluate.py as a subprocess of this interpreter, exactly as a user runs it."""
    return subprocess.run([sys.executable, str(REPO_ROOT / "code" / "evaluate.py"), *args],
                          capture_output=True, text=True, timeout=600)


def read(path):
    """A CSV file as a list of dicts (strings)."""
    with open(path) as f:
        return list(csv.DictReader(f))
