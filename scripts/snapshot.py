"""Save or restore a grid's resume state as one file (al2.training.snapshot): what --resume
needs, without checkpoints or activations.

    python scripts/snapshot.py save ~/al2-runs/paper-cpu results/paper-cpu/snapshot.tar.gz
    python scripts/snapshot.py restore results/paper-cpu/snapshot.tar.gz ~/al2-runs/paper-cpu

then `python code/train.py ... --out <folder> --resume` continues the grid bit for bit. Exit 2,
with one line, for a folder being trained, a folder to restore into that is not empty, or a
damaged snapshot.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "code"))  # this checkout's al2
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # and svcca, not an installed one's

from al2.errors import UserError
from al2.paths import resolve, shown
from al2.training.snapshot import restore_snapshot, save_snapshot


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("action", choices=["save", "restore"])
    p.add_argument("source", type=Path, help="save: the grid folder; restore: the snapshot")
    p.add_argument("target", type=Path, help="save: the snapshot; restore: a new grid folder")
    args = p.parse_args(argv)
    source, target = resolve(args.source), resolve(args.target)
    try:
        names = (save_snapshot if args.action == "save" else restore_snapshot)(source, target)
    except UserError as e:
        p.exit(2, f"snapshot.py: error: {e}\n")
    size = (target if args.action == "save" else source).stat().st_size
    print(f"{'saved' if args.action == 'save' else 'restored'} {len(names)} files "
          f"({size / 1e6:.1f} MB snapshot): {shown(source)} -> {shown(target)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
