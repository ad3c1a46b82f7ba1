"""Repository paths, resolved from this file so that no script depends on the working directory."""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]  # code/al2/paths.py -> repository root
DATA_DIR = REPO_ROOT / "data"
RESULTS_DIR = REPO_ROOT / "results"


def resolve(path) -> Path:
    """A user path: absolute paths stay, relative ones are taken from the repository root."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def shown(path) -> str:
    """A path as messages and written files name it: relative to the repository when inside it
    (so that committed outputs name no machine's folders), else as it is."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
