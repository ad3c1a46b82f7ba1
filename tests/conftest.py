"""Shared fixtures: the real MNIST files (provisioned once into data/ if missing)."""
import pytest

import al2


@pytest.fixture(scope="session")
def mnist():
    """(train_images, train_labels, test_images, test_labels) from the repository's data/."""
    return al2.load_mnist()
