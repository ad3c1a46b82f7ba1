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
import os
import shlex
import signal
import sys
import tempfile
import time
from dataclasses import MISSING, fields
from pathlib import Path

# A stop signal may come while torch loads (Slurm sends its time-limit warning up to a minute
# early): kept here, as a script, before the imports below, and honoured at the first step.
EARLY_SIGNALS: list[str] = []
if __name__ == "__main__":
    for _name in ("SIGTERM", "SIGUSR1"):
        signal.signal(getattr(signal, _name),
                      lambda signum, frame: EARLY_SIGNALS.append(signal.Signals(signum).name))
    # those a restart into the portable mode carried over, then those held since (portable.py)
    EARLY_SIGNALS += [s for s in os.environ.pop("AL2_PENDING_STOP_SIGNALS", "").split(",") if s]
    signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGTERM, signal.SIGUSR1))

from al2.cli import (baseline_seeds, int_list, noise_levels, optimizer_name, shard_spec,
                     str_list)
from al2.training.config import REMEDIES, GridConfig
from al2.training.model import BN_INITS
from al2.training.presets import PRESETS
from al2.errors import UserError
from al2.files import WriteError
from al2.training.records import NonFiniteLoss
from al2.paths import RESULTS_DIR, resolve, shown
from al2.training.stopping import STOPPED_EXIT, StopOnSignal
from al2.training.portable import restart_pinned
from al2.training.grid import TrainOptions, train_grid
from al2.speed.variants import OPTIMIZERS, TRUNKS, Variants

# train.py's groups of GridConfig's fields, each field a flag --<name-with-dashes> with its
# meaning and default from GridConfig (config.setting); only how argparse reads a value that
# is not a plain int, float or str is said here (a bool field is --name/--no-name).
GROUPS = {
    "grid": ["baselines", "al2", "seeds", "extra_seeds", "epochs", "percent_corrupt",
             "corruption_seed", "order_seed", "dropout_seed", "subset", "test_subset"],
    "optimisation (Sec. 4)": ["lr", "momentum", "batch_size", "weight_decay", "dropout",
                              "bn_init"],
    "AL2 weight schedule, get_map_weights (Sec. 3)": ["map_start", "map_threshold", "map_fac1",
                                                      "map_fac2"],
    "replicates and early stopping (beyond the paper: how sure a result is)": [
        "replicates", "first_replicate", "corruption_per_replicate", "validation"],
    f"remedies (beyond the paper; --baselines {','.join(REMEDIES)}; al2/method/remedies.py)": [
        "label_smoothing", "gce_q", "sce_alpha", "sce_beta", "sce_log_clip", "mixup_alpha"],
    "number format and records": ["tf32", "portable", "checkpoint_every", "activation_images"],
}
READ_AS = {"baselines": {"type": str_list}, "seeds": {"type": int_list},
           "al2": {"choices": ["off", "on", "both"]}, "bn_init": {"choices": list(BN_INITS)},
           "extra_seeds": {"type": baseline_seeds, "action": "append",
                           "metavar": "BASELINE=SEEDS"},
           "percent_corrupt": {"type": noise_levels}, "first_replicate": {"metavar": "K"},
           "validation": {"metavar": "N"},
           "checkpoint_every": {"flag": "--checkpoint-epochs", "metavar": "K"}}
SETTINGS = {f.name: f for f in fields(GridConfig)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Defaults are the paper's setting (Sec. 4, Table 1, Fig. 1); --preset quick "
               "replaces some of them (al2.training.presets.PRESETS, README.md); an explicit flag "
               "beats the preset.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="paper",
                   help="paper: Table 1 and Fig. 1 as published; quick: CPU-sized, the same "
                        "effect; *-quick: the studies beyond the paper (al2/training/presets.py, "
                        "results/<preset>/README.md) (default: paper)")
    for title, names in GROUPS.items():
        group = p.add_argument_group(title)
        for name in names:
            add_setting(group, name)
    add_running_args(p.add_argument_group("running"))
    return p


def add_setting(group, name: str) -> None:
    """GridConfig's field `name` as a flag: its meaning and default from the field."""
    f, how = SETTINGS[name], dict(READ_AS.get(name, {}))
    flag = how.pop("flag", f"--{name.replace('_', '-')}")
    default = f.default if f.default_factory is MISSING else f.default_factory()
    shown = f.metadata["shown"] or (f"{default:g}" if isinstance(default, float) else
                                    ",".join(map(str, default)) if isinstance(default, list)
                                    else default)
    if "type" not in how and "choices" not in how:
        how.update({"action": argparse.BooleanOptionalAction} if isinstance(default, bool)
                   else {"type": float if isinstance(default, float) else int})
    group.add_argument(flag, dest=name, default=None,
                       help=f"{f.metadata['help']} (default: {shown})".replace("%", "%%"), **how)


def add_running_args(r) -> None:
    r.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto: CUDA when available (default: auto)")
    r.add_argument("--out", type=Path, default=None,
                   help="run folder (default: results/runs/<preset>)")
    r.add_argument("--cuda-graph", action=argparse.BooleanOptionalAction, default=True,
                   help="on CUDA, capture the training step once as a CUDA graph and replay it; "
                        "--no-cuda-graph runs it eagerly (default: on; no effect on the CPU)")
    r.add_argument("--trunk", choices=TRUNKS, default="grouped",
                   help="how the stacked trunk is computed, the same function: grouped (one "
                        "grouped convolution, channels-last), grouped-nchw, or streams (each "
                        "run's convolutions, on CUDA each on its own stream); the CPU's last "
                        "bits differ between them (default: grouped)")
    r.add_argument("--optimizer", type=optimizer_name, choices=OPTIMIZERS, default="torch",
                   help="torch: torch.optim.SGD; flat: the same rule on one buffer for every "
                        "parameter (bit for bit at momentum 0.5; speed: code/bench/bench_train.py)"
                        "; 'auto' of older commands is torch (default: torch)")
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
    r.add_argument("--dry-run", action="store_true",
                   help="1 epoch on 256 images (4 steps) in a temporary folder, nothing kept")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")


def grid_from_args(args) -> GridConfig:
    values = dict(PRESETS[args.preset], preset=args.preset)
    values.update({name: value for name, value in vars(args).items()
                   if name in SETTINGS and name != "preset" and value is not None})
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
    if grid.portable and argv is None:  # as a script: restarts with the pins (portable.py)
        restart_pinned(sys.argv, EARLY_SIGNALS)
    argv = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(shlex.quote(a) for a in ["python", "code/train.py", *argv])
    tmp = tempfile.TemporaryDirectory(prefix="al2-dry-run-") if args.dry_run else None
    out = Path(tmp.name) if tmp else resolve(args.out or RESULTS_DIR / "runs" / grid.preset)
    again = "the same command plus --resume continues from it"
    try:
        with StopOnSignal() as stop:
            stop.requested = (EARLY_SIGNALS or [None])[0]
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
    return report(summary, out, args.dry_run, parser, again)


def report(summary: dict, out: Path, dry_run: bool, parser, again: str) -> int:
    """The call's last line: where a signal stopped it (exit 75), or what it trained."""
    if summary["signal"] is not None:
        at, epochs = summary["stopped_at"], summary["epochs"]
        where = f"in epoch {at[0]} of {epochs} after its step {at[1]}" \
            if isinstance(at, tuple) else f"after epoch {at} of {epochs}"
        saved = "nothing kept (dry run)" if dry_run else \
            f"the exact state is saved in {shown(out)}: {again}"
        parser.exit(STOPPED_EXIT, f"train.py: stopped by {summary['signal']} {where}; {saved} "
                                  f"(exit {STOPPED_EXIT})\n")
    finals = summary["final"]
    best = " ".join(f"{name} {row['test_acc']:.2f}%" for name, row in finals.items())
    where = "nothing kept (dry run)" if dry_run else shown(out)
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
