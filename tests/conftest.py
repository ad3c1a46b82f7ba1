"""Shared fixtures: the real MNIST files (provisioned once into data/ if missing)."""
import pytest
import torch

import al2


@pytest.fixture(scope="session")
def mnist():
    """(train_images, train_labels, test_images, test_labels) from the repository's data/."""
    return al2.load_mnist()


@pytest.fixture(autouse=True)
def _threads():
    # tests run on small tensors; keep torch's thread pool as it is but make results repeatable
    torch.use_deterministic_algorithms(False)
    yield
