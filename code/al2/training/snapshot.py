"""A grid's resume state as one compressed file: to carry a grid still in training to another
machine, or to keep it between sessions of a machine that may be replaced.

A snapshot holds what `train.py --resume` reads and nothing else: the folder's records
(grid.json, split.json, the corruption files, every run's config.json and metrics.csv) and its
resume files (resume*.pt: weights, momentum and position of every run). Checkpoints and
activations stay out (8 paper-scale runs: about 26 MB instead of 5 MB per run and checkpoint),
so a restored grid resumes bit for bit, but the analyses that read checkpoints (similarity,
probe, ablation) find only those written after the restore.

    save_snapshot(folder, file)      refuses a folder being trained (its lock is held)
    restore_snapshot(file, folder)   into a missing or empty folder only
"""
from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from ..files import FileError, WriteError
from ..paths import shown
from .config import GridError
from .folder import GridFolder
from .lock import LOCK_PREFIX, FolderLock


def snapshot_files(root: Path) -> list[Path]:
    """The files --resume needs: the records and the resume files."""
    folder = GridFolder(root)
    return sorted(folder.small_files() + folder.resume_files(every=True))


def save_snapshot(root: Path, path: Path) -> list[str]:
    """Write the grid in `root` as a gzip'd tar at `path` (atomically: a temporary name, then
    a rename); returns the names it holds. GridError if there is no resume state or the grid
    is being trained."""
    root, path = Path(root), Path(path)
    if not GridFolder(root).resume_files(every=True):
        raise GridError(f"{shown(root)} holds no resume state (resume*.pt) to snapshot")
    locks = [FolderLock(root, p.name[len(LOCK_PREFIX):], wait=False, busy="the grid")
             for p in sorted(root.glob(LOCK_PREFIX + "*"))]   # held: refused in one line
    tmp = path.with_name(path.name + ".tmp")
    try:
        files = snapshot_files(root)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tmp, "w:gz") as tar:
            for f in files:
                tar.add(f, arcname=str(f.relative_to(root)), recursive=False)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise WriteError(f"cannot write {shown(path)}: {e.strerror or e}") from None
    finally:
        for lock in locks:
            lock.release()
    return [str(f.relative_to(root)) for f in files]


def restore_snapshot(path: Path, root: Path) -> list[str]:
    """Unpack a snapshot into `root`, which must be missing or empty; returns the names."""
    path, root = Path(path), Path(root)
    if root.exists() and any(root.iterdir()):
        raise GridError(f"{shown(root)} is not empty: restore a snapshot into a new folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:       # unpacked beside the target, then renamed: a damaged file leaves no part behind
        with tarfile.open(path, "r:gz") as tar:
            members = tar.getmembers()
            bad = [m.name for m in members if not m.isfile() or m.name.startswith("/")
                   or ".." in Path(m.name).parts]
            if bad or not members:
                raise FileError(f"{shown(path)} is not a grid snapshot ({bad[:1] or 'empty'})")
            tar.extractall(tmp, filter="data")
        if root.exists():
            root.rmdir()
        os.replace(tmp, root)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise FileError(f"{shown(path)} is damaged or not a grid snapshot: {e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [m.name for m in members]
