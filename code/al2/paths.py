"""Repository paths, resolved from this file so that no script depends on the working directory."""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]  # code/al2/paths.py -> repository root
DATA_DIR = REPO_ROOT / "data"
RESULTS_DIR = REPO_ROOT / "results"


def resolve(path) -> Path:
    """A user path: absolute paths stay, relative ones are taken from the repository root."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path
