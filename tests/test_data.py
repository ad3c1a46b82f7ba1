"""MNIST provisioning (byte-exact) and the paper's label corruption."""
import contextlib
import hashlib
import io
import shutil

import numpy as np
import pytest
import torch
from scipy import stats

import al2
from al2.training.data import MNIST_FILES, raw_dir


def test_provision_from_scratch_is_byte_exact(tmp_path):
    """A fresh root is filled from the package index and every file has its published MD5;
    also when sys.stderr is no file (a script's main() called with its output captured)."""
    with contextlib.redirect_stderr(io.StringIO()) as err:
        al2.load_mnist(tmp_path)
    assert "fetching MNIST" in err.getvalue()
    for name, (md5, size) in MNIST_FILES.items():
        path = raw_dir(tmp_path) / name
        assert path.stat().st_size == size
        assert hashlib.md5(path.read_bytes()).hexdigest() == md5
    assert not list(raw_dir(tmp_path).glob(".*tmp")), "temporary files left behind"


def test_shapes_dtypes_and_first_labels(mnist):
    train_x, train_y, test_x, test_y = mnist
    assert (train_x.shape, train_x.dtype) == ((60000, 28, 28), torch.uint8)
    assert (train_y.shape, train_y.dtype) == ((60000,), torch.int64)
    assert (test_x.shape, test_x.dtype) == ((10000, 28, 28), torch.uint8)
    assert (test_y.shape, test_y.dtype) == ((10000,), torch.int64)
    assert train_y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert test_y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_pixel_statistics_match_the_normalisation_constants(mnist):
    pixels = mnist[0].double() / 255
    assert round(pixels.mean().item(), 4) == 0.1307
    assert round(pixels.std().item(), 4) == 0.3081


def test_torchvision_reads_our_files():
    """The layout is torchvision's: its MNIST class reads the same images and labels."""
    import torchvision
    from al2.paths import DATA_DIR
    _, _, test_x, test_y = al2.load_mnist()  # first: provisions data/ on a fresh checkout
    ds = torchvision.datasets.MNIST(str(DATA_DIR), train=False, download=False)
    assert torch.equal(ds.data, test_x) and torch.equal(ds.targets, test_y)


def test_damaged_file_is_detected(tmp_path, mnist):
    from al2.paths import DATA_DIR
    shutil.copytree(raw_dir(DATA_DIR), raw_dir(tmp_path))
    path = raw_dir(tmp_path) / "t10k-labels-idx1-ubyte"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(al2.DataError, match="t10k-labels-idx1-ubyte.*damaged"):
        al2.load_mnist(tmp_path)


def test_missing_files_without_download_say_so(tmp_path):
    with pytest.raises(al2.DataError, match="missing"):
        al2.load_mnist(tmp_path, download=False)


@pytest.mark.parametrize("percent", [15, 75])
def test_corruption_rate_and_never_the_true_class(mnist, percent):
    labels = mnist[1]
    noisy, mask = al2.corrupt_labels(labels, percent, seed=0)
    assert abs(mask.double().mean().item() * 100 - percent) < 1.0
    assert torch.equal(mask, noisy != labels), "a corrupted label equals its original"
    assert torch.equal(noisy[~mask], labels[~mask])


def test_replacement_classes_are_uniform_over_the_other_nine(mnist):
    labels = mnist[1]
    noisy, mask = al2.corrupt_labels(labels, 75, seed=1)
    offsets = ((noisy[mask] - labels[mask]) % 10).numpy()  # 1..9, uniform if replacement is
    counts = np.bincount(offsets, minlength=10)[1:]
    assert counts.sum() == mask.sum().item()
    assert stats.chisquare(counts).pvalue > 1e-3
    # per true class too: each of the 9 other classes is equally likely
    for c in range(10):
        sel = labels[mask] == c
        repl = np.bincount(noisy[mask][sel].numpy(), minlength=10)
        assert repl[c] == 0
        assert stats.chisquare(np.delete(repl, c)).pvalue > 1e-4


def test_corruption_edges_determinism_and_purity(mnist):
    labels = mnist[1]
    before = labels.clone()
    same, mask0 = al2.corrupt_labels(labels, 0, seed=3)
    assert torch.equal(same, labels) and not mask0.any()
    allc, mask100 = al2.corrupt_labels(labels, 100, seed=3)
    assert mask100.all() and (allc != labels).all()
    a, _ = al2.corrupt_labels(labels, 75, seed=7)
    torch.manual_seed(123)  # the global RNG state must not matter
    b, _ = al2.corrupt_labels(labels, 75, seed=7)
    c, _ = al2.corrupt_labels(labels, 75, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(labels, before), "input modified"
    for bad in (-1, 100.5):
        with pytest.raises(ValueError):
            al2.corrupt_labels(labels, bad, seed=0)
