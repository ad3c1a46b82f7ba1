"""A damaged input is never a traceback: every path a user gives and every file train.py and
evaluate.py read back, missing, empty, truncated, of the wrong kind or from another grid, gets
one line naming the file, exit 2, and the folder it came from is left unchanged."""
import json
import shutil

import pytest
import torch

from al2.paths import REPO_ROOT
from conftest import main

TINY = ["--baselines", "bare,bn", "--extra-seeds", "none", "--epochs", "1", "--subset", "128",
        "--test-subset", "64", "--activation-images", "16", "--lr", "0.05", "--no-progress"]


def run(name, argv) -> tuple[int, str]:
    """code/<name>.py's main() as a user runs it, in this process: (exit code, stderr)."""
    done = main(name, *argv)
    return done.returncode, done.stderr


def snapshot(folder) -> dict:
    """Every file below `folder` with its size and modification time."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


REPLICATED = ["--replicates", "2", "--corruption-per-replicate", "--validation", "32",
              "--baselines", "bare,gce"]


@pytest.fixture(scope="module")
def grids(tmp_path_factory):
    """Three tiny trained grids, 1 epoch each: 'g' (bare, bn), 'other' (bare only) and 'rep'
    (bare and GCE x 2 replicates, each its own labels, a validation set)."""
    root = tmp_path_factory.mktemp("grids")
    for name, extra in (("g", []), ("other", ["--baselines", "bare"]), ("rep", REPLICATED)):
        assert main("train", *TINY, *extra, "--out", str(root / name)).returncode == 0
    return root


@pytest.fixture
def grid(grids, tmp_path):
    """A fresh copy of grid 'g' to damage."""
    shutil.copytree(grids / "g", tmp_path / "g")
    return tmp_path / "g"


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def with_partial(path, partial):
    """The resume file as a signal inside its next epoch would leave it, with this position."""
    state = torch.load(path, weights_only=True)
    torch.save({**state, "partial": {"epoch_index": state["epoch"], **partial}}, path)


RESUME_DAMAGE = {
    "resume.pt truncated": (lambda g, o: truncate(g / "resume.pt"), "resume.pt is damaged"),
    "resume.pt empty": (lambda g, o: (g / "resume.pt").write_bytes(b""), "resume.pt is empty"),
    "resume.pt of the wrong kind": (lambda g, o: torch.save([1, 2], g / "resume.pt"),
                                    "resume.pt is not a grid's resume state"),
    "resume.pt of another grid": (lambda g, o: shutil.copy(o / "resume.pt", g / "resume.pt"),
                                  "another grid's"),
    "resume.pt missing": (lambda g, o: (g / "resume.pt").unlink(), "no resume.pt"),
    "resume.pt with another stack's partial epoch": (
        lambda g, o: with_partial(g / "resume.pt", {"steps": 1, "sums": torch.zeros(5, 1),
                                                    "dropout_rng": []}),
        "its partial epoch does not fit this grid's runs"),
    "grid.json truncated": (lambda g, o: truncate(g / "grid.json"), "grid.json is damaged"),
    "grid.json of the wrong kind": (lambda g, o: (g / "grid.json").write_text("[1, 2]"),
                                    "grid.json holds a JSON list"),
    "grid.json of another grid": (lambda g, o: shutil.copy(o / "grid.json", g / "grid.json"),
                                  "holds a different grid"),
    "config.json truncated": (lambda g, o: truncate(g / "bn_al2_s0" / "config.json"),
                              "bn_al2_s0/config.json is damaged"),
    "config.json of the wrong kind": (lambda g, o: (g / "bn_al2_s0" / "config.json")
                                      .write_text('"text"'), "holds a JSON str"),
    "split.json damaged": (lambda g, o: (g / "split.json").write_text("{"),
                           "split.json is damaged"),
}


@pytest.mark.parametrize("case", RESUME_DAMAGE)
def test_train_resume_on_a_damaged_folder(grids, grid, case):
    damage, message = RESUME_DAMAGE[case]
    damage(grid, grids / "other")
    before = snapshot(grid)
    code, err = run("train", [*TINY, "--out", str(grid), "--resume"])
    assert code == 2 and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert snapshot(grid) == before


def test_train_out_naming_a_file_or_under_one(tmp_path):
    (tmp_path / "f").write_text("x")
    for out, message in ((tmp_path / "f", "is a file, not a folder"),
                         (tmp_path / "f" / "runs", "Not a directory")):
        code, err = run("train", [*TINY, "--out", str(out)])
        assert code == 2 and message in err and err.count("\n") == 1, err
    assert (tmp_path / "f").read_text() == "x"


def metrics(g):
    return g / "bare_plain_s0" / "metrics.csv"


EVALUATE_DAMAGE = {
    "metrics.csv truncated mid-row": (lambda g, o: metrics(g).write_text(
        metrics(g).read_text().rsplit(",", 2)[0]), "another number of fields"),
    "metrics.csv with a word for a number": (lambda g, o: metrics(g).write_text(
        metrics(g).read_text().replace("\n1,", "\none,")), "not a number"),
    "metrics.csv without its columns": (lambda g, o: metrics(g).write_text("a,b\n1,2\n"),
                                        "lacks the column(s) epoch"),
    "metrics.csv empty": (lambda g, o: metrics(g).write_bytes(b""), "metrics.csv is empty"),
    "metrics.csv missing": (lambda g, o: metrics(g).unlink(), "metrics.csv is missing"),
    "config.json truncated": (lambda g, o: truncate(g / "bare_plain_s0" / "config.json"),
                              "config.json is damaged"),
    "config.json of the wrong kind": (lambda g, o: (g / "bare_plain_s0" / "config.json")
                                      .write_text("{}"), "is not an AL2 run's config"),
    "config.json with a replicate that is no number": (lambda g, o: edit_json(
        g / "bare_plain_s0" / "config.json", replicate="one"), "is not an AL2 run's config"),
}


def edit_json(path, **changes):
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize("case", EVALUATE_DAMAGE)
def test_evaluate_on_a_damaged_run(grids, grid, case, tmp_path):
    damage, message = EVALUATE_DAMAGE[case]
    damage(grid, grids / "other")
    before = snapshot(grid)
    code, err = run("evaluate", ["--runs", str(grid), "--out", str(tmp_path / "e")])
    assert code == 2 and message in err and "bare_plain_s0" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert snapshot(grid) == before and not (tmp_path / "e").exists()


def swap_checkpoint(g, o):
    """bare_plain_s0's last checkpoint replaced by the same run's of another grid."""
    shutil.copy(o / "bare_plain_s0" / "checkpoints" / "epoch_1.pt",
                g / "bare_plain_s0" / "checkpoints" / "epoch_1.pt")


PROBLEMS = {  # files whose damage leaves the rest evaluable: MISSING.md and exit 2
    "checkpoint of another grid": (swap_checkpoint, "belongs to run bare_plain_s0 of another "
                                                    "grid"),
    "checkpoint truncated": (lambda g, o: truncate(g / "bn_al2_s0" / "checkpoints" /
                                                   "epoch_1.pt"), "epoch_1.pt is damaged"),
    "activations of the wrong kind": (lambda g, o: torch.save(
        torch.zeros(3, 5), g / "bn_al2_s0" / "activations" / "epoch_1.pt"),
        "are not a run's saved trunk outputs"),
    "corruption.pt of another grid": (lambda g, o: torch.save(
        {"noisy_labels": torch.zeros(60000, dtype=torch.long)}, g / "corruption.pt"),
        "corruption.pt holds other labels"),
    "corruption.pt truncated": (lambda g, o: truncate(g / "corruption.pt"),
                                "corruption.pt is damaged"),
}


REPLICATED_PROBLEMS = {  # the files a grid of replicates adds
    "a replicate's corruption file truncated": (lambda g: truncate(g / "corruption-r1.pt"),
                                                "corruption-r1.pt is damaged"),
    "a replicate's corruption file of another replicate": (
        lambda g: shutil.copy(g / "corruption-r0.pt", g / "corruption-r1.pt"),
        "corruption-r1.pt holds other labels"),
}


@pytest.mark.parametrize("case", REPLICATED_PROBLEMS)
def test_evaluate_names_a_damaged_replicate_file_and_writes_the_rest(grids, tmp_path, case):
    grid = tmp_path / "rep"
    shutil.copytree(grids / "rep", grid)
    damage, message = REPLICATED_PROBLEMS[case]
    damage(grid)
    before = snapshot(grid)
    code, err = run("evaluate", ["--runs", str(grid), "--out", str(tmp_path / "e"),
                                  "--ablation-images", "50", "--ablation-draws", "1",
                                  "--no-similarity"])
    assert code == 2 and message in err and "Traceback" not in err, err
    assert message in (tmp_path / "e" / "MISSING.md").read_text()
    for name in ("table1.csv", "selection.csv", "paired.csv", "comparison.csv"):
        assert (tmp_path / "e" / name).exists(), name
    assert snapshot(grid) == before


def test_a_folder_of_an_older_version_still_resumes_and_evaluates(grids, tmp_path):
    """A grid written before the replicate and validation fields existed (grid.json and every
    config.json without them) is that grid with their defaults: --resume and evaluate.py take
    it; a resume asking for another number of replicates is refused in one line."""
    grid = tmp_path / "g"
    shutil.copytree(grids / "g", grid)
    new = ("replicates", "corruption_per_replicate", "validation", "label_smoothing", "gce_q",
           "sce_alpha", "sce_beta", "sce_log_clip", "mixup_alpha")
    old = {k: v for k, v in json.loads((grid / "grid.json").read_text()).items()
           if k not in new}
    (grid / "grid.json").write_text(json.dumps(old))
    for config in grid.glob("*/config.json"):
        saved = json.loads(config.read_text())
        for key in ("replicate", "init_seed", "corruption_seed", "fit", "validation_images"):
            saved.pop(key)
        config.write_text(json.dumps({**saved, "grid": old}))
    code, err = run("train", [*TINY, "--out", str(grid), "--resume"])
    assert code == 0, err
    code, err = run("evaluate", ["--runs", str(grid), "--out", str(tmp_path / "e"),
                                 "--ablation-images", "50", "--ablation-draws", "1"])
    assert code == 0, err
    before = snapshot(grid)
    code, err = run("train", [*TINY, "--replicates", "2", "--out", str(grid), "--resume"])
    assert code == 2 and "differs in replicates" in err and err.count("\n") == 1, err
    assert snapshot(grid) == before


@pytest.mark.parametrize("case", PROBLEMS)
def test_evaluate_names_a_damaged_file_and_writes_the_rest(grids, grid, case, tmp_path):
    damage, message = PROBLEMS[case]
    damage(grid, grids / "other")
    before = snapshot(grid)
    code, err = run("evaluate", ["--runs", str(grid), "--out", str(tmp_path / "e"),
                                  "--ablation-images", "50", "--ablation-draws", "1"])
    assert code == 2 and message in err and "Traceback" not in err, err
    assert message in (tmp_path / "e" / "MISSING.md").read_text()
    assert (tmp_path / "e" / "table1.csv").exists()
    assert snapshot(grid) == before


def test_evaluate_paths_that_are_files(grid, tmp_path):
    (tmp_path / "f").write_text("x")
    code, err = run("evaluate", ["--runs", str(tmp_path / "f"), "--out", str(tmp_path / "e")])
    assert code == 2 and "is not a folder" in err and err.count("\n") == 1, err
    code, err = run("evaluate", ["--runs", str(grid), "--out", str(tmp_path / "f")])
    assert code == 2 and "is a file, not a folder" in err and err.count("\n") == 1, err
    assert (tmp_path / "f").read_text() == "x"


def test_missing_md_names_paths_relative_to_the_repository(tmp_path):
    """Committed outputs name no machine's folders: a grid inside the repository is named from
    its root in MISSING.md."""
    from al2.analyses.evaluation import Evaluation, missing
    from al2.paths import shown
    from al2.analyses.runs import discover_runs
    inside = REPO_ROOT / "results" / "runs" / f"test-{tmp_path.name}"
    try:
        assert main("train", *TINY, "--epochs", "2", "--time-budget", "0.00001",
                    "--out", str(inside)).returncode == 0
        problems = missing(Evaluation(discover_runs(inside), inside, tmp_path))
        assert problems and f"results/runs/test-{tmp_path.name} has not finished" in problems[0]
        assert str(REPO_ROOT) not in "".join(problems)
        assert shown(tmp_path) == str(tmp_path)   # outside the repository: as it is
    finally:
        shutil.rmtree(inside, ignore_errors=True)
