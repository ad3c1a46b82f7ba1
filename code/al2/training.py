"""Training a whole grid of runs at once (paper Sec. 4, Table 1).

A grid is baselines x {without, with AL2} x seeds: Table 1 trains every baseline over the same
`seeds`; Fig. 1 (Sec. 5.1) compares independently initialised instances, so a baseline may have
`extra_seeds` (code/train.py's paper preset: Bare x 4 instances). Every run sees the same corrupted labels and
the same minibatches (a paired comparison); its seed sets its initialisation. All runs live in
one StackedLeNet: one forward, one backward and one SGD step per minibatch for the whole grid.
The data set sits on the device, normalised once; batches are index slices of an on-device
permutation; metrics accumulate on the device and are read once per epoch.
"""
from __future__ import annotations

import json
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from . import checkpoints as io
from .data import corrupt_labels, load_mnist, normalize
from .model import BN_INITS, StackedLeNet, lenet_from_seed
from .schedule import activation_loss, get_map_weights

BASELINES = ("bare", "bn", "do", "wd")
METRIC_COLUMNS = ["epoch", "test_acc", "test_loss", "train_Lc", "train_Lr", "train_acc_noisy",
                  "train_acc_clean", "al2_weight", "wall_time_s"]


@dataclass
class GridConfig:
    """Every setting of a grid. Defaults are the paper's Table 1 setting (Sec. 4)."""
    preset: str = "paper"
    baselines: list = field(default_factory=lambda: list(BASELINES))
    al2: str = "both"                 # off | on | both
    seeds: list = field(default_factory=lambda: [0])  # Table 1: every baseline, these seeds
    # baseline -> more seeds, trained beside Table 1's but not tabulated. Fig. 1 (Sec. 5.1)
    # compares 4 independently initialised Bare networks without and 4 with AL2: the paper
    # preset of code/train.py sets {"bare": [1, 2, 3]}.
    extra_seeds: dict = field(default_factory=dict)
    epochs: int = 700                 # Table 1 reports epochs 100..700
    percent_corrupt: float = 75.0     # Table 1: 75% symmetric label noise
    corruption_seed: int = 0          # which labels are corrupted, shared by the grid
    order_seed: int = 0               # minibatch order, shared by the grid
    dropout_seed: int = 0             # dropout masks
    lr: float = 0.001                 # SGD learning rate
    momentum: float = 0.5
    batch_size: int = 64              # last partial batch kept
    weight_decay: float = 5e-3        # WD baseline (authors' help text: 5e-3 or 5e-4)
    dropout: float = 0.5              # DO baseline (authors' scripts)
    map_start: float = 0.01           # get_map_weights(start, threshold, fac1, fac2)
    map_threshold: float = 5.0
    map_fac1: float = 1.1
    map_fac2: float = 1.01
    subset: int | None = None         # first N training images (None: all 60,000)
    test_subset: int | None = None    # first N test images for the per-epoch test metrics
    checkpoint_every: int = 10        # checkpoints at epoch 0, every K epochs, and the last
    activation_images: int = 1000     # first N test images whose trunk outputs are saved
    bn_init: str = "uniform"          # BN gamma ~ U(0, 1) as in the authors' PyTorch 0.4/1.1
    tf32: bool = False                # CUDA: strict fp32 (the authors' 2019 GPUs had no TF32)

    def validate(self) -> None:
        """Raise ValueError with a one-line message for settings no run can use."""
        unknown = [b for b in self.baselines if b not in BASELINES]
        checks = [
            (not unknown, f"unknown baseline(s) {unknown}; choose from {list(BASELINES)}"),
            (len(self.baselines) > 0, "no baselines given"),
            (len(set(self.baselines)) == len(self.baselines), "a baseline is repeated"),
            (self.al2 in ("off", "on", "both"), f"al2 must be off, on or both, not {self.al2!r}"),
            (len(self.seeds) > 0 and len(set(self.seeds)) == len(self.seeds),
             "seeds must be a non-empty list without repeats"),
            (all(b in self.baselines for b in self.extra_seeds),
             f"extra seeds for {sorted(set(self.extra_seeds) - set(self.baselines))}, "
             f"not among the baselines {self.baselines}"),
            (all(len(set(v)) == len(v) for v in self.extra_seeds.values()),
             "extra seeds of a baseline repeat a seed"),
            (self.bn_init in BN_INITS, f"bn init must be one of {list(BN_INITS)}"),
            (self.epochs >= 0, f"epochs must be >= 0, got {self.epochs}"),
            (0 <= self.percent_corrupt <= 100,
             f"percent corrupt must lie in 0..100, got {self.percent_corrupt}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (0 <= self.momentum < 1, f"momentum must lie in [0, 1), got {self.momentum}"),
            (self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
            (0 < self.dropout < 1, f"dropout must lie in (0, 1), got {self.dropout}"),
            (self.subset is None or 1 <= self.subset <= 60000, "subset must lie in 1..60000"),
            (self.test_subset is None or 1 <= self.test_subset <= 10000,
             "test subset must lie in 1..10000"),
            (self.checkpoint_every >= 1, "checkpoint interval must be >= 1"),
            (0 <= self.activation_images <= 10000, "activation images must lie in 0..10000"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def seeds_of(self, baseline: str) -> list[int]:
        """Table 1's seeds, then the baseline's extra instances (Fig. 1)."""
        return self.seeds + [s for s in self.extra_seeds.get(baseline, []) if s not in self.seeds]

    def runs(self) -> list["RunSpec"]:
        flags = {"off": [False], "on": [True], "both": [False, True]}[self.al2]
        return [RunSpec(b, a, s, self) for b in self.baselines for a in flags
                for s in self.seeds_of(b)]

    def checkpoint_epochs(self) -> list[int]:
        """Epoch 0 (the initialisation), 1 (the authors' `epoch_0` file is saved after the first
        epoch), every `checkpoint_every` epochs, and the last."""
        every = set(range(0, self.epochs + 1, self.checkpoint_every))
        return sorted(every | {min(1, self.epochs), self.epochs})


@dataclass
class RunSpec:
    baseline: str
    use_al2: bool
    seed: int
    grid: GridConfig

    @property
    def name(self) -> str:
        return f"{self.baseline}_{'al2' if self.use_al2 else 'plain'}_s{self.seed}"

    @property
    def batch_norm(self) -> bool:
        return self.baseline == "bn"

    @property
    def dropout(self) -> float:
        return self.grid.dropout if self.baseline == "do" else 0.0

    @property
    def weight_decay(self) -> float:
        return self.grid.weight_decay if self.baseline == "wd" else 0.0

    @property
    def bn_init(self) -> str | None:
        return self.grid.bn_init if self.batch_norm else None

    @property
    def in_table(self) -> bool:
        """Whether Table 1 averages this run (its seed is one of the grid's `seeds`)."""
        return self.seed in self.grid.seeds

    def config(self) -> dict:
        """What rebuilds this run: its own settings plus the whole grid's."""
        return {"run": self.name, "baseline": self.baseline, "al2": self.use_al2,
                "seed": self.seed, "batch_norm": self.batch_norm, "dropout": self.dropout,
                "bn_init": self.bn_init, "weight_decay": self.weight_decay,
                "in_table": self.in_table, "grid": asdict(self.grid)}


class GridError(RuntimeError):
    """A user-level problem with the output folder or the device; one-line message."""


class NonFiniteLoss(RuntimeError):
    """A run's loss became NaN or infinite; the message names the run and epoch."""


def select_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise GridError("--device cuda was asked for but no CUDA GPU is available; "
                        "use --device cpu or auto")
    if device not in ("cpu", "cuda"):
        raise GridError(f"unknown device {device!r}; choose auto, cpu or cuda")
    return torch.device(device)


def environment(device: torch.device) -> dict:
    import numpy
    env = {"python": platform.python_version(), "torch": torch.__version__,
           "numpy": numpy.__version__, "device": str(device), "platform": platform.platform(),
           "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
           "tf32_cudnn": torch.backends.cudnn.allow_tf32}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def set_tf32(tf32: bool) -> None:
    """TF32 for CUDA matmuls and cuDNN convolutions (10-bit mantissa inputs, fp32 accumulation).
    Both switches are set explicitly: PyTorch's own default lets cuDNN convolutions use TF32,
    and the paper's fp32 needs both off. No effect on CPU arithmetic."""
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


ORDER_STREAM, DROPOUT_STREAM = 0, 1


def epoch_generator(seed: int, epoch: int, stream: int, device: torch.device) -> torch.Generator:
    """A generator that depends only on (seed, epoch, stream): resuming at any epoch reproduces
    the batch order and dropout masks of an uninterrupted run without saving RNG states."""
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + epoch) * 2 + stream)


@dataclass
class GridData:
    """Everything a grid trains and evaluates on, resident on the device."""
    train_x: torch.Tensor        # (N, 1, 28, 28) float32, normalised
    train_noisy: torch.Tensor    # (N,) int64, the labels trained on
    train_clean: torch.Tensor    # (N,) int64
    test_x: torch.Tensor         # (M, 1, 28, 28)
    test_y: torch.Tensor         # (M,)
    noisy_full: torch.Tensor     # (60000,) noisy labels of the whole training set (CPU)
    mask_full: torch.Tensor      # (60000,) bool, which labels were corrupted (CPU)


def load_grid_data(grid: GridConfig, device: torch.device, root="data") -> GridData:
    train_x, train_y, test_x, test_y = load_mnist(root)
    # Corrupt all 60,000 labels with the grid's seed, then take the subset: a subset's labels are
    # the same whatever its size.
    noisy, mask = corrupt_labels(train_y, grid.percent_corrupt, grid.corruption_seed)
    n, m = grid.subset or len(train_y), grid.test_subset or len(test_y)
    return GridData(normalize(train_x[:n]).to(device), noisy[:n].to(device),
                    train_y[:n].to(device), normalize(test_x[:m]).to(device),
                    test_y[:m].to(device), noisy, mask)


def stacked_runs(runs: list[RunSpec], device: torch.device):
    """The grid's StackedLeNet in training mode (each run initialised from its seed), its
    parameters, zeroed momentum buffers and the per-run weight decay (R,)."""
    model = StackedLeNet([lenet_from_seed(r.seed, r.batch_norm, r.dropout, r.grid.bn_init)
                          for r in runs])
    model = model.to(device).train()
    params = list(model.parameters())
    buffers = [torch.zeros_like(p) for p in params]
    wd = torch.tensor([r.weight_decay for r in runs], device=device)
    return model, params, buffers, wd


@torch.no_grad()
def sgd_step(params, buffers, lr: float, momentum: float, weight_decay: torch.Tensor) -> None:
    """torch.optim.SGD's rule (dampening 0, no Nesterov) with a per-run weight decay:
    d = grad + wd_r * p;  buf = momentum * buf + d;  p -= lr * buf.
    weight_decay is (R,) and broadcast over each parameter's leading run dimension."""
    for p, buf in zip(params, buffers):
        if p.grad is None:  # batch-norm parameters when no run of the grid uses BN
            continue
        d = p.grad.addcmul_(weight_decay.view(-1, *([1] * (p.dim() - 1))), p)  # grad + wd_r p
        torch.add(d, buf, alpha=momentum, out=buf)  # in place, one pass over the buffer
        p.add_(buf, alpha=-lr)
        p.grad = None


def eval_chunk(device: torch.device) -> int:
    """Images per evaluation forward: small on the CPU, where big activations thrash the cache
    (measured: 64 is 2x faster than 1000 for 8 runs), large on a GPU."""
    return 64 if device.type == "cpu" else 2500


@torch.no_grad()
def evaluate_stacked(model: StackedLeNet, x, y, chunk: int | None = None):
    """Test metrics of all runs: (accuracy % (R,), mean NLL (R,)), eval mode, no host sync."""
    chunk = chunk or eval_chunk(x.device)
    was_training = model.training
    model.eval()
    correct = torch.zeros(model.runs, device=x.device)
    nll = torch.zeros(model.runs, device=x.device)
    for s in range(0, len(x), chunk):
        log_probs, _ = model(x[s:s + chunk])                           # (R, n, 10)
        yb = y[s:s + chunk]
        correct += (log_probs.argmax(-1) == yb).sum(1)
        nll += -log_probs.gather(-1, yb.expand(model.runs, -1).unsqueeze(-1)).sum((1, 2))
    model.train(was_training)
    return 100.0 * correct / len(x), nll / len(x)


@torch.no_grad()
def trunk_features(model: StackedLeNet, x, chunk: int | None = None) -> torch.Tensor:
    """Trunk outputs (eval mode) of all runs: (R, n, 800)."""
    chunk = chunk or eval_chunk(x.device)
    was_training = model.training
    model.eval()
    out = torch.cat([model.trunk(x[s:s + chunk]) for s in range(0, len(x), chunk)])
    model.train(was_training)
    return out.transpose(0, 1)


def train_epoch(model, params, buffers, data: GridData, grid: GridConfig, al2_weight, wd,
                order: torch.Generator, masks: torch.Generator, max_steps: int | None = None,
                perm: torch.Tensor | None = None):
    """One epoch over the shuffled training set (or in the order `perm`, if given). Returns
    on-device sums per run: (L_c, L_r, correct vs noisy, correct vs clean), and the number of
    batches."""
    R, n, B = model.runs, len(data.train_x), grid.batch_size
    dev = data.train_x.device
    if perm is None:
        perm = torch.randperm(n, device=dev, generator=order)
    sums = torch.zeros(4, R, device=dev)
    batches = 0
    for s in range(0, n, B):  # the last partial batch is kept, as a DataLoader would
        if max_steps is not None and batches >= max_steps:
            break
        idx = perm[s:s + B]
        x, y = data.train_x[idx], data.train_noisy[idx]
        log_probs, features = model(x, masks)                             # (R, b, 10), (b, R, 800)
        loss_c = F.nll_loss(log_probs.flatten(0, 1), y.repeat(R), reduction="none")
        loss_c = loss_c.view(R, -1).mean(1)                               # L_c per run (R,)
        loss_r = activation_loss(features, dims=(0, 2))                   # L_r per run (R,)
        # Eq. 1 per run, summed over runs: a sum keeps each run's gradient its own.
        (loss_c + al2_weight * loss_r).sum().backward()
        sgd_step(params, buffers, grid.lr, grid.momentum, wd)
        with torch.no_grad():
            pred = log_probs.argmax(-1)                                   # (R, b)
            sums += torch.stack([loss_c, loss_r, (pred == y).sum(1),
                                 (pred == data.train_clean[idx]).sum(1)])
        batches += 1
    return sums, batches


def metrics_rows(epoch, test_acc, test_loss, sums, batches, n_seen, weights, wall):
    """Per-run metric dicts for one epoch from host copies of the on-device values."""
    R = len(test_acc)
    rows = []
    for r in range(R):
        row = {"epoch": epoch, "test_acc": test_acc[r], "test_loss": test_loss[r],
               "train_Lc": math.nan, "train_Lr": math.nan, "train_acc_noisy": math.nan,
               "train_acc_clean": math.nan, "al2_weight": weights[r], "wall_time_s": wall}
        if batches:
            row.update(train_Lc=sums[0][r] / batches, train_Lr=sums[1][r] / batches,
                       train_acc_noisy=100.0 * sums[2][r] / n_seen,
                       train_acc_clean=100.0 * sums[3][r] / n_seen)
        rows.append(row)
    return rows


def check_out_dir(out: Path, grid: GridConfig, resume: bool) -> bool:
    """Refuse a folder that holds another grid; returns whether it holds this one."""
    grid_file = out / "grid.json"
    if not grid_file.exists():
        if out.exists() and any(out.iterdir()) and not resume:
            raise GridError(f"{out} is not empty and holds no grid; choose another --out")
        return False
    try:
        held = json.loads(grid_file.read_text())
    except ValueError:
        raise GridError(f"{grid_file} is damaged; delete {out} or choose another --out") from None
    if held != asdict(grid):
        diff = sorted(k for k in set(held) | set(asdict(grid)) if held.get(k) != asdict(grid).get(k))
        raise GridError(f"{out} holds a different grid (differs in {', '.join(diff)}); "
                        f"choose another --out")
    if not resume:
        raise GridError(f"{out} already holds this grid; pass --resume to continue it "
                        f"or choose another --out")
    return True


def train_grid(grid: GridConfig, out: Path, device: str = "auto", resume: bool = False,
               command: str = "", progress: bool = True, data_root="data",
               on_epoch_end=None) -> dict:
    """Train every run of `grid`, writing run folders under `out`. Returns a summary dict.

    on_epoch_end(epoch, rows) is called after each epoch's files are written (tests use it to
    interrupt a grid).
    """
    grid.validate()
    out = Path(out)
    dev = select_device(device)
    set_tf32(grid.tf32)
    held = check_out_dir(out, grid, resume)
    runs = grid.runs()
    R = len(runs)
    data = load_grid_data(grid, dev, data_root)

    model, params, buffers, wd = stacked_runs(runs, dev)
    map_weights = get_map_weights(grid.epochs, grid.map_start, grid.map_threshold,
                                  grid.map_fac1, grid.map_fac2)
    uses_al2 = torch.tensor([float(r.use_al2) for r in runs], device=dev)
    history = [[] for _ in runs]
    start_epoch, wall_offset = 0, 0.0

    state_file = out / "resume.pt"
    if held and state_file.exists():
        state = torch.load(state_file, map_location=dev, weights_only=True)
        model.load_state_dict(state["model"], strict=True)
        for buf, saved in zip(buffers, state["momentum"]):
            buf.copy_(saved)
        history = state["history"]
        start_epoch, wall_offset = state["epoch"], state["wall_time_s"]
    else:
        io.save_json(asdict(grid), out / "grid.json")
        io.save_torch({"noisy_labels": data.noisy_full, "corrupted": data.mask_full,
                       "percent_corrupt": grid.percent_corrupt, "seed": grid.corruption_seed},
                      out / "corruption.pt")
    env = environment(dev)
    for r in runs:
        io.save_json({**r.config(), "command": command, "environment": env,
                      "train_images": len(data.train_x), "test_images": len(data.test_x),
                      "activation_images": min(grid.activation_images, len(data.test_x)),
                      "checkpoint_epochs": grid.checkpoint_epochs(),
                      "metrics_columns": METRIC_COLUMNS}, out / r.name / "config.json")

    ckpt_epochs = set(grid.checkpoint_epochs())
    act_x = data.test_x[:grid.activation_images]
    t0 = time.perf_counter() - wall_offset

    def finish_epoch(epoch, sums, batches, n_seen, weight):
        acc, loss = evaluate_stacked(model, data.test_x, data.test_y)
        weights = (uses_al2 * weight).tolist()
        rows = metrics_rows(epoch, acc.tolist(), loss.tolist(),
                            sums.tolist() if sums is not None else None, batches, n_seen,
                            weights, time.perf_counter() - t0)  # the epoch's one host sync
        for r, row in zip(runs, rows):
            if batches and not (math.isfinite(row["train_Lc"]) and math.isfinite(row["train_Lr"])):
                raise NonFiniteLoss(f"run {r.name}: non-finite loss in epoch {epoch}; the last "
                                    f"good checkpoint is kept in {out / r.name / 'checkpoints'}")
        for h, row in zip(history, rows):
            h.append(row)
        for r, h in zip(runs, history):
            io.save_csv(h, out / r.name / "metrics.csv", METRIC_COLUMNS)
        if epoch in ckpt_epochs:
            save_checkpoints(epoch, rows)

    def save_checkpoints(epoch, rows):
        feats = trunk_features(model, act_x).to(torch.float16).cpu()     # (R, n_act, 800)
        for i, r in enumerate(runs):
            run_dir = out / r.name
            io.save_torch({"model": model.run_state_dict(i), "config": r.config(),
                           "epoch": epoch, "metrics": rows[i]},
                          run_dir / "checkpoints" / f"epoch_{epoch}.pt")
            io.save_torch(feats[i].clone(), run_dir / "activations" / f"epoch_{epoch}.pt")
        # the grid state last: a resume never starts from a checkpoint that is not complete
        io.save_torch({"epoch": epoch, "model": model.state_dict(),
                       "momentum": [b.detach().cpu() for b in buffers],
                       "history": history, "wall_time_s": time.perf_counter() - t0}, state_file)

    if start_epoch == 0 and not history[0]:
        finish_epoch(0, None, 0, 0, math.nan)
        if on_epoch_end:
            on_epoch_end(0, [h[-1] for h in history])

    bar = range(start_epoch + 1, grid.epochs + 1)
    if progress:
        from tqdm import tqdm
        bar = tqdm(bar, initial=start_epoch, total=grid.epochs, unit="epoch", file=sys.stderr,
                   desc=f"{R} runs")
    for epoch in bar:
        i = epoch - 1  # zero-based index of the epoch being trained, as in get_map_weights
        model.train()
        sums, batches = train_epoch(model, params, buffers, data, grid,
                                    uses_al2 * map_weights[i], wd,
                                    epoch_generator(grid.order_seed, i, ORDER_STREAM, dev),
                                    epoch_generator(grid.dropout_seed, i, DROPOUT_STREAM, dev))
        finish_epoch(epoch, sums, batches, len(data.train_x), map_weights[i])
        if progress:
            bar.set_postfix_str(progress_summary(runs, [h[-1] for h in history]))
        if on_epoch_end:
            on_epoch_end(epoch, [h[-1] for h in history])
    wall = time.perf_counter() - t0
    final = {r.name: h[-1] for r, h in zip(runs, history)}
    return {"runs": [r.name for r in runs], "epochs": grid.epochs, "wall_time_s": wall,
            "device": str(dev), "final": final}


def progress_summary(runs, rows) -> str:
    """'TA plain 25.1-31.0 al2 68.2-90.3 | Lr ...': test accuracy ranges of the two groups."""
    parts = []
    for flag, label in ((False, "plain"), (True, "al2")):
        group = [row for r, row in zip(runs, rows) if r.use_al2 == flag]
        if group:
            ta = [g["test_acc"] for g in group]
            lr = [g["train_Lr"] for g in group]
            parts.append(f"{label} TA {min(ta):.1f}-{max(ta):.1f} Lr {max(lr):.3g}")
    return " | ".join(parts)
