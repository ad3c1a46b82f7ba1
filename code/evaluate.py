"""Regenerate the paper's Table 1, training curves, SVCCA/PWCCA analysis and cumulative ablation
from a folder of trained runs, with the per-run rows behind them and, beyond the paper, a linear
probe of the trunks and (for replicates or remedies) how sure each difference is. Never trains.

    python code/evaluate.py --runs results/runs/quick --out results/quick
    python code/evaluate.py                       # results/runs/paper -> results/paper

Every file it may write under --out, and what it holds: al2.analyses.output.OUTPUTS (the
README's "Outputs"). Anything that could not be computed is listed in MISSING.md and makes the
exit code 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # this checkout's svcca, not an
# installed checkout's (its al2: code/, this script's folder, comes first already)

from al2.cli import int_list
from al2.training.config import MNIST_TEST
from al2.training.device import select_device
from al2.training.portable import apply as apply_portable, restart_pinned
from al2.errors import UserError
from al2.analyses.evaluation import Settings, evaluate_runs
from al2.paths import RESULTS_DIR, resolve, shown
from al2.analyses.runs import discover_runs
from al2.analyses.similarity import AUTHORS_STATISTICS


AUTHORS_SIMILARITY_IMAGES = MNIST_TEST  # their evaluate.py: the whole test set, 160,000 points


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--preset", default="paper",
                   help="names the default --runs (results/runs/<preset>) and --out "
                        "(results/<preset>) (default: paper)")
    p.add_argument("--runs", type=Path, default=None, help="folder of trained runs")
    p.add_argument("--out", type=Path, default=None, help="where the outputs go")
    for name, what in (("table", "Table 1 (csv, md, png)"), ("curves", "training curves"),
                       ("similarity",
                        f"similarity, Sec. 5.1 ({', '.join(AUTHORS_STATISTICS)}, ...)"),
                       ("probe", "a linear probe of each trunk on clean-labelled images"),
                       ("ablation", "cumulative ablation, Sec. 5.2")):
        p.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, default=True,
                       help=f"{what} (default: on)")
    p.add_argument("--similarity-images", type=int, default=None,
                   help="test images per representation (x 16 positions = datapoints). Default: "
                        "for grids of 100+ epochs the authors' 10000 (160,000 datapoints), "
                        "recomputed from the checkpoints on --device; for shorter grids the "
                        "images saved at each checkpoint (the trainer's --activation-images)")
    p.add_argument("--similarity-epochs", type=int_list, default=None,
                   help="checkpoint epochs compared. Default: for grids of 100+ epochs the "
                        "authors' 0, 1, 100, 200, ... (their epoch_0 is after one epoch); for "
                        "shorter grids every checkpoint")
    p.add_argument("--ablation-epochs", type=int_list, default=None,
                   help="checkpoint epochs to ablate (default: each run's last epoch)")
    p.add_argument("--ablation-images", type=int, default=1000,
                   help="first N training and N test images used for ablation (default: 1000)")
    p.add_argument("--ablation-draws", type=int, default=3,
                   help="random draws averaged per ablation fraction (default: 3)")
    p.add_argument("--probe-images", type=int, default=1000,
                   help="first N training images, with their clean labels, the probe is fitted "
                        "on (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the ablation draws and the "
                                                       "random floor (default: 0)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where similarity and ablation run (default: auto: CUDA when available)")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.similarity_images is not None and not 1 <= args.similarity_images <= MNIST_TEST:
        parser.error(f"--similarity-images must lie in 1..{MNIST_TEST}")
    if min(args.ablation_images, args.ablation_draws, args.probe_images) < 1:
        parser.error("--ablation-images, --ablation-draws and --probe-images must be >= 1")
    try:
        device = str(select_device(args.device))
    except UserError as e:
        parser.error(str(e))
    runs_dir = resolve(args.runs or RESULTS_DIR / "runs" / args.preset)
    out = resolve(args.out or RESULTS_DIR / args.preset)
    if out.exists() and not out.is_dir():
        parser.exit(2, f"evaluate.py: error: --out {shown(out)} is a file, not a folder\n")
    try:
        runs = discover_runs(runs_dir)
        if runs[0].grid.portable and device == "cpu":  # evaluated as trained (portable.py)
            if argv is None:
                restart_pinned(sys.argv)
            apply_portable()
        images = args.similarity_images
        if images is None and min(r.epochs for r in runs) >= 100:
            images = AUTHORS_SIMILARITY_IMAGES
        settings = Settings(table=args.table, curves=args.curves, similarity=args.similarity,
                            ablation=args.ablation, probe=args.probe, similarity_images=images,
                            similarity_epochs=args.similarity_epochs,
                            ablation_epochs=args.ablation_epochs,
                            ablation_images=args.ablation_images,
                            ablation_draws=args.ablation_draws, probe_images=args.probe_images,
                            seed=args.seed)
        result = evaluate_runs(runs, runs_dir, out, settings, device)
    except UserError as e:
        parser.exit(2, f"evaluate.py: error: {e}\n")
    except OSError as e:  # an output that cannot be written
        parser.exit(2, f"evaluate.py: error: {e.strerror or e}: {e.filename or shown(out)}\n")
    laps = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in result.timings.items())
    print(f"evaluated {len(runs)} runs from {shown(runs_dir)} in {result.seconds:.0f} s "
          f"({laps}); wrote {', '.join(result.written)} to {shown(out)}")
    if result.problems:
        for problem in result.problems:
            print(f"evaluate.py: error: {problem}", file=sys.stderr)
        print(f"evaluate.py: what could be computed was written; the gaps are listed in "
              f"{shown(out / 'MISSING.md')}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
