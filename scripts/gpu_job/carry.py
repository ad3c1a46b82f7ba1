"""A grid trained over several time-limited GPU jobs whose disks do not last: what one job sends
back, and what the next one takes in. Needed only when the grid does not finish in one job
(README.md beside this file); a grid on durable storage just resumes (train.py --resume).

At the end of a job that did not finish the grid, `export` writes into the job's output folder

  state.tar.gz.00, .01, ...     the run folder's small files (grid.json, split.json, corruption
                                files, shards/, carry.json, every run's metrics.csv and
                                config.json) and the resume file: weights and momentum of every
                                run (~44 MB gzipped for 14 runs)
  checkpoints.tar.gz.00, ...    the same small files and the checkpoints written since the last
                                export: the trunk alone (conv1, conv2, BN; ~0.1 MB a run) at the
                                epochs the similarity analysis compares (0, 1, 100, ...), and the
                                whole network at the grid's last epoch (the ablation's)

each part at most --part-mib MiB. Where the results come back, `receive` keeps the state parts in
--carry and unpacks the checkpoints into the local run folder. The carry folder must be kept
somewhere durable until the next job: it is the only copy of the grid's state. The next job takes
it in (`import` rebuilds the run folder, train.py --resume continues); once the grid is finished,
code/evaluate.py runs where `receive` assembled the run folder.

    python scripts/gpu_job/carry.py export --runs RUNS --out JOB_OUTPUT          # in the job
    python scripts/gpu_job/carry.py import --carry CARRY --runs RUNS              # in the job
    python scripts/gpu_job/carry.py receive JOB_OUTPUT --carry CARRY --runs RUNS  # at home

run.sh also asks it what a run folder holds (`state`: none, unfinished or finished) and copies
its records (`records`: every run's metrics.csv and config.json) into the results it packs, so
that no script but the library spells a file of a grid folder (al2.training.folder.GridFolder).
"""
from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tarfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "code"))  # this checkout's al2
sys.path.insert(1, str(Path(__file__).resolve().parents[2]))  # and svcca, not an installed one's

from al2.errors import UserError
from al2.files import save_json
from al2.training.folder import GridFolder
from al2.analyses.runs import discover_runs
from al2.analyses.similarity import similarity_epochs

MIB = 1 << 20


class CarryError(UserError):
    """A user-facing problem: one line, exit 2."""


def slim_checkpoint(ckpt: dict) -> dict:
    """The checkpoint with the trunk alone (conv1, conv2, BN): what the similarity analysis reads
    (al2.load_trunk), a sixteenth of the size."""
    return {**ckpt, "model": {k: v for k, v in ckpt["model"].items() if k.startswith("trunk.")}}


def trained_epoch(runs: Path) -> int:
    """The last epoch every run of the folder has trained (0 before training)."""
    return min(r.epochs for r in discover_runs(runs))


def finished(runs: Path) -> bool:
    return GridFolder(runs).split.finished()


def folder_state(runs: Path) -> str:
    """none (no grid there), unfinished or finished."""
    folder = GridFolder(runs)
    return "none" if not folder.grid_file.exists() else \
        "finished" if folder.split.finished() else "unfinished"


def copy_records(runs: Path, out: Path) -> int:
    """Every run's config.json and metrics.csv into out/<run>/; returns the number of runs."""
    folder, copied = GridFolder(runs), 0
    for name in folder.run_names():
        if not folder.metrics_file(name).exists():
            continue
        (out / name).mkdir(parents=True, exist_ok=True)
        for path in (folder.metrics_file(name), folder.config_file(name)):
            shutil.copyfile(path, out / name / path.name)
        copied += 1
    return copied


def split_write(data: bytes, out: Path, name: str, part_mib: float) -> list[Path]:
    """data as out/name.00, .01, ... of at most part_mib MiB each."""
    size = int(part_mib * MIB)
    parts = []
    for i, start in enumerate(range(0, max(len(data), 1), size)):
        part = out / f"{name}.{i:02d}"
        part.write_bytes(data[start:start + size])
        parts.append(part)
    return parts


def joined(parts: list[Path]) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(parts))


def tar_bytes(members: list[tuple[str, bytes | Path]]) -> bytes:
    """A gzipped tar (level 1: float weights shrink ~9%, in about a second for 48 MB)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for name, item in members:
            data = item.read_bytes() if isinstance(item, Path) else item
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def untar(data: bytes, dest: Path) -> list[str]:
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        if any(Path(n).is_absolute() or ".." in Path(n).parts for n in names):
            raise CarryError("an archive holds a path outside its folder; not unpacked")
        tar.extractall(dest)
    return names


def export(runs: Path, out: Path, part_mib: float) -> dict:
    """Write the state parts (unfinished grid) and the checkpoint parts into `out`."""
    folder = GridFolder(runs)
    if not folder.grid_file.exists():
        raise CarryError(f"{runs} holds no grid")
    out.mkdir(parents=True, exist_ok=True)
    total = json.loads(folder.grid_file.read_text())["epochs"]
    epoch = trained_epoch(runs)
    compared = set(similarity_epochs(discover_runs(runs)))  # evaluate.py's default epochs
    carry = folder.carry_file
    since = json.loads(carry.read_text())["exported_through"] if carry.exists() else -1
    save_json({"exported_through": epoch, "previous": since}, carry)
    small = [(str(p.relative_to(runs)), p) for p in folder.small_files()]
    ckpts = []
    for _, e, path in folder.checkpoints():
        if e <= since or (e not in compared and e != total):
            continue
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if e != total:           # the last epoch stays whole: the ablation needs the head
            ckpt = slim_checkpoint(ckpt)
        buf = io.BytesIO()
        torch.save(ckpt, buf)
        ckpts.append((str(path.relative_to(runs)), buf.getvalue()))
    written = split_write(tar_bytes(small + ckpts), out, "checkpoints.tar.gz", part_mib)
    done = finished(runs)
    if not done:
        resume = [(p.name, p) for p in folder.resume_files(every=True)]
        written += split_write(tar_bytes(small + resume), out, "state.tar.gz", part_mib)
    return {"epoch": epoch, "since": since, "checkpoints": len(ckpts), "finished": done,
            "files": [(p.name, p.stat().st_size) for p in written]}


def import_state(carry: Path, runs: Path) -> int:
    """Rebuild the run folder from carried state parts; returns the epoch it holds."""
    parts = sorted(carry.glob("state.tar.gz.*"))
    if not parts:
        raise CarryError(f"{carry} holds no state.tar.gz.* parts")
    if GridFolder(runs).grid_file.exists():
        raise CarryError(f"{runs} already holds a grid; not overwritten")
    untar(joined(parts), runs)
    return trained_epoch(runs)


def exported_through(runs: Path) -> int:
    """The epoch through which the local run folder holds a job's export (-1: none)."""
    path = GridFolder(runs).carry_file
    return json.loads(path.read_text())["exported_through"] if path.exists() else -1


def receive(files: Path, carry: Path, runs: Path) -> dict:
    """After a job: its checkpoints into the local run folder, its state parts into `carry`
    (replacing the last job's), or `carry` emptied once the grid is finished. Refuses files
    that do not continue the local folder (another series, or a job that started afresh)."""
    ckpt_parts = sorted(files.glob("checkpoints.tar.gz.*"))
    if not ckpt_parts:
        raise CarryError(f"{files} holds no checkpoints.tar.gz.* parts (was the job's "
                         f"export reached?)")
    data = joined(ckpt_parts)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        incoming = json.load(tar.extractfile(GridFolder(runs).carry_file.name))
    here = exported_through(runs)
    if incoming["previous"] != here:
        raise CarryError(f"{files} continues a grid from epoch {incoming['previous']}, but "
                         f"{runs} holds one through epoch {here}; receive it into another "
                         f"--runs (a job that started afresh, or another series)")
    names = untar(data, runs)
    state = sorted(files.glob("state.tar.gz.*"))
    if carry.exists():
        shutil.rmtree(carry)
    if state:
        carry.mkdir(parents=True)
        for part in state:
            shutil.copyfile(part, carry / part.name)
    return {"epoch": trained_epoch(runs), "unpacked": len(names), "finished": finished(runs),
            "carried": sum(p.stat().st_size for p in state)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="in the job: state and new checkpoints into --out")
    e.add_argument("--runs", type=Path, required=True)
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--part-mib", type=float, default=15.0)
    i = sub.add_parser("import", help="in the job: the run folder from the carried state")
    i.add_argument("--carry", type=Path, required=True)
    i.add_argument("--runs", type=Path, required=True)
    r = sub.add_parser("receive", help="at home: a job's output into --runs and --carry")
    r.add_argument("files", type=Path, help="the folder the job's output came back to")
    r.add_argument("--carry", type=Path, required=True)
    r.add_argument("--runs", type=Path, required=True)
    st = sub.add_parser("state", help="what --runs holds: none, unfinished or finished")
    st.add_argument("--runs", type=Path, required=True)
    rec = sub.add_parser("records", help="every run's metrics.csv and config.json into --out")
    rec.add_argument("--runs", type=Path, required=True)
    rec.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "export":
            info = export(args.runs, args.out, args.part_mib)
            print(f"carry: exported epoch {info['epoch']} ({info['checkpoints']} checkpoints "
                  f"after epoch {info['since']}; {'finished' if info['finished'] else 'state'}"
                  f"): " + ", ".join(f"{n} {s / MIB:.1f} MiB" for n, s in info["files"]))
        elif args.command == "state":
            print(folder_state(args.runs))
        elif args.command == "records":
            print(f"carry: the records of {copy_records(args.runs, args.out)} runs into "
                  f"{args.out}")
        elif args.command == "import":
            print(f"carry: {args.runs} rebuilt at epoch {import_state(args.carry, args.runs)}")
        else:
            info = receive(args.files, args.carry, args.runs)
            print(f"carry: {args.runs} at epoch {info['epoch']} ({info['unpacked']} files "
                  f"unpacked); " + ("finished: run code/evaluate.py" if info["finished"] else
                                    f"{info['carried'] / MIB:.1f} MiB of state in "
                                    f"{args.carry} for the next job"))
    except (UserError, OSError, tarfile.TarError) as err:
        parser.exit(2, f"carry.py: error: {err}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
