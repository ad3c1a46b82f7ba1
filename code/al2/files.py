"""Files, written atomically (a temporary name beside the target, then a rename) and read back
with checks: a missing, empty, truncated or wrong-kind file is a FileError naming it and what to
do, never a traceback from a parser."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path

import torch

from .errors import UserError
from .paths import shown


class FileError(UserError):
    """A file that cannot be used; the message names it and what to do."""


class WriteError(UserError):
    """A file that could not be written (no space, quota, permission, an I/O error); the
    message names it and the cause. The file as it was before is left unchanged."""


def atomic_write(path: Path, write) -> None:
    """Call write(file) on an in-memory file, then put its bytes on disk under a temporary name
    beside `path` and rename that over `path`: a reader sees the old file or the new one, never
    a part. Serialising in memory first means a failing disk shows up here as an OSError with
    its cause (torch's zip writer would report "unexpected pos"); it becomes a WriteError naming
    the file, and the temporary file is removed."""
    path = Path(path)
    buffer = io.BytesIO()
    write(buffer)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            write_bytes(f, buffer.getbuffer())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:
        remove_quietly(tmp)
        raise WriteError(f"cannot write {shown(path)}: {e.strerror or e}") from None
    except BaseException:
        remove_quietly(tmp)
        raise


def write_bytes(f, data) -> None:
    """The one place a file's bytes go to disk (tests make it fail as a full disk would)."""
    f.write(data)


def remove_quietly(tmp: str | None) -> None:
    if tmp is not None:
        try:
            Path(tmp).unlink(missing_ok=True)
        except OSError:
            pass


def save_torch(obj, path: Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def save_json(obj, path: Path) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


def save_text(text: str, path: Path) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def significant(value: float, digits: int) -> float:
    """`value` rounded to `digits` significant digits (NaN and infinities as they are): what a
    results CSV carries of a float, so that the last bits of a kernel never show as a change."""
    return float(f"{value:.{digits}g}") if math.isfinite(value) else value


def save_csv(rows: list[dict], path: Path, columns: list[str] | None = None) -> None:
    """rows -> CSV with a header (columns default to the first row's keys)."""
    columns = columns or (list(rows[0]) if rows else [])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    save_text(buf.getvalue(), path)


def problem(path: Path, what: str, fix: str, detail: str) -> FileError:
    return FileError(f"{what} {shown(path)} {detail}; {fix}")


def read_bytes(path: Path, what: str, fix: str) -> bytes:
    """The file's bytes; FileError when it is missing, not a file or empty."""
    path = Path(path)
    if not path.exists():
        raise problem(path, what, fix, "is missing")
    if not path.is_file():
        raise problem(path, what, fix, "is not a file")
    data = path.read_bytes()
    if not data:
        raise problem(path, what, fix, "is empty")
    return data


def read_json(path: Path, what: str, fix: str, kind: type = dict):
    """A JSON file whose top level is a `kind` (dict by default)."""
    data = read_bytes(path, what, fix)
    try:
        value = json.loads(data)
    except ValueError:
        raise problem(path, what, fix, "is damaged (not valid JSON)") from None
    if not isinstance(value, kind):
        raise problem(path, what, fix, f"holds a JSON {type(value).__name__}, not a "
                                       f"{kind.__name__}")
    return value


def read_csv(path: Path, what: str, fix: str, columns: list[str]) -> list[dict]:
    """A CSV file with at least `columns` in its header, every row complete."""
    text = read_bytes(path, what, fix).decode("utf-8", errors="replace")
    rows = list(csv.DictReader(io.StringIO(text)))
    header = text.splitlines()[0].split(",")
    missing = [c for c in columns if c not in header]
    if missing:
        raise problem(path, what, fix, f"lacks the column(s) {', '.join(missing)}")
    for i, row in enumerate(rows, start=2):
        if None in row or any(v is None for v in row.values()):
            raise problem(path, what, fix, f"is damaged (line {i} has another number of fields "
                                           f"than the header)")
    return rows


def read_torch(path: Path, what: str, fix: str, map_location="cpu"):
    """A torch.save file, loaded with weights_only=True (tensors and plain containers only)."""
    data = read_bytes(path, what, fix)
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, pickle errors, foreign objects: many types
        raise problem(path, what, fix, f"is damaged or not a torch file "
                                       f"({type(e).__name__})") from None
