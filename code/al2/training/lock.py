"""A lock file in a grid folder, so that two processes never train one part of a grid at once
(folder.GridFolder.lock_part) nor race to write the grid's own files (GridFolder.prepare)."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..paths import shown
from .config import GridError

LOCK_PREFIX = ".lock-"   # <root>/.lock-<name>


class FolderLock:
    """An exclusive lock file in a grid folder, held until release() or the process's end
    (the kernel drops it however the process ends). wait=False refuses a held lock with a
    one-line GridError: a second process on the same shard is refused, not raced."""

    def __init__(self, out: Path, name: str, wait: bool, busy: str = ""):
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / f"{LOCK_PREFIX}{name}"
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(self.fd)
            raise GridError(f"{busy} in {shown(out)} is being trained by another process (lock "
                            f"{self.path.name}); wait for it or choose another --out") from None

    def release(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.release()
