"""Train a grid of AL2 runs: baselines x {without, with AL2} x seeds (paper Table 1, Fig. 1).

    python code/train.py                    # the paper: Table 1 + Fig. 1, 14 runs, 700 epochs
    python code/train.py --preset quick     # a CPU-sized grid showing the same effect (10-25 min)
    python code/train.py --dry-run          # a few steps, nothing written

Every run writes its folder <out>/<baseline>_<plain|al2>_s<seed>[...]/ beside the grid's files;
the whole layout: code/al2/training/folder.py. --resume continues an interrupted grid, or with a
larger --epochs extends a finished one.

Exit codes: 0 done (or stopped by --time-budget); 75 stopped by SIGTERM, SIGUSR1 or Ctrl-C
after finishing the step under way, the exact state saved: the same command plus --resume
continues bit for bit; 1 a run's loss became non-finite; 2 a bad setting, or a file that could
not be read or written (the state before it is kept: --resume continues); 130 a second Ctrl-C.
"""
from __future__ import annotations

import argparse
import shlex
import signal
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":
    # A stop signal may come while torch loads (Slurm sends its time-limit warning up to a
    # minute early): kept here, before the imports below, and honoured at the first step.
    EARLY_SIGNALS: list[str] = []
    for _name in ("SIGTERM", "SIGUSR1"):
        signal.signal(getattr(signal, _name),
                      lambda signum, frame: EARLY_SIGNALS.append(signal.Signals(signum).name))

from al2.cli import (baseline_seeds, int_list, noise_levels, optimizer_name, shard_spec,
                     str_list)
from al2.training.config import BASELINES, REMEDIES, GridConfig
from al2.training.presets import PRESETS
from al2.method.remedies import DEFAULTS as REMEDY_DEFAULTS
from al2.errors import UserError
from al2.files import WriteError
from al2.training.records import NonFiniteLoss
from al2.paths import RESULTS_DIR, resolve, shown
from al2.training.stopping import STOPPED_EXIT, StopOnSignal
from al2.training.grid import TrainOptions, train_grid
from al2.speed.variants import OPTIMIZERS, TRUNKS, Variants

DEFAULTS = GridConfig()


def build_parser() -> argparse.ArgumentParser:
    d = DEFAULTS
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Defaults are the paper's setting (Sec. 4, Table 1, Fig. 1); --preset quick "
               "replaces some of them (al2.training.presets.PRESETS, README.md); an explicit flag "
               "beats the preset.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_grid_args(p.add_argument_group("grid"), d)
    add_optimisation_args(p.add_argument_group("optimisation (Sec. 4)"), d)
    add_schedule_args(p.add_argument_group("AL2 weight schedule, get_map_weights (Sec. 3)"), d)
    add_study_args(p.add_argument_group(
        "replicates and early stopping (beyond the paper: how sure a result is)"), d)
    add_remedy_args(p.add_argument_group(
        f"remedies (beyond the paper; --baselines {','.join(REMEDIES)}; "
        f"al2/method/remedies.py)"), d)
    add_running_args(p.add_argument_group("running"), d)
    return p


def add_grid_args(g, d: GridConfig) -> None:
    g.add_argument("--preset", choices=sorted(PRESETS), default="paper",
                   help="paper: Table 1 and Fig. 1 as published; quick: CPU-sized, the same "
                        "effect; replicates-quick: quick x 5 independent replicates and a "
                        "1,000-image noisy validation set; remedies-quick: Bare, label smoothing, "
                        "GCE, SCE and mixup, each without and with AL2, 5 replicates and the "
                        "validation set (default: paper)")
    g.add_argument("--baselines", type=str_list, default=None,
                   help=f"comma list from {','.join(BASELINES)} (Table 1's) and "
                        f"{','.join(REMEDIES)} (remedies, below) (default: Table 1's four)")
    g.add_argument("--al2", choices=["off", "on", "both"], default=None,
                   help="train without AL2, with it, or both (default: both, Table 1)")
    g.add_argument("--seeds", type=int_list, default=None,
                   help="Table 1's seeds, for every baseline; a seed sets a run's "
                        "initialisation (default: 0)")
    g.add_argument("--extra-seeds", type=baseline_seeds, action="append", default=None,
                   metavar="BASELINE=SEEDS",
                   help="more independently initialised instances of one baseline, for the "
                        "similarity analysis (Fig. 1), not in Table 1; repeatable; 'none' for "
                        "no extra runs (default: bare=1,2,3, the authors' 4 Bare instances)")
    g.add_argument("--epochs", type=int, default=None,
                   help=f"training epochs (default: {d.epochs}, Table 1)")
    g.add_argument("--percent-corrupt", type=noise_levels, default=None,
                   help=f"label noise in %%; several levels (e.g. 15,25,50,75,85) make a noise "
                        f"sweep, one stack of runs per level, run names ending in _n<level> "
                        f"(default: {d.percent_corrupt:g}, Table 1)")
    g.add_argument("--corruption-seed", type=int, default=None,
                   help=f"which labels are corrupted (default: {d.corruption_seed})")
    g.add_argument("--order-seed", type=int, default=None,
                   help=f"minibatch order, shared by all runs (default: {d.order_seed})")
    g.add_argument("--dropout-seed", type=int, default=None,
                   help=f"dropout masks (default: {d.dropout_seed})")
    g.add_argument("--subset", type=int, default=None,
                   help="train on the first N training images (default: all 60,000)")
    g.add_argument("--test-subset", type=int, default=None,
                   help="per-epoch test metrics on the first N test images (default: all 10,000)")


def add_optimisation_args(o, d: GridConfig) -> None:
    o.add_argument("--lr", type=float, default=None, help=f"SGD learning rate (default: {d.lr:g})")
    o.add_argument("--momentum", type=float, default=None,
                   help=f"SGD momentum (default: {d.momentum:g})")
    o.add_argument("--batch-size", type=int, default=None,
                   help=f"minibatch size, last partial batch kept (default: {d.batch_size})")
    o.add_argument("--weight-decay", type=float, default=None,
                   help=f"WD baseline's weight decay; the authors' help text names 5e-3 and 5e-4 "
                        f"(default: {d.weight_decay:g})")
    o.add_argument("--dropout", type=float, default=None,
                   help=f"DO baseline's dropout rate, authors' scripts (default: {d.dropout:g})")
    o.add_argument("--bn-init", choices=["uniform", "ones"], default=None,
                   help="BN baseline's initial gamma: uniform = U(0, 1), the authors' PyTorch "
                        "0.4/1.1; ones = PyTorch >= 1.2 (default: uniform)")


def add_schedule_args(s, d: GridConfig) -> None:
    s.add_argument("--map-start", type=float, default=None,
                   help=f"weight at epoch 0 (default: {d.map_start:g})")
    s.add_argument("--map-threshold", type=float, default=None,
                   help=f"growth slows once the weight reaches this (default: {d.map_threshold:g})")
    s.add_argument("--map-fac1", type=float, default=None,
                   help=f"growth per epoch below the threshold (default: {d.map_fac1:g})")
    s.add_argument("--map-fac2", type=float, default=None,
                   help=f"growth per epoch above the threshold (default: {d.map_fac2:g})")


def add_study_args(g, d: GridConfig) -> None:
    g.add_argument("--replicates", type=int, default=None,
                   help="independent repetitions of the whole grid, trained in one stack: each "
                        "with its own initialisation, batch order and dropout masks, runs named "
                        "..._r<k>; replicate 0 is the grid of one replicate "
                        f"(default: {d.replicates})")
    g.add_argument("--first-replicate", type=int, default=None, metavar="K",
                   help="number the replicates from K: fresh replicates of a grid whose first K "
                        "were used for a choice, e.g. an out-of-sample test "
                        f"(default: {d.first_replicate})")
    g.add_argument("--corruption-per-replicate", action="store_true", default=None,
                   help="each replicate its own corrupted labels (default: the grid's labels "
                        "for every replicate)")
    g.add_argument("--validation", type=int, default=None, metavar="N",
                   help="hold out N training images with their corrupted labels, never trained "
                        "on, for early stopping (metrics.csv: val_acc, val_loss): the N images "
                        "after --subset's; without --subset they come out of the 60,000, so "
                        f"60,000 - N are trained on (default: {d.validation}, none)")


def add_remedy_args(g, d: GridConfig) -> None:
    flags = {"label_smoothing": "label smoothing epsilon (ls)",
             "gce_q": "generalised cross-entropy exponent q (gce)",
             "sce_alpha": "symmetric cross-entropy: weight of CE (sce)",
             "sce_beta": "symmetric cross-entropy: weight of the reverse CE (sce)",
             "sce_log_clip": "symmetric cross-entropy: log 0 := A in the reverse CE (sce)",
             "mixup_alpha": "mixup: lam ~ Beta(alpha, alpha) (mixup)"}
    for field, what in flags.items():
        g.add_argument(f"--{field.replace('_', '-')}", type=float, default=None,
                       metavar=field.split("_")[-1].upper(),
                       help=f"{what}; {REMEDY_DEFAULTS[field][1]} (default: {getattr(d, field):g})")


def add_running_args(r, d: GridConfig) -> None:
    r.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto: CUDA when available (default: auto)")
    r.add_argument("--out", type=Path, default=None,
                   help="run folder (default: results/runs/<preset>)")
    r.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=None,
                   help="TF32 matmuls and cuDNN convolutions on CUDA, a departure from the "
                        "paper's fp32 (default: off, strict fp32; no effect on the CPU)")
    r.add_argument("--cuda-graph", action=argparse.BooleanOptionalAction, default=True,
                   help="on CUDA, capture the training step once as a CUDA graph and replay it; "
                        "--no-cuda-graph runs it eagerly (default: on; no effect on the CPU)")
    r.add_argument("--trunk", choices=TRUNKS, default="grouped",
                   help="how the stacked trunk is computed, the same function: grouped (one "
                        "grouped convolution, channels-last), grouped-nchw, or streams (each "
                        "run's convolutions, on CUDA each on its own stream); the CPU's last "
                        "bits differ between them (default: grouped)")
    r.add_argument("--optimizer", type=optimizer_name, choices=OPTIMIZERS, default="torch",
                   help="torch: torch.optim.SGD, each run's weight decay on its rows; flat: the "
                        "same rule on one buffer for every parameter (equal bit for bit at "
                        "momentum 0.5, within float32 rounding at others; no faster on 2 CPU "
                        "cores: code/bench/bench_train.py; on CUDA the GPU job's probe times "
                        "both); 'auto' of older commands is torch (default: torch)")
    r.add_argument("--cudnn-benchmark", action="store_true",
                   help="let cuDNN time its convolution algorithms and keep the fastest (may "
                        "pick Winograd/FFT: other fp32 rounding) (default: off; CUDA only)")
    r.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads (another count rounds differently); share a machine's "
                        "cores out (default: Slurm's CPUs per task, else every core)")
    r.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                   help="stop cleanly, with a checkpoint of every run, after the epoch past "
                        "which the next would not fit in this many minutes; continue with "
                        "--resume (default: no limit)")
    r.add_argument("--shard", type=shard_spec, default=None, metavar="K/N",
                   help="train only part K of N of the grid (0 <= K < N) into --out; N such "
                        "processes (e.g. a Slurm array, scripts/slurm/) together train the grid "
                        "(default: the whole grid)")
    r.add_argument("--resume", action="store_true",
                   help="continue the grid in --out from its newest state (resume.pt, inside an "
                        "epoch after a signal); with a larger --epochs, extend a finished grid")
    r.add_argument("--checkpoint-epochs", type=int, default=None, metavar="K",
                   help=f"checkpoint at epoch 0, every K epochs and the last "
                        f"(default: {d.checkpoint_every})")
    r.add_argument("--activation-images", type=int, default=None,
                   help=f"first N test images whose trunk outputs are saved at each checkpoint "
                        f"(default: {d.activation_images})")
    r.add_argument("--dry-run", action="store_true",
                   help="1 epoch on 256 images (4 steps) in a temporary folder, nothing kept")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")


FLAG_TO_FIELD = {"checkpoint_epochs": "checkpoint_every"}


def grid_from_args(args) -> GridConfig:
    values = dict(PRESETS[args.preset], preset=args.preset)
    for name, value in vars(args).items():
        field = FLAG_TO_FIELD.get(name, name)
        if value is not None and field in GridConfig.__dataclass_fields__ and field != "preset":
            values[field] = value
    if args.extra_seeds is not None:
        values["extra_seeds"] = {name: seeds for name, seeds in filter(None, args.extra_seeds)}
    elif args.baselines is not None:  # the preset's extra instances of baselines still chosen
        extra = values.get("extra_seeds", {})
        values["extra_seeds"] = {b: s for b, s in extra.items() if b in args.baselines}
    if args.dry_run:
        values.update(epochs=1, subset=256, test_subset=256, activation_images=16)
    return GridConfig(**values)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    grid = grid_from_args(args)
    if args.time_budget is not None and args.time_budget <= 0:
        parser.error("--time-budget must be > 0 minutes")
    try:
        grid.validate()
    except ValueError as e:
        parser.error(str(e))
    argv = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(shlex.quote(a) for a in ["python", "code/train.py", *argv])
    tmp = tempfile.TemporaryDirectory(prefix="al2-dry-run-") if args.dry_run else None
    out = Path(tmp.name) if tmp else resolve(args.out or RESULTS_DIR / "runs" / grid.preset)
    again = "the same command plus --resume continues from it"
    try:
        with StopOnSignal() as stop:
            stop.requested = (globals().get("EARLY_SIGNALS") or [None])[0]
            options = TrainOptions(
                device=args.device, resume=args.resume, command=command,
                progress=not args.no_progress and not args.dry_run,
                speed=Variants(args.trunk, args.optimizer, args.cuda_graph),
                time_budget_s=None if args.time_budget is None else 60 * args.time_budget,
                shard=args.shard, cudnn_benchmark=args.cudnn_benchmark, threads=args.threads,
                stop=stop)
            summary = train_grid(grid, out, options)
    except WriteError as e:
        parser.exit(2, f"train.py: error: {e}; the last complete state is kept: after freeing "
                       f"the space (or fixing the cause) {again}\n")
    except UserError as e:
        parser.exit(2, f"train.py: error: {e}\n")
    except OSError as e:  # a path that cannot be written: a file where a folder should be, ...
        parser.exit(2, f"train.py: error: {e.strerror or e}: {e.filename or shown(out)}\n")
    except NonFiniteLoss as e:
        parser.exit(1, f"train.py: stopped: {e}\n")
    except KeyboardInterrupt:
        parser.exit(130, f"\ntrain.py: interrupted (a second Ctrl-C); the newest complete state "
                         f"in {shown(out)} is kept: {again}\n")
    finally:
        if tmp:
            tmp.cleanup()
    if summary["signal"] is not None:
        at, epochs = summary["stopped_at"], summary["epochs"]
        where = f"in epoch {at[0]} of {epochs} after its step {at[1]}" \
            if isinstance(at, tuple) else f"after epoch {at} of {epochs}"
        saved = "nothing kept (dry run)" if args.dry_run else \
            f"the exact state is saved in {shown(out)}: {again}"
        parser.exit(STOPPED_EXIT, f"train.py: stopped by {summary['signal']} {where}; {saved} "
                                  f"(exit {STOPPED_EXIT})\n")
    finals = summary["final"]
    best = " ".join(f"{name} {row['test_acc']:.2f}%" for name, row in finals.items())
    where = "nothing kept (dry run)" if args.dry_run else shown(out)
    if summary["stopped_at"] is not None:
        where += (f"; stopped at epoch {summary['stopped_at']} of {summary['epochs']} "
                  f"(--time-budget): continue with the same command plus --resume")
    epochs = summary["stopped_at"] or summary["epochs"]
    print(f"trained {len(finals)} runs x {epochs} epochs on {summary['device']} in "
          f"{time.strftime('%H:%M:%S', time.gmtime(summary['wall_time_s']))}; test accuracy: "
          f"{best}; {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
