"""The house rules, checked on the code itself: a user's old imports still work and give the same
objects; the trainer knows no speed variant; no module over 300 lines, no function over 60, no
evaluation writer with more than 6 parameters."""
import ast
import shutil
import subprocess
import sys
from pathlib import Path

from al2.moved import MOVED, SPLIT
from al2.paths import REPO_ROOT
from conftest import script

CODE = [p for room in ("code", "svcca", "scripts") for p in (REPO_ROOT / room).rglob("*.py")]

# old module -> names a user's script imported from it, and where they live now
OLD_NAMES = {
    "similarity": ("compare_models", "analyses.similarity"),
    "ablation": ("cumulative_ablation", "analyses.ablation"),
    "remedies": ("gce_loss", "method.remedies"),
    "schedule": ("get_map_weights", "method.schedule"),
    "regularizer": ("AL2", "method.regularizer"),
    "loss": ("al2_loss", "method.loss"),
    "config": ("GridConfig", "training.config"),
    "model": ("StackedLeNet", "training.model"),
    "checkpoints": ("load_checkpoint", "analyses.checkpoints"),
    "outputs": ("NonFiniteLoss", "training.records"),
    "trainer": ("Trainer", "training.stack"),
    "shards": ("shard_runs", "training.shards"),
    "training": ("train_grid", "training.grid"),
}


def test_every_old_module_path_imports_and_gives_the_same_objects():
    """Each module path of before the sub-packages, imported as a user's script does (a fresh
    interpreter): `import al2.<old>` is the new module itself (MOVED) or holds the names of their
    new homes (SPLIT), `from al2.<old> import name` is the very object, each with a
    DeprecationWarning naming the new path; importlib.reload of a moved module works. Under
    `-W error::DeprecationWarning` `import al2` and its documented attributes (al2.similarity,
    ...) still work, and an old path fails naming its new one."""
    lines = ["import importlib, warnings", "warnings.simplefilter('always')",
             "with warnings.catch_warnings(record=True) as caught:"]
    for old in [*MOVED, *SPLIT]:
        lines.append(f"    import al2.{old}")
        if old in MOVED:
            lines.append(f"    assert al2.{old} is importlib.import_module('al2.{MOVED[old]}')")
    lines += ["said = [str(w.message) for w in caught if w.category is DeprecationWarning]",
              f"assert len(said) == {len(MOVED) + len(SPLIT)}, said",
              "assert all('is deprecated' in m and 'import al2.' in m for m in said), said",
              "importlib.reload(al2.similarity)", "warnings.simplefilter('ignore')"]
    for old, (name, home) in OLD_NAMES.items():
        lines += [f"from al2.{old} import {name} as a",
                  f"from al2.{home} import {name} as b", "assert a is b, " + repr(old)]
    lines += ["from al2.config import PRESETS", "from al2.training.presets import PRESETS as P",
              "assert PRESETS is P",
              "from al2.remedies import cross_entropy_loss",
              "from al2.method.loss import cross_entropy",
              "assert cross_entropy_loss is cross_entropy",
              "print('ok')"]
    done = subprocess.run([sys.executable, "-c", "\n".join(lines)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr
    strict = [sys.executable, "-W", "error::DeprecationWarning", "-c"]
    done = subprocess.run(strict + ["import al2; al2.similarity.compare_models; "
                                    "al2.ablation.cumulative_ablation; from al2 import plotting"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    done = subprocess.run(strict + ["import al2.schedule"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1 and "import al2.method.schedule" in done.stderr


def imports(path) -> set[str]:
    """The modules a file imports, relative ones resolved within al2."""
    tree, names = ast.parse(path.read_text()), set()
    package = ".".join(path.relative_to(REPO_ROOT / "code").parent.parts)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            names.add(f"{base}.{node.module}" if node.level else node.module)
    return names


def test_the_trainer_knows_no_speed_variant():
    """Nothing in al2/training imports al2/speed: the variants are installed from outside."""
    training = sorted((REPO_ROOT / "code" / "al2" / "training").glob("*.py"))
    assert training
    for path in training:
        assert not any(n.startswith("al2.speed") for n in imports(path)), path.name


def test_no_module_over_300_lines_no_function_over_60_no_writer_over_6_parameters():
    for path in CODE:
        text = path.read_text()
        assert text.count("\n") <= 300, f"{path.relative_to(REPO_ROOT)}: {text.count(chr(10))}"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                assert lines <= 60, f"{path.relative_to(REPO_ROOT)}: {node.name}, {lines}"
                if node.name.startswith("write_") or node.name == "evaluate_runs":
                    a = node.args
                    own = [x for x in a.args + a.kwonlyargs if x.arg != "self"]
                    assert len(own) <= 6, node.name


def test_every_script_in_its_room_imports_and_finds_train_py():
    """The scripts moved to code/bench and code/studies import (a moved script that looked for
    its neighbours by its own path broke once), and bench_stop starts the real train.py."""
    rooms = [REPO_ROOT / "code" / room for room in ("bench", "studies")]
    scripts = sorted(p for room in rooms for p in room.glob("*.py"))
    assert len(scripts) >= 10
    for path in scripts:
        assert script(str(path.relative_to(REPO_ROOT))).__doc__, path.name
    assert script("code/bench/bench_stop.py").TRAIN.samefile(REPO_ROOT / "code" / "train.py")


def test_a_script_reads_and_writes_its_own_checkout(tmp_path):
    """Two checkouts, one virtual environment (whose editable install points at one of them):
    a script run from the second reads the second's results and README. claims.py --check in a
    copy whose README has a tampered verdict reports it (exit 1); the original's check passes."""
    second = tmp_path / "second"
    for part in ("code", "svcca", "results", "README.md", "pyproject.toml"):
        source = REPO_ROOT / part
        if source.is_dir():     # without results/runs (run folders: large, not read here)
            shutil.copytree(source, second / part, ignore=lambda folder, names: [
                n for n in names if n == "__pycache__" or
                (n == "runs" and Path(folder) == REPO_ROOT / "results")])
        else:
            shutil.copy(source, second / part)
    readme = second / "README.md"
    readme.write_text(readme.read_text().replace("| **holds** |", "| **tampered** |", 1))
    done = subprocess.run([sys.executable, str(second / "code" / "studies" / "claims.py"),
                           "--check"], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 1 and "README.md's claims table" in done.stdout, done.stdout
    done = subprocess.run([sys.executable, str(REPO_ROOT / "code" / "studies" / "claims.py"),
                           "--check"], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_check_passes():
    """The style is kept by a linter (pyproject.toml's [tool.ruff]: line length 100, pyflakes,
    caps on complexity, arguments, branches and statements), not by hand."""
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "code", "svcca", "scripts",
                           "tests"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
